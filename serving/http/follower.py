"""Follows the registry alias: runs the watcher sidecar and swaps in each version it announces.

One thread reads the watcher's lines (so its heartbeats are heard however long a load takes);
loading happens on a thread per model, never on the request path, the newest announcement winning.
A version that fails to load or warm up is logged, counted and asked of the watcher again (with
backoff); the model already serving keeps serving.

The watcher gets the registry URI and `registry_env_file`'s credentials in its own environment
only: never on its command line (readable by every user of the host) nor in this process's
environment. What clients read (statuses, readiness) passes serving.redact.redact; log lines
lose credentials but keep hosts.

Following cannot stop silently: a line the follower cannot read is counted and skipped; a watcher
that exits (or stops sending heartbeats) is killed and started again; the thread itself is
restarted by `check()`, which the app calls every second. While any of that is the case,
`stopped_reason` says why: /health/ready is 503 with it and `onnxship_following` is 0.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from serving.http.metrics import ServerMetrics
from serving.http.native import NativeSidecar
from serving.http.store import LoadedModel, ModelStore, describe_verified, load_verified
from serving.redact import redact, without_credentials
from serving.settings import Settings

log = logging.getLogger("onnxship.follower")
RESTART_DELAY_S = 2.0
HEARTBEAT_S = 2.0


class Follower(Protocol):
    """What the app needs from whatever fills its model store."""

    last_registry_error: str | None

    def tell(self, command: dict) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def check(self) -> None: ...

    @property
    def stopped_reason(self) -> str | None: ...


FollowerFactory = Callable[..., Follower]  # (settings, store, metrics[, candidates=True])


class RegistryFollower:
    """Follows `settings.alias` for `settings.models` into `store` (the served models); with
    candidates=True, `candidate_alias` for `shadow_models` into a store of candidates (shadow
    mode: own cache, own metrics, one ORT thread each, readiness untouched)."""

    def __init__(
        self, settings: Settings, store: ModelStore, metrics: ServerMetrics, candidates: bool = False
    ) -> None:
        self.settings, self.store = settings, store
        self.metrics = metrics.candidates if candidates else metrics.served
        self.candidates = candidates
        self.alias = settings.candidate_alias if candidates else settings.alias
        self.models = settings.shadow_models if candidates else settings.models
        self.cache_dir, self.state_dir = (
            settings.candidate_dirs if candidates else (settings.cache_dir, settings.trusted_state_dir)
        )
        self.last_registry_error: str | None = None
        self.last_heard = time.monotonic()
        self._proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watcher_exit: str | None = None
        self.stalled: dict[str, str] = {}  # model -> why its following is stuck (from heartbeats)
        self._stdin_lock = threading.Lock()
        self._loads_lock = threading.Lock()
        self._next_load: dict[str, list[tuple]] = {}  # per model, in order: load/withdraw/confirm
        self._loaders: dict[str, threading.Thread] = {}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="registry-follower", daemon=True)
        self.last_heard = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._end_watcher()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for name in self.store.names:  # the native models' scoring servers end with us
            loaded = self.store.get(name)
            if loaded is not None and loaded.native is not None:
                loaded.native.stop()

    @property
    def stopped_reason(self) -> str | None:
        if self._thread is None or not self._thread.is_alive():
            return "the registry follower thread is not running"
        silent = time.monotonic() - self.last_heard
        if silent > self.settings.following_stall_s:
            return f"no word from the registry watcher for {silent:.0f} s"
        if self.stalled:
            return "; ".join(f"following of '{m}' stalled: {redact(why)}" for m, why in self.stalled.items())
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
        self.restart_dead_natives()
        self.metrics.following.set(0 if self.stopped_reason else 1)

    def _command(self) -> list[str]:
        s = self.settings
        return [
            sys.executable,
            "-m",
            "serving.registry.watcher",
            "--alias",
            self.alias,
            "--models",
            ",".join(self.models),
            "--cache-dir",
            str(Path(self.cache_dir).resolve()),
            "--state-dir",
            str(self.state_dir.resolve()),
            "--lock-timeout",
            str(s.lock_timeout_s),
            "--download-deadline",
            str(s.download_deadline_s),
            "--max-call-s",
            str(s.max_call_s),
            "--max-call-bytes",
            str(s.max_call_bytes),
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
        env = {**os.environ, **self.settings.registry_env()}
        self._proc = subprocess.Popen(
            self._command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=env
        )
        self.stalled = {}
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
            with self._stdin_lock:
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
        if kind == "heartbeat":
            stalled = event.get("stalled") or {}
            self.stalled = (
                {str(m): str(why) for m, why in stalled.items()} if isinstance(stalled, dict) else {}
            )
            self.metrics.following.set(0 if self.stopped_reason else 1)  # what readiness says, at once
        elif kind == "ready":
            manifest = event["manifest"]
            if not isinstance(manifest, dict) or not all(isinstance(v, str) for v in manifest.values()):
                raise ValueError("a ready event without its manifest")
            origin = event.get("origin")
            self._queue(name, ("load", str(event["version"]), Path(event["path"]), manifest, origin))
        elif kind == "native":
            io = event["io"]
            if not isinstance(io, dict) or not isinstance(io.get("features"), list):
                raise ValueError("a native event without its features")
            self._queue(name, ("native", str(event["version"]), str(event["reason"]), io, str(event["uri"])))
        elif kind == "withdrawn":
            self._queue(name, ("withdraw", str(event["version"]), str(event["reason"])))
        elif kind == "confirmed":
            self._queue(name, ("confirm", str(event["version"])))
        elif kind == "rejected":
            self.metrics.model_loads.labels(name, "rejected").inc()
            self.store.note(name, f"version {event['version']} rejected: {event['reason']}")
            log.error("model %s version %s rejected: %s", name, event["version"], event["reason"])
        elif kind == "missing":
            if self.store.get(name) is None:
                self.store.note(name, str(event["reason"]))
        elif kind == "registry_error":
            self.metrics.registry_errors.inc()
            # for clients: the watcher's public reason (no library text), redacted once more
            reason = redact(str(event.get("public") or event["reason"]))
            self.last_registry_error = reason
            retry = f" (retry in {event['retry_in']} s)" if "retry_in" in event else ""
            configuration = event.get("kind") == "configuration"
            what = "registry misconfigured" if configuration else "registry unreachable"
            for n in [name] if name in self.store.names else self.store.names:
                loaded = self.store.get(n)
                if loaded is None:
                    self.store.note(n, f"{what}: {reason}{retry}")
                elif event.get("version") and str(event["version"]) != loaded.version:
                    self.store.pending(n, f"version {event['version']} not served yet: {reason}{retry}")
            log.error(
                "registry poll failed for %s: %s",
                name or "every model",
                without_credentials(str(event["reason"])),
            )

    def _queue(self, name: str, job: tuple) -> None:
        """A model's loads, withdrawals and confirmations, done in the order the watcher said them
        on that model's own thread (a withdrawal never overtakes the load it withdraws), and never
        holding up the reading of the watcher's lines. A load waiting behind a newer load or a
        withdrawal is dropped: only the newest announcement is worth loading."""
        with self._loads_lock:
            waiting = self._next_load.setdefault(name, [])
            if job[0] in ("load", "withdraw", "native"):
                waiting[:] = [j for j in waiting if j[0] not in ("load", "native")]
            waiting.append(job)
            if name in self._loaders:
                return
            thread = threading.Thread(target=self._work, args=(name,), name=f"load-{name}", daemon=True)
            self._loaders[name] = thread
        thread.start()

    def _work(self, name: str) -> None:
        while True:
            with self._loads_lock:
                waiting = self._next_load.get(name)
                if not waiting:
                    del self._loaders[name]
                    return
                job = waiting.pop(0)
            try:
                self._do(name, job)
            except Exception:  # a bug of ours: the next announcement gets a fresh try
                log.exception("%s of %s version %s failed", job[0], name, job[1])

    def _do(self, name: str, job: tuple) -> None:
        kind, version = job[0], job[1]
        if kind == "load":
            _, _, folder, manifest, origin = job
            if self._load(name, version, folder, manifest) and origin:
                self.store.note(name, f"serving a {origin}")
        elif kind == "native":
            self._load_native(name, version, *job[2:])
        elif kind == "withdraw":
            reason = f"version {version} withdrawn: {job[2]}"
            old = self.store.withdraw(name, reason)
            if old is not None and old.native is not None:
                old.native.stop()
            self.metrics.model_loads.labels(name, "withdrawn").inc()
            log.error("model %s %s", name, without_credentials(reason))
        elif kind == "confirm":
            loaded = self.store.get(name)
            if loaded is not None and loaded.version == version:
                self.store.note(name, "serving")

    def _ask_again(self, name: str) -> None:
        self.tell({"retry": name})

    def tell(self, command: dict) -> None:
        """One command line to the watcher (a retry; shadow comparisons to log to MLflow)."""
        proc = self._proc
        try:
            with self._stdin_lock:
                proc.stdin.write(json.dumps(command) + "\n")
                proc.stdin.flush()
        except (OSError, ValueError, AttributeError):
            pass  # the watcher is gone; its successor fetches everything afresh

    def _load_native(self, name: str, version: str, reason: str, io: dict, uri: str) -> bool:
        """A version served natively: its MLflow scoring server started and ready, then swapped in
        (the old version serves until then), the old one's server stopped."""
        sidecar = NativeSidecar(name, version, uri, self.settings.registry_env(), Path(self.cache_dir))
        try:
            Path(self.cache_dir).mkdir(parents=True, exist_ok=True)
            sidecar.start()
            sidecar.wait_ready()
        except Exception as err:
            sidecar.stop()
            return self._failed(name, f"version {version} (native) failed to start: {err}")
        metadata = {**io, "model": name, "variant": "native", "runtime": "native", "native_reason": reason}
        metadata |= {"gates": {}, "accepts_missing_categories": True}  # None -> "", as CatBoost takes it
        if io.get("columns"):  # a table of typed columns: V2 takes one tensor per column
            metadata["layout"] = "columns"
        source = {"native": sidecar.url, "metadata": metadata}  # a shadow replayer calls it there
        loaded = LoadedModel(name, version, metadata, None, None, call_s=1.0, native=sidecar, source=source)
        old = self.store.swap(loaded)
        self.store.note(name, f"native ({reason})")
        if old is not None and old.native is not None and old.native is not sidecar:
            old.native.stop()
        self.metrics.model_loads.labels(name, "loaded").inc()
        self.metrics.served_version.labels(name).set(float(version) if version.isdigit() else -1)
        log.info("model %s now served natively, version %s: %s", name, version, reason)
        return True

    def _failed(self, name: str, reason: str) -> bool:
        """A version that did not load: counted, shown (beside the one still serving, if any),
        logged, and asked of the watcher again (with backoff). False, for the caller to return."""
        self.metrics.model_loads.labels(name, "failed").inc()
        if self.store.get(name) is None:
            self.store.note(name, reason)
        else:
            self.store.pending(name, f"{reason} (fetching it again)")
        log.error("model %s: %s; keeping the one serving, if any", name, reason)
        self._ask_again(name)
        return False

    def restart_dead_natives(self) -> None:
        """A native model whose scoring server exited is started again (its requests get 503 until then)."""
        for name in self.store.names:
            loaded = self.store.get(name)
            if loaded is None or loaded.native is None or loaded.native.alive() or name in self._loaders:
                continue
            log.error("the scoring server of %s (native) exited; starting it again", name)
            self.metrics.follower_restarts.labels("native").inc()
            reason = loaded.metadata.get("native_reason", "")
            self._queue(name, ("native", loaded.version, reason, loaded.metadata, loaded.native.uri))

    def _load(self, name: str, version: str, folder: Path, manifest: dict[str, str]) -> bool:
        try:
            if self.candidates:  # the shadow replayer runs it; this process keeps what it vouches for
                loaded = describe_verified(name, version, folder, manifest)
            else:
                loaded = load_verified(
                    name, version, folder, manifest, self.settings.warmup_calls, self.settings.max_threads
                )
        except Exception as err:
            return self._failed(name, f"version {version} failed to load: {type(err).__name__}: {err}")
        old = self.store.swap(loaded)
        self.metrics.model_loads.labels(name, "loaded").inc()
        self.metrics.served_version.labels(name).set(float(version) if version.isdigit() else -1)
        log.info("model %s now serving version %s (was %s)", name, version, old.version if old else "none")
        return True
