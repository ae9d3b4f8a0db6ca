"""Shadow mode: the candidate version also answers a sampled share of live requests, off the
request path, and its answers are compared with the champion's (serving/http/agreement.py).

A route that answered a shadowed model's request offers it here (`offer`: a coin toss and a
non-blocking put, microseconds); one worker thread replays it on the candidate exactly as the
route would have (the same parsing, the same graph calls) and compares what a client would have
got. The queue is bounded: when the candidate cannot keep up, requests are dropped and counted,
never waited for, so the champion's answer gets no latency from its shadow. Results per
(champion, candidate) pair go to Prometheus, to GET /models/{name} (`summary`), and at intervals to
the candidate version in MLflow through the candidates' watcher (`report`), where `promote
--require-shadow N` reads them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from serving.http.agreement import Agreement, disagreement, forecast_agreement, rows_agreement, tolerance_of
from serving.http.metrics import ServerMetrics
from serving.http.store import LoadedModel, ModelStore
from serving.http.values import InvalidInput

log = logging.getLogger("onnxship.shadow")
IDLE_POLL_S = 0.001  # a waiting replay looks for an idle moment after this, then ever later
IDLE_POLL_MAX_S = 0.05
MAX_WAIT_S = 2.0  # a replay that found no idle moment this long is dropped
LATENCIES_KEPT = 2048  # per role and pair: the p50/p99 in /models are over the latest this many
# who is reporting: comparisons from each replica (and each restart) are kept apart in MLflow
REPLICA = f"{socket.gethostname()}-{os.getpid()}-{int(time.time())}"

Replay = Callable[[LoadedModel, object], dict]  # the route's own answer for a request's payload


@dataclass
class Job:
    champion: LoadedModel
    candidate: LoadedModel
    kind: str  # "rows" or "forecast"
    payload: object  # what the route parsed: the feature rows, or the forecast body
    answer: dict  # the champion's answer
    seconds: float  # the champion's inference time


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
            "max_abs_diff": self.max_abs_diff,
            "max_rel_diff": self.max_rel_diff,
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
        replays: dict[str, Replay],
        seed: int | None = None,
        idle: Callable[[], bool] = lambda: True,
    ) -> None:
        self.models = frozenset(models)
        self.share = share
        self.candidates = candidates
        self.metrics = metrics
        self.replays = replays
        self.idle = idle  # no live request in flight: the only time a replay runs
        self.queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self.pairs: dict[str, PairStats] = {}  # by model: the pair compared now
        self.finished: list[tuple[str, PairStats]] = []  # pairs replaced since the last report
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, name="shadow", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with contextlib.suppress(queue.Full):  # full: a daemon thread, it ends with the process
            self.queue.put_nowait(None)
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
        try:
            self.queue.put_nowait(Job(champion, candidate, kind, payload, answer, seconds))
        except queue.Full:
            self.metrics.shadow_dropped.labels(champion.name).inc()
            self._pair(champion, candidate).dropped += 1

    def _pair(self, champion: LoadedModel, candidate: LoadedModel) -> PairStats:
        with self._lock:
            pair = self.pairs.get(champion.name)
            if pair is None or (pair.champion, pair.candidate) != (champion.version, candidate.version):
                if pair is not None and pair.comparisons:
                    self.finished.append((champion.name, pair))  # its final tally is still reported
                pair = PairStats(champion.version, candidate.version, tolerance_of(candidate.metadata))
                self.pairs[champion.name] = pair
            return pair

    def _work(self) -> None:
        while True:
            job = self.queue.get()
            if job is None:
                return
            if not self.wait_for_idle(job):
                continue
            try:
                self.compare(job)
            except Exception:  # a bug of ours must not end shadowing
                log.exception("shadow comparison of %s failed", job.champion.name)

    def wait_for_idle(self, job: Job) -> bool:
        """Live requests go first: a replay starts only while none is in flight (one process,
        one interpreter lock: a replay beside a request slows it). While the server is busy it
        looks again after a pause that doubles up to IDLE_POLL_MAX_S, asleep in between: every
        look asks the event loop for the interpreter lock (measured: looking every 0.5 ms, or
        waking on an Event the loop sets, cost a saturated loop 30-80 % of its p50). A job that
        found no idle moment in MAX_WAIT_S is dropped and counted (the server is saturated)."""
        if self._until_idle():
            return True
        self.metrics.shadow_dropped.labels(job.champion.name).inc()
        self._pair(job.champion, job.candidate).dropped += 1
        return False

    def _until_idle(self) -> bool:
        waited, pause = 0.0, IDLE_POLL_S
        while not self.idle():
            if waited >= MAX_WAIT_S:
                return False
            time.sleep(pause)
            waited, pause = waited + pause, min(2 * pause, IDLE_POLL_MAX_S)
        return True

    def _step(self) -> None:
        """Between a replay's steps: wait while a live request is in flight."""
        self._until_idle()

    def compare(self, job: Job) -> Agreement:
        """Replay one request on the candidate and record how its answer compares."""
        champion, candidate = job.champion, job.candidate
        atol, rtol = tolerance_of(candidate.metadata)
        rows = len(job.payload) if job.kind == "rows" else len(job.answer.get("forecasts", [job.answer]))
        started = time.perf_counter()
        try:
            answer = self.replays[job.kind](candidate, job.payload)
        except InvalidInput as err:  # the champion took this input, the candidate does not
            answer, found = None, disagreement(rows, f"the candidate refused the input ({err})")
        seconds = time.perf_counter() - started  # the candidate's answer, as a route times it
        self._step()
        if answer is not None:
            judge = forecast_agreement if job.kind == "forecast" else rows_agreement
            found = judge(job.answer, answer, atol, rtol)
        pair = self._pair(champion, candidate)
        pair.add(found, job.seconds, seconds)
        result = "refused" if found.why else ("within" if found.within else "outside")
        labels = (champion.name, champion.version, candidate.version)
        self.metrics.shadow_comparisons.labels(*labels, result).inc()
        self.metrics.shadow_max_abs_diff.labels(*labels).set(pair.max_abs_diff)
        calls = self.metrics.shadow_call_seconds
        calls.labels(champion.name, "champion", champion.version).observe(job.seconds)
        calls.labels(champion.name, "candidate", candidate.version).observe(seconds)
        return found

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
