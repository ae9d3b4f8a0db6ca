"""Follows the registry alias: runs the watcher sidecar and swaps in each version it announces.

Loading happens on this background thread, never on the request path. A version that fails to
load or warm up is logged and counted; the model already serving keeps serving.

Following cannot stop silently: a line the follower cannot read is counted and skipped; a watcher
that exits (or stops sending heartbeats) is killed and started again; the thread itself is
restarted by `check()`, which the app calls every second. While any of that is the case,
`stopped_reason` says why: /health/ready is 503 with it and `onnxship_following` is 0.
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
from serving.http.redact import redact
from serving.http.store import ModelStore, load_verified
from serving.settings import Settings

log = logging.getLogger("onnxship.follower")
RESTART_DELAY_S = 2.0
HEARTBEAT_S = 2.0


class Follower(Protocol):
    """What the app needs from whatever fills its model store."""

    last_registry_error: str | None

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def check(self) -> None: ...

    @property
    def stopped_reason(self) -> str | None: ...


FollowerFactory = Callable[[Settings, ModelStore, ServerMetrics], Follower]


class RegistryFollower:
    def __init__(self, settings: Settings, store: ModelStore, metrics: ServerMetrics) -> None:
        self.settings, self.store, self.metrics = settings, store, metrics
        self.last_registry_error: str | None = None
        self.last_heard = time.monotonic()
        self._proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watcher_exit: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="registry-follower", daemon=True)
        self.last_heard = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._end_watcher()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def stopped_reason(self) -> str | None:
        if self._thread is None or not self._thread.is_alive():
            return "the registry follower thread is not running"
        silent = time.monotonic() - self.last_heard
        if silent > self.settings.following_stall_s:
            return f"no word from the registry watcher for {silent:.0f} s"
        return self._watcher_exit

    def check(self) -> None:
        """Restart what died (called by the app every second), and publish whether we follow."""
        if self._stop.is_set():
            return
        if self._thread is None or not self._thread.is_alive():
            log.error("registry follower thread died; starting it again")
            self.metrics.follower_restarts.labels("thread").inc()
            self._end_watcher()  # the dead thread's watcher, blocked on a pipe nobody reads
            self.start()
        elif time.monotonic() - self.last_heard > self.settings.following_stall_s:
            log.error("registry watcher silent for %.0f s; restarting it", time.monotonic() - self.last_heard)
            self.metrics.follower_restarts.labels("watcher_silent").inc()
            self.last_heard = time.monotonic()  # one restart per stall period
            self._end_watcher()  # the thread sees the pipe close and starts a new watcher
        self.metrics.following.set(0 if self.stopped_reason else 1)

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
            "--max-backoff",
            str(s.max_backoff_s),
            "--heartbeat",
            str(HEARTBEAT_S),
            "--request-timeout",
            str(s.registry_timeout_s),
            "--max-model-bytes",
            str(s.max_model_bytes),
            *(["--serve-local-copy"] if s.serve_local_copy else []),
        ]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow_one_watcher()
            except Exception:  # a bug of ours must not end following: log, count, start again
                log.exception("registry follower failed; restarting the watcher")
                self.metrics.follower_restarts.labels("error").inc()
                self._end_watcher()
            if not self._stop.is_set():
                time.sleep(RESTART_DELAY_S)

    def _follow_one_watcher(self) -> None:
        self._proc = subprocess.Popen(
            self._command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        for line in self._proc.stdout:
            self.last_heard = time.monotonic()
            self._watcher_exit = None
            self.handle(line)
        code = self._proc.wait()
        if self._stop.is_set():
            return
        self._watcher_exit = f"the registry watcher exited with {code}; restarting it"
        self.metrics.follower_restarts.labels("watcher_exit").inc()
        self.metrics.registry_errors.inc()
        self.last_registry_error = self._watcher_exit
        for name in self.store.names:
            if self.store.get(name) is None:
                self.store.note(name, f"registry unreachable: {self._watcher_exit}")
        log.error("%s", self._watcher_exit)

    def _end_watcher(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()

    def handle(self, line: str) -> None:
        """One watcher line; anything malformed is counted and skipped, never raised."""
        try:
            event = json.loads(line)
            if not isinstance(event, dict) or not isinstance(event.get("event"), str):
                raise ValueError("not an event object")
            self._apply(event)
        except Exception as err:
            self.metrics.watcher_bad_lines.inc()
            log.warning("unreadable watcher line skipped (%s: %s)", type(err).__name__, str(err)[:200])

    def _apply(self, event: dict) -> None:
        kind, name = event["event"], event.get("model")
        if kind != "heartbeat" and kind != "registry_error" and name not in self.store.names:
            raise ValueError(f"event {kind!r} for a model this server does not serve")
        if kind == "ready":
            if self._load(name, str(event["version"]), Path(event["path"])) and event.get("origin"):
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
                self.store.note(name, str(event["reason"]))
        elif kind == "registry_error":
            self.metrics.registry_errors.inc()
            self.last_registry_error = redact(str(event["reason"]))
            retry = f" (retry in {event['retry_in']} s)" if "retry_in" in event else ""
            for n in [name] if name in self.store.names else self.store.names:
                if self.store.get(n) is None:
                    self.store.note(n, f"registry unreachable: {event['reason']}{retry}")
            log.error("registry poll failed for %s: %s", name or "every model", event["reason"])

    def _load(self, name: str, version: str, folder: Path) -> bool:
        try:
            loaded = load_verified(
                name, version, folder, self.settings.warmup_calls, self.settings.max_threads
            )
        except Exception as err:
            self.metrics.model_loads.labels(name, "failed").inc()
            self.store.note(name, f"version {version} failed to load: {type(err).__name__}: {err}")
            log.error("model %s version %s failed to load, keeping the old one: %s", name, version, err)
            return False
        old = self.store.swap(loaded)
        self.metrics.model_loads.labels(name, "loaded").inc()
        self.metrics.served_version.labels(name).set(float(version) if version.isdigit() else -1)
        log.info("model %s now serving version %s (was %s)", name, version, old.version if old else "none")
        return True
