"""The shadow replayer: a child process of the server that answers sampled live requests with the
candidate version and says how its answers compare with the champion's (serving/http/shadow.py
sends the jobs and keeps the tally).

Why a process of its own, scheduled SCHED_IDLE: a replay is real inference work. In a thread of
the server it shares the interpreter lock with the event loop: measured under load (make
bench-serving), even a replay that waited for "no request in flight" cost the champion's p50 a
few per cent and its p99 more. Here it never holds the server's lock, runs SCHED_IDLE (the kernel
gives it a CPU only when no normal process is ready for one), and starts a replay only after
the server has had no request in flight for QUIET_S: on a VM's vCPUs an idle-priority process
still competes with the server for the host's cores (measured: without that wait, shadowing
every request cost the champion's p50 under load half again).

`python -m serving.http.shadow_replayer SOCKET ACTIVITY LIMITS`: SOCKET is the file descriptor of
its end of a SOCK_SEQPACKET socket pair (one job, one answer per message, JSON); ACTIVITY that of
the server's published requests in flight (serving/http/activity.py); LIMITS the routes' size
limits as JSON (never a secret). It exits when the server closes its end.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import orjson

from serving.http.activity import Activity
from serving.http.agreement import disagreement, forecast_agreement, rows_agreement, tolerance_of
from serving.http.forecasting import forecast_answer
from serving.http.native import ScoringServer
from serving.http.routes.predict import rows_answer
from serving.http.store import LoadedModel, load_verified
from serving.http.values import InvalidInput

log = logging.getLogger("onnxship.shadow")
LIMIT_KEYS = ("max_batch_rows", "max_answer_values", "max_call_rows", "warmup_calls")
QUIET_S = 0.002  # the server had no request in flight this long: a replay may start
LOOK_AGAIN_MAX_S = 0.05
MAX_AGE_S = 5.0  # a job the server stayed too busy to replay this long is dropped (counted)


def run_idle(pid: int) -> str:
    """Process `pid` (and the threads it starts later) on CPU time no one else wants. The server
    calls it as soon as it started the replayer, so even its imports run on idle CPU."""
    try:
        os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
        return "SCHED_IDLE"
    except (AttributeError, OSError):  # not Linux, or a sandbox that forbids it: the lowest nice
        os.setpriority(os.PRIO_PROCESS, pid, 19)
        return "nice 19"


def message_size(sock: socket.socket) -> int:
    """The length of the next message without taking it (0: the server closed its end)."""
    return sock.recv_into(bytearray(1), 1, socket.MSG_PEEK | socket.MSG_TRUNC)


class Candidates:
    """The candidate versions loaded here, one per model, from the folder the server's candidate
    follower verified (hashed again against its manifest, as the server loads a champion)."""

    def __init__(self, warmup_calls: int) -> None:
        self.warmup_calls = warmup_calls
        self.loaded: dict[str, LoadedModel] = {}

    def get(self, job: dict) -> LoadedModel:
        name, version, source = job["model"], job["candidate"], job["source"]
        held = self.loaded.get(name)
        if held is not None and (held.version, held.source) == (version, source):
            return held  # (a native candidate's restarted scoring server is a new source)
        if "native" in source:  # a native candidate: its scoring server, started by the follower
            server = ScoringServer(source["native"])
            loaded = LoadedModel(name, version, source["metadata"], None, None, native=server, source=source)
        else:
            folder, manifest = Path(source["folder"]), source["manifest"]
            loaded = load_verified(name, version, folder, manifest, self.warmup_calls, 1, quiet=True)
            loaded = dataclasses.replace(loaded, source=source)
        self.loaded[name] = loaded  # the previous candidate of this model is freed
        return loaded


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no inf: the server reads None as inf


def replay(job: dict, candidates: Candidates, limits: SimpleNamespace) -> dict:
    """One job: the candidate's answer to the request the champion answered, judged against it.
    A candidate that could not be loaded here is not judged: the job is dropped (`error`)."""
    kind, payload, answer = job["kind"], job["payload"], job["answer"]
    rows = len(payload) if kind == "rows" else len(answer.get("forecasts", [answer]))
    head = {k: job[k] for k in ("model", "champion", "candidate")}
    try:
        candidate = candidates.get(job)
    except Exception as err:  # e.g. its folder pruned meanwhile: named by type (no paths)
        log.error(
            "shadow candidate %s %s did not load: %s", job["model"], job["candidate"], type(err).__name__
        )
        return {**head, "error": f"candidate did not load ({type(err).__name__})"}
    atol, rtol = tolerance_of(candidate.metadata)
    started = time.perf_counter()
    try:
        if kind == "rows":
            theirs = rows_answer(candidate, payload)
        else:
            theirs = forecast_answer(candidate, payload, limits)
    except InvalidInput as err:  # the champion took this input, the candidate does not
        theirs, found = None, disagreement(rows, f"the candidate refused the input ({err})")
    seconds = time.perf_counter() - started  # the candidate's answer, as a route times it
    if theirs is not None:
        judge = forecast_agreement if kind == "forecast" else rows_agreement
        found = judge(answer, theirs, atol, rtol)
    compared = dataclasses.asdict(found)
    for key in ("max_abs_diff", "max_rel_diff"):
        compared[key] = _finite_or_none(compared[key])
    return {**head, "champion_s": job["champion_s"], "candidate_s": seconds, "found": compared}


def wait_until_quiet(activity: Activity, deadline: float, server: int) -> bool:
    """Live requests go first: back to sleep while the server has been busy in the last QUIET_S,
    ever longer (up to LOOK_AGAIN_MAX_S) while it stays busy, so that waiting under sustained
    load wakes this process a few dozen times a second, not hundreds. False: the job waited
    past `deadline` (time.monotonic()). Exits when the server process is gone (killed mid-request,
    its published count stays above 0 for ever)."""
    pause = QUIET_S
    while (quiet := activity.quiet_for()) < QUIET_S:
        if os.getppid() != server:
            raise SystemExit(0)
        if time.monotonic() >= deadline:
            return False
        time.sleep(max(pause, QUIET_S - quiet))
        pause = min(2 * pause, LOOK_AGAIN_MAX_S)
    return True


def serve(sock: socket.socket, activity: Activity, limits: SimpleNamespace) -> None:
    candidates, server = Candidates(limits.warmup_calls), os.getppid()
    while size := message_size(sock):
        job = orjson.loads(sock.recv(size))
        if not wait_until_quiet(activity, job["sent"] + MAX_AGE_S, server):
            result = {k: job[k] for k in ("model", "champion", "candidate")} | {"error": "expired"}
        else:
            try:
                result = replay(job, candidates, limits)
            except Exception as err:  # a bug of ours: this job is answered, the next one gets its try
                log.exception("shadow replay of %s failed", job.get("model"))
                result = {k: job.get(k) for k in ("model", "champion", "candidate")}
                result["error"] = type(err).__name__
        sock.sendall(orjson.dumps(result))


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fd, activity, limits = int(argv[0]), Activity(int(argv[1])), orjson.loads(argv[2])
    log.info("shadow replayer %d scheduled %s", os.getpid(), run_idle(0))  # as it is already
    with socket.socket(fileno=fd) as sock:
        serve(sock, activity, SimpleNamespace(**{k: limits[k] for k in LIMIT_KEYS}))


if __name__ == "__main__":
    main(sys.argv[1:])
