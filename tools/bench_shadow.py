"""Does shadow mode cost the champion latency? Three of our servers on the same version: shadow
mode off, on at the configured share (conf/serving shadow_share), and on for every request
(share 1.0, the worst case), loaded in turn by wrk: off, default, every, off, … at each
concurrency, so drift on the machine shows in all three. Part of `make bench-serving`
(tools/bench_serving.py).

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

ROUNDS = 5  # runs of each mode per concurrency (the off runs' spread is the noise)
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


def start(mode: str, share: float | None, common: dict, model: str, work: Path) -> tuple:
    """One server: shadow off (share None) or on at `share`."""
    port = free_port()
    extra = {}
    if share is not None:
        extra = {
            "ONNXSHIP_SERVING_SHADOW_MODELS": json.dumps([model]),
            "ONNXSHIP_SERVING_CANDIDATE_ALIAS": SHADOW_ALIAS,
            "ONNXSHIP_SERVING_SHADOW_SHARE": str(share),
        }
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving.http.serve", "--port", str(port), "--workers", "1"],
        env={**common, **extra, "ONNXSHIP_SERVING_CACHE_DIR": str(work / f"cache-{mode}")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(f"{url}/health/ready", proc)
    if share is not None:
        candidate_loaded(url, model)
    return proc, url


def shadow_on_vs_off(args, version: str, env: dict, load_body: str, work: Path, default_share: float) -> dict:
    """p50/p99 of the champion's answers with shadow mode off, on at the default share, and on at
    share 1.0 (every request replayed): medians over ROUNDS interleaved wrk runs of
    args.duration seconds each, their ratios to off, and whether each is within the noise (no
    worse than the worst of the runs with shadow off)."""
    uri = private_registry(args.tracking_uri, args.model, version, work)
    common = {**env, "ONNXSHIP_SERVING_TRACKING_URI": uri}
    modes = {"off": None, "default_share": default_share, "every_request": 1.0}
    servers = {}
    try:
        for mode, share in modes.items():
            servers[mode] = start(mode, share, common, args.model, work)
        for _, url in servers.values():  # warm every route
            wrk(f"{url}/predict", load_body, 1, 1.0)
        result: dict = {"rounds": ROUNDS, "shares": modes, "wrk_seconds_per_run": args.duration}
        for c in CONCURRENCY:
            runs = {mode: [] for mode in modes}
            for _ in range(ROUNDS):
                for mode in modes:  # interleaved: drift on the machine shows in every mode
                    runs[mode].append(wrk(f"{servers[mode][1]}/predict", load_body, c, args.duration))
            entry: dict = {"runs": runs}
            for q in ("p50_ms", "p99_ms"):
                off = statistics.median(r[q] for r in runs["off"])
                entry[f"{q}_off"] = off
                for mode in ("default_share", "every_request"):
                    on = statistics.median(r[q] for r in runs[mode])
                    entry[f"{q}_{mode}"], entry[f"{q}_ratio_{mode}_over_off"] = on, on / off
                    # within noise: the median with shadow on is no worse than the worst run with it off
                    entry[f"{q}_{mode}_within_noise"] = on <= max(r[q] for r in runs["off"])
                entry[f"{q}_off_spread"] = max(r[q] for r in runs["off"]) / min(r[q] for r in runs["off"])
            result[f"c{c}"] = entry
            p50 = [entry[f"p50_ms_{m}"] for m in ("off", "default_share", "every_request")]
            p99 = [entry[f"p99_ms_{m}"] for m in ("off", "default_share", "every_request")]
            print(f"shadow c{c} (off / {default_share} / 1.0): p50 {p50} ms, p99 {p99} ms")
        result["candidate_compared"] = {
            mode: compared(servers[mode][1], args.model) for mode in modes if modes[mode]
        }
        return result
    finally:
        for proc, _ in servers.values():
            stop(proc)
