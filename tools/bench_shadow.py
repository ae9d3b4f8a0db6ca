"""Does shadow mode cost the champion latency? Two of our servers on the same version, one with
shadow mode on (every request also replayed on a candidate: share 1.0, the worst case), one
with it off, loaded in turn by wrk: off, on, off, on … at each concurrency, so drift on the
machine shows in both. Part of `make bench-serving` (tools/bench_serving.py).

The candidate is the benchmarked version registered once more (same artifacts, a new version
number) in a private copy of the SQLite registry: the user's registry is never changed, and the
comparisons are real (the two answer alike, so every comparison is within tolerance).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tools.wrk_load import free_port, stop, wait_ready, wrk

ROUNDS = 3  # off/on pairs per concurrency
CONCURRENCY = (1, 8)
SHADOW_ALIAS = "shadow-bench"


def private_registry(tracking_uri: str, model: str, version: str, work: Path) -> str:
    """A copy of the SQLite registry where alias SHADOW_ALIAS names a second version of `model`
    built from `version`'s own run and artifacts (with its tags, so the server trusts it)."""
    from mlflow.tracking import MlflowClient

    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        raise SystemExit("the shadow benchmark copies the registry: it needs a sqlite:/// tracking URI")
    copy = work / "shadow-registry.db"
    shutil.copy(tracking_uri[len(prefix) :], copy)
    uri = f"{prefix}{copy}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mv = client.get_model_version(model, version)
    again = client.create_model_version(model, mv.source, mv.run_id, tags=dict(mv.tags))
    client.set_registered_model_alias(model, SHADOW_ALIAS, again.version)
    return uri


def compared(url: str, model: str) -> dict:
    shadow = httpx.get(f"{url}/models/{model}").json().get("shadow", {})
    return {k: shadow.get(k) for k in ("status", "comparisons", "within_tolerance", "dropped", "latency_ms")}


def candidate_loaded(url: str, model: str, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if compared(url, model).get("status") not in (None, "no candidate loaded yet"):
            return
        time.sleep(0.2)
    raise TimeoutError(f"the shadow candidate of {model} was not loaded in {seconds:.0f} s")


def shadow_on_vs_off(args, version: str, env: dict, load_body: str, work: Path) -> dict:
    """p50/p99 of the champion's answers with shadow mode on vs off (ratios of medians over
    ROUNDS interleaved wrk runs of args.duration seconds each)."""
    uri = private_registry(args.tracking_uri, args.model, version, work)
    common = {**env, "ONNXSHIP_SERVING_TRACKING_URI": uri}
    servers = {}
    try:
        for mode in ("off", "on"):
            port = free_port()
            extra = (
                {
                    "ONNXSHIP_SERVING_SHADOW_MODELS": json.dumps([args.model]),
                    "ONNXSHIP_SERVING_CANDIDATE_ALIAS": SHADOW_ALIAS,
                    "ONNXSHIP_SERVING_SHADOW_SHARE": "1.0",
                }
                if mode == "on"
                else {}
            )
            cache = {"ONNXSHIP_SERVING_CACHE_DIR": str(work / f"cache-{mode}")}
            proc = subprocess.Popen(
                [sys.executable, "-m", "serving.http.serve", "--port", str(port), "--workers", "1"],
                env={**common, **extra, **cache},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            url = f"http://127.0.0.1:{port}"
            servers[mode] = (proc, url)
            wait_ready(f"{url}/health/ready", proc)
        on_url = servers["on"][1]
        candidate_loaded(on_url, args.model)
        for mode in ("off", "on"):  # warm both routes
            wrk(f"{servers[mode][1]}/predict", load_body, 1, 1.0)
        result: dict = {"rounds": ROUNDS, "shadow_share": 1.0, "wrk_seconds_per_run": args.duration}
        for c in CONCURRENCY:
            runs = {"off": [], "on": []}
            for _ in range(ROUNDS):
                for mode in ("off", "on"):
                    runs[mode].append(wrk(f"{servers[mode][1]}/predict", load_body, c, args.duration))
            entry = {mode: runs[mode] for mode in runs}
            for q in ("p50_ms", "p99_ms"):
                off = statistics.median(r[q] for r in runs["off"])
                on = statistics.median(r[q] for r in runs["on"])
                entry[f"{q}_off"], entry[f"{q}_on"], entry[f"{q}_ratio_on_over_off"] = off, on, on / off
            result[f"c{c}"] = entry
            print(
                f"shadow c{c}: p50 {entry['p50_ms_off']:.3f} -> {entry['p50_ms_on']:.3f} ms, "
                f"p99 {entry['p99_ms_off']:.3f} -> {entry['p99_ms_on']:.3f} ms (off -> on)"
            )
        result["candidate_compared"] = compared(on_url, args.model)
        return result
    finally:
        for proc, _ in servers.values():
            stop(proc)
