"""The registry watcher: a sidecar process the server starts (`python -m serving.registry.watcher`).

It polls where each model's alias points, each model on its own schedule, and when an alias moves
it fetches the new version through the host's shared cache (serving.registry.cache: downloaded,
checked against the registry's manifest, probed), then tells the server on stdout, one JSON event
per line:
  {"event": "ready", "model", "version", "path", "variant"[, "origin"]}  verified: the server loads it
  {"event": "rejected", "model", "version", "reason"}     bad content: never served, not retried
  {"event": "confirmed", "model", "version"}               the registry is back, alias unchanged
  {"event": "missing", "model", "reason"}                  no such model or alias yet
  {"event": "registry_error", "model", "reason", "retry_in"}  transient: retried with backoff
  {"event": "heartbeat", "at"}                             every interval, from its own thread
One model's failure never delays another's: a bad version is a rejection, a failing registry or
store a retry of that model alone, doubling up to `--max-backoff`. Keeping the MLflow client here
keeps the server process free of MLflow's dependencies, and no registry call ever happens on the
request path. It exits when the server closes its stdin.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
_print_lock = threading.Lock()


def emit(event: str, **fields) -> None:
    with _print_lock:
        print(json.dumps({"event": event, **fields}), flush=True)


@dataclass
class ModelState:
    served: str | None = None  # version announced as ready
    previous: str | None = None  # the one served before it (kept in the cache)
    rejected: set[str] = field(default_factory=set)
    failures: int = 0  # consecutive transient failures: the backoff exponent
    due: float = 0.0  # monotonic time of the next poll
    local: bool = False  # serving a local copy the registry has not confirmed yet


class Watcher:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.states = {name: ModelState() for name in args.models}
        self._client = None

    def client(self):
        from mlflow.tracking import MlflowClient

        # made on first use and kept: a store that is down at start raises here, and is retried
        self._client = self._client or MlflowClient(
            tracking_uri=self.args.tracking_uri, registry_uri=self.args.tracking_uri
        )
        return self._client

    def round(self) -> float:
        """Poll every model that is due; returns seconds until the next one is."""
        for name, state in self.states.items():
            if time.monotonic() < state.due:
                continue
            try:
                self.poll(name, state)
            except Exception as err:  # registry down, store unreachable, database locked
                self.retry_later(name, state, f"{type(err).__name__}: {str(err)[:300]}")
            else:
                state.failures, state.due = 0, time.monotonic() + self.args.interval
        return max(0.0, min(s.due for s in self.states.values()) - time.monotonic())

    def retry_later(self, name: str, state: ModelState, reason: str) -> None:
        state.failures += 1
        delay = min(
            self.args.interval * 2 ** (state.failures - 1), max(self.args.max_backoff, self.args.interval)
        )
        state.due = time.monotonic() + delay
        emit("registry_error", model=name, reason=reason, retry_in=round(delay, 2))

    def poll(self, name: str, state: ModelState) -> None:
        from mlflow.exceptions import MlflowException

        from onnxship.version.verify import RejectedModel, vouched
        from serving.registry.cache import fetch_verified, prune

        try:
            mv = self.client().get_model_version_by_alias(name, self.args.alias)
        except MlflowException as err:
            if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                emit("missing", model=name, reason=f"no version of '{name}' has alias '{self.args.alias}'")
                return
            raise
        version = str(mv.version)
        if state.local:  # the registry answers again: the local copy is settled either way
            state.local = False
            if version == state.served:
                emit("confirmed", model=name, version=version)
        if version == state.served or version in state.rejected:
            return
        try:
            trusted = vouched(mv)
            folder, metadata = fetch_verified(
                Path(self.args.cache_dir), name, trusted, self.args.tracking_uri, self.args.max_model_bytes
            )
        except RejectedModel as err:
            state.rejected.add(version)
            emit("rejected", model=name, version=version, reason=str(err))
            prune(Path(self.args.cache_dir), name, {v for v in (state.served, state.previous) if v})
            return
        state.previous, state.served = state.served, version
        emit(
            "ready", model=name, version=version, path=str(folder.resolve()), variant=metadata.get("variant")
        )
        try:
            self.remember(name, trusted, folder)
        except OSError as err:  # only the start-from-local-copy fallback loses this version
            print(f"cannot record the local copy of {name}: {err}", file=sys.stderr)
        prune(Path(self.args.cache_dir), name, {v for v in (state.served, state.previous) if v})

    def record_path(self, name: str) -> Path:
        return Path(self.args.cache_dir) / name / f"{self.args.alias}.json"

    def remember(self, name: str, trusted, folder: Path) -> None:
        """Which verified copy the alias last pointed at, for a start while the registry is down."""
        record = {
            "tracking_uri": self.args.tracking_uri,
            "path": str(folder.resolve()),
            **trusted.to_record(),
        }
        path = self.record_path(name)
        partial = path.with_suffix(f".partial-{os.getpid()}")
        partial.write_text(json.dumps(record))
        partial.replace(path)  # atomic: a crash leaves the old record or the new one

    def serve_local_copy(self, name: str, state: ModelState) -> None:
        """At start, before the registry is asked: offer the verified copy the alias last pointed at
        on this registry, checked again against the manifest recorded with it (every file, the
        schema, external data) and probed unless this host's probe marker vouches for it. The
        first answer from the registry confirms it or replaces it."""
        from onnxship.version.verify import Vouched, verify
        from serving.registry.cache import marker
        from serving.registry.fetch import probe

        try:
            record = json.loads(self.record_path(name).read_text())
        except (OSError, ValueError):
            return  # no copy: the model stays not-ready with the registry error as the reason
        if not isinstance(record, dict) or record.get("tracking_uri") != self.args.tracking_uri:
            return
        try:
            trusted = Vouched.from_record(record)
            folder = Path(self.args.cache_dir) / name / f"v{trusted.version}"
            verify(folder, trusted)
            done = marker(folder)
            if not (done.is_file() and done.read_text() == json.dumps(trusted.manifest, sort_keys=True)):
                probe(folder)
        except Exception as err:  # RejectedModel, a malformed record, unreadable files
            emit("rejected", model=name, version=str(record.get("version"))[:20], reason=f"local copy: {err}")
            return
        state.served, state.local = trusted.version, True
        origin = "verified local copy (not yet confirmed by the registry)"
        emit("ready", model=name, version=trusted.version, path=str(folder), origin=origin)


def heartbeat(interval: float, stop: threading.Event) -> None:
    """Tells the server this process is alive, even while a long download holds the main loop."""
    while not stop.wait(interval):
        emit("heartbeat", at=time.time())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--alias", required=True)
    parser.add_argument("--models", required=True, type=lambda s: s.split(","))
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--max-backoff", type=float, default=60.0)
    parser.add_argument("--heartbeat", type=float, default=2.0)
    parser.add_argument("--request-timeout", type=float, default=10.0)
    parser.add_argument("--max-model-bytes", type=int, default=2 << 30)
    parser.add_argument("--serve-local-copy", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # One attempt per poll, bounded in time: MLflow's default HTTP client retries a down tracking
    # server with backoff for minutes, which would hide the outage; our backoff is the retry.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, round(args.request_timeout))))
    stop = threading.Event()
    threading.Thread(target=heartbeat, args=(args.heartbeat, stop), daemon=True).start()
    watcher = Watcher(args)
    if args.serve_local_copy:  # a warm cache serves at once; the first poll confirms or replaces
        for name, state in watcher.states.items():
            watcher.serve_local_copy(name, state)
    try:
        while True:
            wait = watcher.round()
            readable, _, _ = select.select([sys.stdin], [], [], min(wait, args.interval))
            if readable and not sys.stdin.readline():
                return  # the server went away
    finally:
        stop.set()


if __name__ == "__main__":
    main()
