"""Following the registry for each model, one thread per model: the watcher process's work
(serving/registry/watcher.py is its entry point and lists the events printed).

Imported by the watcher's main thread, after its heartbeat runs and before any model thread
starts: MLflow's modules import each other, and two threads importing them at once can meet one
half-initialised (ImportError).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlflow.artifacts  # noqa: F401  (what the download forkserver, forked after this import, needs)
from mlflow.tracking import MlflowClient

from onnxship.packaging.native import IO_TAG, REASON_TAG, RUNTIME_TAG
from onnxship.version.verify import RejectedModel, verify, vouched
from serving.redact import without_credentials
from serving.registry.cache import FetchLimits, fetch_verified, prune, version_dir
from serving.registry.diagnose import Misconfigured, Missing, Unreachable, diagnose
from serving.registry.events import emit
from serving.registry.fetch import (
    ProbeBudget,
    Stalled,
    end_startup,
    packaging_run_alive,
    probe,
)
from serving.registry.shadow_evidence import BadReport, log_report
from serving.registry.state import TrustedState, fingerprint

MAX_LOAD_FAILURES = 3  # a version the server fails to load this often is rejected


def reason_of(err: BaseException) -> str:
    """For the log: the error with its text, credentials blanked before the text is cut."""
    return without_credentials(f"{type(err).__name__}: {err}")[:300]


class RegistryProblem(RuntimeError):
    """A registry call failed for a reason diagnose() put in words (serving/registry/diagnose.py)."""

    def __init__(self, found: Misconfigured | Unreachable) -> None:
        super().__init__(found.reason)
        self.found = found


def public_reason(err: BaseException) -> str:
    """For clients: our own messages as they are (they name no host); anything else by its type
    only: library messages name hosts, ports and paths in more shapes than a pattern knows."""
    if isinstance(err, (Stalled, RegistryProblem)):
        return str(err)
    return f"{type(err).__name__} (details in the server log)"


@dataclass
class ModelState:
    served: str | None = None  # version announced as ready
    served_print: str | None = None  # its fingerprint (version + manifest)
    previous: str | None = None  # the one served before it (kept in the cache)
    rejected: set[str] = field(default_factory=set)
    failures: int = 0  # consecutive transient failures: the backoff exponent
    due: float = 0.0  # monotonic time of the next poll
    local: bool = False  # serving a local copy the registry has not confirmed yet
    stalled: str | None = None  # a deadline passed on the last try; cleared by the next good poll
    busy_since: float | None = None  # monotonic start of the poll in progress
    target: str | None = None  # the version the alias points at while it is not served yet
    load_failures: dict[str, int] = field(default_factory=dict)  # the server's failed loads, by version
    wake: threading.Event = field(default_factory=threading.Event)


class Watcher:
    def __init__(self, args: argparse.Namespace, stop: threading.Event | None = None) -> None:
        self.args = args
        self.states = {name: ModelState() for name in args.models}
        self.trusted_state = TrustedState(Path(args.state_dir), Path(args.cache_dir))
        self.limits = FetchLimits(
            max_model_bytes=args.max_model_bytes,
            lock_timeout_s=args.lock_timeout,
            download_deadline_s=args.download_deadline,
            budget=ProbeBudget(args.max_call_s, args.max_call_bytes),
        )
        # a poll still busy after every deadline it has (and then some) is stuck somewhere else
        self.busy_limit = args.lock_timeout + args.download_deadline + 180 + 4 * args.request_timeout
        self.stop = stop or threading.Event()
        self._client = None
        self._client_lock = threading.Lock()
        self._polled_once: set[str] = set()
        self._polled_lock = threading.Lock()
        self._store_lock = threading.Lock()
        self._store_ready = False

    @property
    def cache(self) -> Path:
        return Path(self.args.cache_dir)

    def client(self) -> MlflowClient:
        with self._client_lock:  # made on first use and kept: a store down at start raises here
            self._client = self._client or MlflowClient(
                tracking_uri=self.args.tracking_uri, registry_uri=self.args.tracking_uri
            )
            return self._client

    def first_calls_one_at_a_time(self, call):
        """Until one registry call succeeded, calls go one at a time: the first builds MLflow's
        store (engine, tables), which two threads must not do at once."""
        if self._store_ready:
            return call()
        with self._store_lock:
            result = call()
            self._store_ready = True
            return result

    # ---- one thread per model ------------------------------------------------------------------

    def follow(self, name: str) -> None:
        state = self.states[name]
        while not self.stop.is_set():
            if time.monotonic() >= state.due:
                try:
                    self.poll_once(name, state)
                    self.first_round_done(name)
                except Exception as err:  # a bug of ours: this model's following must go on
                    print(f"following {name} failed ({reason_of(err)}); going on", file=sys.stderr)
                    state.due = time.monotonic() + self.args.interval
            state.wake.wait(max(0.0, state.due - time.monotonic()))
            state.wake.clear()

    def poll_once(self, name: str, state: ModelState) -> None:
        state.busy_since = time.monotonic()
        try:
            self.poll(name, state)
        except Stalled as err:
            state.stalled = reason_of(err)
            self.retry_later(name, state, state.stalled, public_reason(err))
        except Exception as err:  # registry down, store unreachable, database locked, misconfigured
            state.stalled = None  # a stall is over once a try ends otherwise (an outage is no stall)
            cause = err.__cause__ if isinstance(err, RegistryProblem) and err.__cause__ else err
            misconfigured = isinstance(err, RegistryProblem) and isinstance(err.found, Misconfigured)
            self.retry_later(name, state, reason_of(cause), public_reason(err), misconfigured)
        else:
            state.failures, state.stalled = 0, None
            state.due = time.monotonic() + self.args.interval
        finally:
            state.busy_since = None

    def first_round_done(self, name: str) -> None:
        """Once every model was polled: the downloader started for the start-up is let go."""
        with self._polled_lock:
            if name in self._polled_once:
                return
            self._polled_once.add(name)
            last = self._polled_once == set(self.states)
        if last:
            end_startup()  # outside any lock: it takes the downloads' own (serving/registry/fetch.py)

    def retry_later(
        self, name: str, state: ModelState, reason: str, public: str | None = None, misconfigured=False
    ) -> None:
        """Poll `name` again after a backoff; `reason` goes to the log, `public` to clients;
        `misconfigured`: this configuration cannot work (retried all the same: it may be fixed)."""
        state.failures += 1
        delay = min(
            self.args.interval * 2 ** (state.failures - 1), max(self.args.max_backoff, self.args.interval)
        )
        state.due = time.monotonic() + delay
        extra = {"version": state.target} if state.target and state.target != state.served else {}
        if misconfigured:
            extra["kind"] = "configuration"
        emit(
            "registry_error",
            model=name,
            reason=reason,
            public=public or reason,
            retry_in=round(delay, 2),
            **extra,
        )

    def poll(self, name: str, state: ModelState) -> None:
        try:
            mv = self.first_calls_one_at_a_time(
                lambda: self.client().get_model_version_by_alias(name, self.args.alias)
            )
        except Exception as err:
            found = diagnose(err, name, self.args.alias, self.args.tracking_uri)
            if isinstance(found, Missing):
                emit("missing", model=name, reason=found.reason)
                return
            if found is not None:
                raise RegistryProblem(found) from err
            raise
        version = str(mv.version)
        state.target = version
        if version in state.rejected:
            return
        if (mv.tags or {}).get(RUNTIME_TAG) == "native":
            self.announce_native(name, state, mv)
            return
        try:
            trusted = vouched(mv)
            if state.served_print == fingerprint(trusted):  # the same version, the same bytes
                if state.local:
                    state.local = False
                    emit("confirmed", model=name, version=version)
                return
            if state.local:  # the registry vouches for something else than the local copy
                state.local = False
                if version == state.served:
                    emit(
                        "withdrawn",
                        model=name,
                        version=version,
                        reason="the local copy differs from what the registry vouches for",
                    )
                    state.served = state.served_print = None
            packaging_run_alive(self.client(), mv)
            folder, metadata = fetch_verified(
                self.cache,
                self.trusted_state,
                name,
                self.args.alias,
                trusted,
                self.args.tracking_uri,
                self.limits,
            )
        except RejectedModel as err:
            self.first_round_done(name)
            state.rejected.add(version)
            emit("rejected", model=name, version=version, reason=without_credentials(str(err)))
            self.prune(name, state)
            return
        self.first_round_done(name)  # before announcing: the start-up downloader goes before ready
        state.previous, state.served, state.served_print = state.served, version, fingerprint(trusted)
        state.target = None
        try:  # recorded before it is announced: a watcher stopped right after still has it
            self.trusted_state.remember(name, self.args.alias, self.args.tracking_uri, trusted)
        except OSError as err:  # only the start-from-local-copy fallback loses this version
            print(f"cannot record the local copy of {name}: {err}", file=sys.stderr)
        self.announce(name, trusted, folder, variant=metadata.get("variant"))
        self.prune(name, state)

    def announce_native(self, name: str, state: ModelState, mv) -> None:
        """A version registered natively (onnxship/packaging/native.py): nothing to download or
        probe here; the server runs it in MLflow's scoring server, a process of its own."""
        version = str(mv.version)
        if state.served == version and state.served_print == f"native:{version}":
            return
        try:
            io = json.loads(mv.tags.get(IO_TAG) or "{}")
            if not isinstance(io, dict) or not isinstance(io.get("features"), list):
                raise ValueError("its native_io tag names no features")
        except ValueError as err:
            state.rejected.add(version)
            emit("rejected", model=name, version=version, reason=f"native version: {err}")
            return
        self.first_round_done(name)
        state.previous, state.served, state.served_print = state.served, version, f"native:{version}"
        state.target = None
        reason = str(mv.tags.get(REASON_TAG) or "no reason recorded")[:500]
        emit("native", model=name, version=version, reason=reason, io=io, uri=f"models:/{name}/{version}")

    def announce(self, name: str, trusted, folder: Path, **extra) -> None:
        emit(
            "ready",
            model=name,
            version=trusted.version,
            path=str(folder.resolve()),
            manifest=trusted.served_manifest,
            **extra,
        )

    def prune(self, name: str, state: ModelState) -> None:
        keep = {v for v in (state.served, state.previous) if v}
        prune(self.cache, name, keep, self.args.lock_timeout)
        self.trusted_state.forget_probed(name, keep)

    def retry(self, name: str) -> None:
        """The server could not load what was announced (e.g. deleted from a shared cache): fetch it
        again, after a backoff."""
        state = self.states.get(name)
        if state is None or state.served is None:
            return
        version = state.served
        state.load_failures[version] = failures = state.load_failures.get(version, 0) + 1
        state.served = state.served_print = None
        if failures >= MAX_LOAD_FAILURES:  # it fails every time: never again, not every interval
            state.rejected.add(version)
            reason = f"the server failed to load it {failures} times"
            emit("rejected", model=name, version=version, reason=reason)
            return
        state.due = time.monotonic() + self.args.interval * 2**failures
        reason = f"the server could not load version {version} (failure {failures}); fetching it again"
        emit(
            "registry_error",
            model=name,
            reason=reason,
            public=reason,
            retry_in=self.args.interval * 2**failures,
        )
        state.wake.set()

    def report_shadow(self, record: dict) -> None:
        """Log a replica's shadow comparisons to the candidate version (shadow_evidence)."""
        try:
            if record.get("model") not in self.states:
                raise BadReport("model: not followed by this watcher")
            self.first_calls_one_at_a_time(lambda: log_report(self.client(), record))
        except Exception as err:  # the next report carries the whole tally again
            print(f"shadow report not logged ({reason_of(err)})", file=sys.stderr)

    def stalled(self) -> dict[str, str]:
        now, out = time.monotonic(), {}
        for name, state in self.states.items():
            busy = state.busy_since
            if busy is not None and now - busy > self.busy_limit:
                out[name] = f"busy with one poll for {now - busy:.0f} s"
            elif state.stalled:
                out[name] = state.stalled
        return out

    # ---- start from the local copy --------------------------------------------------------------

    def serve_local_copy(self, name: str, state: ModelState) -> None:
        """At start, before the registry is asked: offer the copy the alias last pointed at on this
        registry, as this server's private state recorded it (never the cache's word), checked
        again against that manifest (every file, the schema, external data) and probed unless
        this host's probe passed for exactly it. The registry's first answer confirms it (same
        version and manifest) or withdraws it."""
        try:
            trusted = self.trusted_state.recall(name, self.args.alias, self.args.tracking_uri)
        except Exception as err:  # a malformed record: no local copy
            emit("rejected", model=name, version="local", reason=f"local copy: {reason_of(err)}")
            return
        if trusted is None:
            return  # no copy: the model stays not-ready with the registry error as the reason
        folder = version_dir(self.cache, name, trusted.version)
        if not folder.is_dir():
            return  # pruned or never kept here: nothing to offer, the registry decides
        try:
            verify(folder, trusted)
            if not self.trusted_state.probed(name, trusted):
                probe(folder, self.limits.budget, trusted.served_manifest)
                self.trusted_state.mark_probed(name, trusted)
        except Exception as err:  # RejectedModel, unreadable files
            emit("rejected", model=name, version=trusted.version, reason=f"local copy: {reason_of(err)}")
            return
        state.served, state.served_print, state.local = trusted.version, fingerprint(trusted), True
        self.announce(name, trusted, folder, origin="verified local copy (not yet confirmed by the registry)")
