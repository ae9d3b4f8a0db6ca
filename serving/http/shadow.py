"""Shadow mode: the candidate version also answers a sampled share of live requests, off the
request path, and its answers are compared with the champion's (serving/http/agreement.py).

A route that answered a shadowed model's request offers it here (`offer`: a coin toss and, for the
sampled share, one non-blocking send of the job to the shadow replayer: microseconds). The
replayer is a child process on idle CPU only (serving/http/shadow_replayer.py): it answers the
request with the candidate exactly as the route would have (the same parsing, the same graph
calls), compares what a client would have got and sends the result back, which a reader thread
here tallies. At most `shadow_queue` jobs wait for it: beyond that, or when a job does not fit
the socket's buffer, the request is dropped and counted, never waited for, so the champion's
answer gets no latency from its shadow. Results per (champion, candidate) pair go to Prometheus,
to GET /models/{name} (`summary`), and at intervals to the candidate version in MLflow through the
candidates' watcher (`report`), where `promote --require-shadow N` reads them.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import orjson

from serving.http.activity import Activity
from serving.http.agreement import Agreement, tolerance_of
from serving.http.metrics import ServerMetrics
from serving.http.shadow_replayer import LIMIT_KEYS, message_size, run_idle
from serving.http.store import LoadedModel, ModelStore

log = logging.getLogger("onnxship.shadow")
LATENCIES_KEPT = 2048  # per role and pair: the p50/p99 in /models are over the latest this many
SOCKET_BUFFER = 8 << 20  # jobs in flight to the replayer, bytes (the kernel caps it: net.core.wmem_max)
RESTART_PAUSE_S = 1.0  # before a replayer that exited is started again
# who is reporting: comparisons from each replica (and each restart) are kept apart in MLflow
REPLICA = f"{socket.gethostname()}-{os.getpid()}-{int(time.time())}"


@dataclass
class PairStats:
    """Comparisons of one candidate version against one champion version."""

    champion: str
    candidate: str
    tolerance: tuple[float, float]
    comparisons: int = 0
    within: int = 0
    refused: int = 0
    rows: int = 0
    rows_within: int = 0
    labels_compared: int = 0
    labels_agree: int = 0
    max_abs_diff: float = 0.0
    max_rel_diff: float = 0.0
    dropped: int = 0
    latencies: dict[str, deque] = field(
        default_factory=lambda: {r: deque(maxlen=LATENCIES_KEPT) for r in ("champion", "candidate")}
    )

    def add(self, found: Agreement, champion_s: float, candidate_s: float) -> None:
        self.comparisons += 1
        self.within += found.within
        self.refused += found.why is not None
        self.rows += found.rows
        self.rows_within += found.rows_within
        if found.labels_agree is not None:
            self.labels_compared += found.rows
            self.labels_agree += found.labels_agree
        if found.why is None:
            self.max_abs_diff = max(self.max_abs_diff, found.max_abs_diff)
            self.max_rel_diff = max(self.max_rel_diff, found.max_rel_diff)
        self.latencies["champion"].append(champion_s)
        self.latencies["candidate"].append(candidate_s)

    def summary(self) -> dict:
        atol, rtol = self.tolerance
        out = {
            "champion": self.champion,
            "candidate": self.candidate,
            "comparisons": self.comparisons,
            "within_tolerance": self.within,
            "refused_by_candidate": self.refused,
            "rows": self.rows,
            "rows_within_tolerance": self.rows_within,
            # JSON has no inf: null says a difference was not finite (e.g. a NaN against a number)
            "max_abs_diff": self.max_abs_diff if math.isfinite(self.max_abs_diff) else None,
            "max_rel_diff": self.max_rel_diff if math.isfinite(self.max_rel_diff) else None,
            "tolerance": {"atol": atol, "rtol": rtol},
            "dropped": self.dropped,
            "latency_ms": {
                role: {
                    "p50": float(np.percentile(kept, 50)) * 1e3,
                    "p99": float(np.percentile(kept, 99)) * 1e3,
                    "samples": len(kept),
                }
                for role, kept in self.latencies.items()
                if kept
            },
        }
        if self.labels_compared:
            out["label_agreement"] = self.labels_agree / self.labels_compared
        return out


class Shadow:
    def __init__(
        self,
        models: list[str],
        share: float,
        queue_size: int,
        candidates: ModelStore,
        metrics: ServerMetrics,
        limits: dict,
        seed: int | None = None,
    ) -> None:
        self.models = frozenset(models)
        self.share = share
        self.queue_size = queue_size
        self.candidates = candidates
        self.metrics = metrics
        self.limits = {k: limits[k] for k in LIMIT_KEYS}  # what the replayer's routes need
        self.waiting = 0  # jobs sent to the replayer and not answered yet
        self.activity = Activity()  # requests in flight, published by RequestGuard for the replayer
        self.pairs: dict[str, PairStats] = {}  # by model: the pair compared now
        self.finished: list[tuple[str, PairStats]] = []  # pairs replaced since the last report
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None  # our end of the pair; None while no replayer runs
        self._replayer: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._follow_replayer, name="shadow", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._end_replayer()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def offer(self, champion: LoadedModel, kind: str, payload: object, answer: dict, seconds: float) -> None:
        """Called by the route after answering: cheap, never blocks, never raises."""
        if champion.name not in self.models:
            return
        candidate = self.candidates.get(champion.name)
        if candidate is None or candidate.version == champion.version:
            return  # nothing to compare with (or the candidate is the champion already)
        if self._random.random() >= self.share:
            return
        with self._lock:  # no room: dropped before any work (under saturation, the common case)
            room = self._socket is not None and self.waiting < self.queue_size
        if not (room and self._send(champion, candidate, kind, payload, answer, seconds)):
            self._dropped(champion, candidate)

    def _send(
        self, champion: LoadedModel, candidate: LoadedModel, kind: str, payload, answer, seconds
    ) -> bool:
        job = {
            "model": champion.name,
            "champion": champion.version,
            "candidate": candidate.version,
            "source": candidate.source,
            "kind": kind,
            "payload": payload,
            "answer": answer,
            "champion_s": seconds,
            "sent": time.monotonic(),  # the replayer drops a job that waited too long
        }
        try:
            message = orjson.dumps(job)
        except TypeError:  # not JSON (never expected: the route's own parsed input and answer)
            return False
        with self._lock:  # (the socket is closed only under this lock: never a reused descriptor)
            if self._socket is None or self.waiting >= self.queue_size:
                return False
            try:
                self._socket.send(message, socket.MSG_DONTWAIT)  # a full buffer raises, never waits
            except OSError:  # full, or larger than the socket's buffer
                return False
            self.waiting += 1
            return True

    def _dropped(self, champion: LoadedModel, candidate: LoadedModel) -> None:
        self.metrics.shadow_dropped.labels(champion.name).inc()
        self._pair(champion.name, champion.version, candidate.version).dropped += 1

    def _pair(self, name: str, champion: str, version: str) -> PairStats:
        with self._lock:
            pair = self.pairs.get(name)
            if pair is None or (pair.champion, pair.candidate) != (champion, version):
                if pair is not None and pair.comparisons:
                    self.finished.append((name, pair))  # its final tally is still reported
                held = self.candidates.get(name)
                metadata = held.metadata if held is not None and held.version == version else {}
                pair = PairStats(champion, version, tolerance_of(metadata))
                self.pairs[name] = pair
            return pair

    def _follow_replayer(self) -> None:
        """Runs the replayer and tallies its results; starts it again when it exits."""
        while not self._stopping.is_set():
            try:
                self._run_replayer()
            except Exception:  # a bug of ours must not end shadowing
                if not self._stopping.is_set():  # (stopping closes the socket under the reader)
                    log.exception("the shadow replayer failed")
            if not self._stopping.wait(RESTART_PAUSE_S):
                log.error("the shadow replayer exited; starting it again")

    def _run_replayer(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            fds = [theirs.fileno(), self.activity.fd]
            command = [sys.executable, "-m", "serving.http.shadow_replayer", *map(str, fds)]
            with theirs:
                self._replayer = subprocess.Popen(
                    [*command, orjson.dumps(self.limits).decode()], pass_fds=fds
                )
            run_idle(self._replayer.pid)
            with self._lock:
                if self._stopping.is_set():  # stop() came while this replayer started
                    return
                self._socket, self.waiting = ours, 0
            while size := message_size(ours):  # blocking here; the routes send with MSG_DONTWAIT
                try:
                    self.record(orjson.loads(ours.recv(size)))
                except Exception:  # one result we cannot read must not end the replayer
                    log.exception("a shadow result could not be tallied")
        finally:
            self._end_replayer(ours)

    def _end_replayer(self, sock: socket.socket | None = None) -> None:
        with self._lock:
            if self._socket is not None:
                sock, self._socket = self._socket, None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # the replayer reads the end, the reader wakes
                sock.close()
        proc = self._replayer
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def record(self, result: dict) -> None:
        """One answer of the replayer: the comparison tallied (or the job counted as dropped)."""
        with self._lock:
            self.waiting = max(self.waiting - 1, 0)
        name, champion, candidate = result["model"], result["champion"], result["candidate"]
        pair = self._pair(name, champion, candidate)
        if "found" not in result:  # waited too long, candidate not loaded there, or a bug (logged)
            pair.dropped += 1
            self.metrics.shadow_dropped.labels(name).inc()
            return
        compared = result["found"]
        for key in ("max_abs_diff", "max_rel_diff"):  # JSON has no inf: the replayer sent None
            compared[key] = math.inf if compared[key] is None else compared[key]
        found = Agreement(**compared)
        pair.add(found, result["champion_s"], result["candidate_s"])
        outcome = "refused" if found.why else ("within" if found.within else "outside")
        labels = (name, champion, candidate)
        self.metrics.shadow_comparisons.labels(*labels, outcome).inc()
        self.metrics.shadow_max_abs_diff.labels(*labels).set(pair.max_abs_diff)
        calls = self.metrics.shadow_call_seconds
        calls.labels(name, "champion", champion).observe(result["champion_s"])
        calls.labels(name, "candidate", candidate).observe(result["candidate_s"])

    def summary(self, name: str) -> dict | None:
        """What /models/{name} shows: the current pair's comparisons (None: not shadowed)."""
        if name not in self.models:
            return None
        pair = self.pairs.get(name)
        candidate = self.candidates.get(name)
        if candidate is None:
            return {"status": "no candidate loaded yet", "share": self.share}
        if pair is None or pair.candidate != candidate.version:
            return {"status": "no request compared yet", "share": self.share, "candidate": candidate.version}
        return {"status": "comparing", "share": self.share, **pair.summary()}

    def reports(self) -> list[dict]:
        """One record per shadowed model with comparisons (and per pair replaced since the last
        call), for the candidate's MLflow version."""
        with self._lock:
            pairs, self.finished = [*self.finished, *self.pairs.items()], []
        return [
            {"model": name, "replica": REPLICA, **pair.summary()} for name, pair in pairs if pair.comparisons
        ]
