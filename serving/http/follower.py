"""Follows the registry alias: runs the watcher sidecar and swaps in each version it announces.

Loading happens on this background thread, never on the request path. A version that fails to
load or warm up is logged and counted; the model already serving keeps serving.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from serving.http.metrics import ServerMetrics
from serving.http.store import ModelStore, load_verified
from serving.settings import Settings

log = logging.getLogger("onnxship.follower")
RESTART_DELAY_S = 2.0


class Follower(Protocol):
    """What the app needs from whatever fills its model store."""

    last_registry_error: str | None

    def start(self) -> None: ...

    def stop(self) -> None: ...


FollowerFactory = Callable[[Settings, ModelStore, ServerMetrics], Follower]


class RegistryFollower:
    def __init__(self, settings: Settings, store: ModelStore, metrics: ServerMetrics) -> None:
        self.settings, self.store, self.metrics = settings, store, metrics
        self.last_registry_error: str | None = None
        self._proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="registry-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._proc and self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._thread.join(timeout=5)

    def _command(self) -> list[str]:
        s = self.settings
        return [
            sys.executable,
            "-m",
            "serving.registry.watcher",
            "--tracking-uri",
            s.tracking_uri,
            "--alias",
            s.alias,
            "--models",
            ",".join(s.models),
            "--cache-dir",
            str(Path(s.cache_dir).resolve()),
            "--interval",
            str(s.poll_interval_s),
            "--request-timeout",
            str(s.registry_timeout_s),
            *(["--serve-local-copy"] if s.serve_local_copy else []),
        ]

    def _run(self) -> None:
        while not self._stop.is_set():
            self._proc = subprocess.Popen(
                self._command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
            )
            for line in self._proc.stdout:
                self.handle(line)
            if not self._stop.is_set():
                self.metrics.registry_errors.inc()
                self.last_registry_error = f"registry watcher exited with {self._proc.wait()}"
                for name in self.store.names:
                    if self.store.get(name) is None:
                        self.store.note(name, f"registry unreachable: {self.last_registry_error}")
                log.error("registry watcher exited (%s); restarting", self.last_registry_error)
                time.sleep(RESTART_DELAY_S)

    def handle(self, line: str) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            log.warning("watcher said: %s", line.strip())
            return
        kind, name = event.get("event"), event.get("model")
        if kind == "ready":
            if self._load(name, event["version"], Path(event["path"])) and event.get("origin"):
                self.store.note(name, f"serving a {event['origin']}")
        elif kind == "confirmed":
            loaded = self.store.get(name)
            if loaded is not None and loaded.version == str(event["version"]):
                self.store.note(name, "serving")
        elif kind == "rejected":
            self.metrics.model_loads.labels(name, "rejected").inc()
            self.store.note(name, f"version {event['version']} rejected: {event['reason']}")
            log.error("model %s version %s rejected: %s", name, event["version"], event["reason"])
        elif kind == "missing":
            if self.store.get(name) is None:
                self.store.note(name, event["reason"])
        elif kind == "registry_error":
            self.metrics.registry_errors.inc()
            self.last_registry_error = event["reason"]
            for n in self.store.names:
                if self.store.get(n) is None:
                    self.store.note(n, f"registry unreachable: {event['reason']}")
            log.error("registry poll failed: %s", event["reason"])

    def _load(self, name: str, version: str, folder: Path) -> bool:
        try:
            loaded = load_verified(name, version, folder, self.settings.warmup_calls)
        except Exception as err:
            self.metrics.model_loads.labels(name, "failed").inc()
            self.store.note(name, f"version {version} failed to load: {type(err).__name__}: {err}")
            log.error("model %s version %s failed to load, keeping the old one: %s", name, version, err)
            return False
        old = self.store.swap(loaded)
        self.metrics.model_loads.labels(name, "loaded").inc()
        self.metrics.served_version.labels(name).set(float(version))
        log.info("model %s now serving version %s (was %s)", name, version, old.version if old else "none")
        return True
