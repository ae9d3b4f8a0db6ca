"""The registry watcher: a sidecar process the server starts (`python -m serving.registry.watcher`).

It follows where each model's alias points, each model on its own thread and schedule, and when an
alias moves it fetches the new version through the host's shared cache (serving.registry.cache:
downloaded within a deadline, checked against the registry's manifest, probed within per-call
budgets), then tells the server on stdout, one JSON event per line:
  {"event": "ready", "model", "version", "path", "manifest"[, "origin"]}  verified: the server loads
        it, hashing the bytes it reads against "manifest"
  {"event": "rejected", "model", "version", "reason"}     bad content: never served, not retried
  {"event": "confirmed", "model", "version"}               the registry vouches for the local copy
  {"event": "withdrawn", "model", "version", "reason"}     the local copy is not what the registry
        vouches for: stop serving it
  {"event": "missing", "model", "reason"}                  no such model or alias yet
  {"event": "registry_error", "model", "reason", "retry_in"[, "version"]}  transient: retried
        with backoff ("version": the move that is waiting)
  {"event": "heartbeat", "at", "stalled": {model: reason}}  every interval, from its own thread;
        a model past one of its deadlines (cache lock, download) or busy far longer than they allow
The server may write {"retry": model} lines to stdin (its load of the announced version failed:
fetch it again, with backoff), and, to the candidates' watcher in shadow mode, {"shadow": record}
lines (serving/registry/shadow_evidence.py); it closes stdin to stop the watcher.

One model's failure never delays another's. The registry URI comes from MLFLOW_TRACKING_URI (the
server passes it in this process's environment: a command line is readable by every user of the
host), and no reason this process prints carries its credentials. Keeping the MLflow client here
keeps the server process free of MLflow's dependencies; no registry call happens on the request path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable

from serving.registry.events import emit
from serving.registry.fetch import fork_downloader, warm_downloader

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # a sidecar reports no usage to MLflow's makers


def heartbeat(stalled: Callable[[], dict[str, str]], stop: threading.Event, interval: float) -> None:
    """Tells the server this process is alive (from the start, while MLflow imports, and while a
    long download holds a model's thread), and which models' following is stalled."""
    while True:  # the first at once: the server's silence clock runs from this process's start
        emit("heartbeat", at=time.time(), stalled=stalled())
        if stop.wait(interval):
            return


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI (keeps it off the command line)"
    )
    parser.add_argument("--alias", required=True)
    parser.add_argument("--models", required=True, type=lambda s: s.split(","))
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--state-dir", default=None, help="default: <cache-dir>.state")
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--max-backoff", type=float, default=60.0)
    parser.add_argument("--heartbeat", type=float, default=2.0)
    parser.add_argument("--request-timeout", type=float, default=10.0)
    parser.add_argument("--lock-timeout", type=float, default=60.0)
    parser.add_argument("--download-deadline", type=float, default=900.0)
    parser.add_argument("--max-call-s", type=float, default=2.0)
    parser.add_argument("--max-call-bytes", type=int, default=512 << 20)
    parser.add_argument("--max-model-bytes", type=int, default=2 << 30)
    parser.add_argument("--serve-local-copy", action="store_true")
    args = parser.parse_args(argv)
    args.tracking_uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not args.tracking_uri:
        parser.error("no registry: set MLFLOW_TRACKING_URI (or pass --tracking-uri)")
    args.state_dir = args.state_dir or f"{args.cache_dir.rstrip('/')}.state"
    return args


def read_commands(watcher) -> None:
    """Lines from the server until it closes stdin: {"retry": model}, or {"shadow": record} (shadow
    comparisons to log to the candidate version: on a thread, the registry may be slow)."""
    for line in sys.stdin:
        try:
            command = json.loads(line)
            if "shadow" in command:
                threading.Thread(target=watcher.report_shadow, args=(command["shadow"],), daemon=True).start()
            else:
                watcher.retry(str(command["retry"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            print("unreadable command from the server skipped", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # One attempt per poll, bounded in time: MLflow's default HTTP client retries a down tracking
    # server with backoff for minutes, which would hide the outage; our backoff is the retry.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, round(args.request_timeout))))
    stop, watching = threading.Event(), []
    stalled = lambda: watching[0].stalled() if watching else {}  # noqa: E731
    threading.Thread(target=heartbeat, args=(stalled, stop, args.heartbeat), daemon=True).start()
    from serving.registry.following import Watcher  # MLflow: in this thread, before the model threads

    # the download forkserver: a fork of this process now, MLflow imported and no registry
    # client made yet (else a new interpreter importing MLflow again)
    if not fork_downloader():
        threading.Thread(target=warm_downloader, daemon=True).start()
    watcher = Watcher(args, stop)
    watching.append(watcher)
    if args.serve_local_copy:  # a warm cache serves at once; the first poll confirms or withdraws
        for name, state in watcher.states.items():
            watcher.serve_local_copy(name, state)
    for name in watcher.states:
        threading.Thread(target=watcher.follow, args=(name,), name=f"follow-{name}", daemon=True).start()
    try:
        read_commands(watcher)  # returns when the server goes away
    finally:
        watcher.stop.set()
    os._exit(0)  # model threads may be inside a download: they end with the process


if __name__ == "__main__":
    main()
