"""Serving benchmark: our server vs `mlflow models serve` on the same registered ONNX model, in
one run, on loopback, with wrk as the load client (Debian package `wrk`).

    python -m tools.bench_serving [--model xgboost] [--alias candidate] [--duration 5]

Writes reports/serving.json: raw session.run p50 vs single-row HTTP p50 (the HTTP overhead), req/s
and p50/p99 at concurrency 1, 8 and 32 for both servers (and their ratio), cold start to ready, and
server RSS. Bounded: each load run lasts --duration seconds; servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from onnxship.contract import METADATA_FILE, MODEL_FILE
from onnxship.io import write_json
from onnxship.runtime import InferenceSettings, OnnxModel
from onnxship.version.verify import verify, vouched
from serving.http.native import serve_command
from serving.registry.fetch import download
from serving.settings import Settings
from tools.bench_shadow import shadow_on_vs_off
from tools.hostile_load import HostileLoad
from tools.wrk_load import free_port, stop, wait_ready, wrk

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
CONCURRENCY = (1, 8, 16, 32)
WORKERS = (1, 2)


def tree_rss_mb(pid: int) -> float:
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


def split_rss_mb(pid: int) -> dict:
    """RSS of the server process itself and of its registry watcher (a single-worker server)."""
    root = psutil.Process(pid)
    watchers = [
        p for p in root.children(recursive=True) if "serving.registry.watcher" in " ".join(p.cmdline())
    ]
    return {
        "rss_server_mb": root.memory_info().rss / 2**20,
        "rss_watcher_mb": sum(p.memory_info().rss for p in watchers) / 2**20,
    }


def under_attack(port: int, load: dict, duration: float, body_bytes: int) -> dict:
    """A well-behaved client's latency (wrk, 1 connection) calm, under 50 slow-loris connections and
    4 clients sending maximal bodies, and calm again: interleaved, so drift shows."""
    calm = wrk(load["url"], load["body"], 1, duration)
    with HostileLoad("127.0.0.1", port, 50, 4, body_bytes) as attack:
        attacked = wrk(load["url"], load["body"], 1, duration)
    after = wrk(load["url"], load["body"], 1, duration)
    return {
        "calm": calm,
        "attacked": attacked,
        "calm_after": after,
        "attackers": {
            "slow_loris_connections": 50,
            "big_body_clients": 4,
            "body_bytes": body_bytes,
            **attack.counts,
        },
        "p99_ratio_attacked_over_calm": attacked["p99_ms"] / calm["p99_ms"],
    }


def raw_session_p50(folder: Path, row: np.ndarray, calls: int = 5000) -> float:
    metadata = json.loads((folder / METADATA_FILE).read_text())
    model = OnnxModel(folder / MODEL_FILE, InferenceSettings.from_mapping(metadata["inference_settings"]))
    X = row.reshape(1, -1).astype(np.float32)
    for _ in range(200):
        model.run_unchecked(X)
    times = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        model.run_unchecked(X)
        times.append(time.perf_counter_ns() - start)
    return float(np.percentile(times, 50) / 1e6)


def run_server(
    label: str, cmd: list[str], ready_url: str, env: dict, load: dict, duration: float, extra=None
) -> dict:
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        cold = wait_ready(ready_url, proc)
        result = {"cold_start_to_ready_s": cold, "rss_after_ready_mb": tree_rss_mb(proc.pid)}
        wrk(load["url"], load["body"], 1, 1.0)  # warm the route
        for c in CONCURRENCY:
            result[f"c{c}"] = wrk(load["url"], load["body"], c, duration)
        result["rss_after_load_mb"] = tree_rss_mb(proc.pid)
        if extra:
            result |= extra(proc)
        print(
            f"{label}: ready in {cold:.1f}s; "
            + ", ".join(
                f"c{c} {result[f'c{c}']['req_s']:.0f} req/s p50 {result[f'c{c}'].get('p50_ms', 0):.2f} ms"
                for c in CONCURRENCY
            )
        )
        return result
    finally:
        stop(proc)
        result_wall = time.perf_counter() - started
        print(f"{label}: stopped after {result_wall:.0f}s")


def log_to_mlflow(report: dict, args: argparse.Namespace) -> None:
    """One run per benchmark in experiment `onnxship/serving-benchmark`, figures as metrics."""
    import mlflow

    from onnxship.pipeline.lineage import source_state
    from onnxship.pipeline.tracking import flatten

    mlflow.set_tracking_uri(args.tracking_uri)
    name = "onnxship/serving-benchmark"
    if mlflow.get_experiment_by_name(name) is None and not args.tracking_uri.startswith("http"):
        # artifacts beside the pipeline's (mlartifacts/), not in a stray ./mlruns
        mlflow.create_experiment(name, artifact_location=Path("mlartifacts").resolve().as_uri())
    mlflow.set_experiment(name)
    tags = {"stage": "bench_serving", "model": args.model, **source_state()}
    with mlflow.start_run(run_name=f"serving {args.model} v{report['version']}", tags=tags):
        mlflow.log_params(
            {k: report[k] for k in ("model", "version", "variant", "load_client", "duration_s")}
        )
        numbers = {
            k.replace("/", "."): float(v)
            for k, v in flatten(report).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "version"
        }
        mlflow.log_metrics(numbers)
        mlflow.log_artifact(args.out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="xgboost")
    parser.add_argument("--alias", default="candidate")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--out", default="reports/serving.json")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed as the load client: apt-get install wrk")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=args.tracking_uri, registry_uri=args.tracking_uri)
    version = client.get_model_version_by_alias(args.model, args.alias)
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    trusted = vouched(version)  # the benchmark serves what the server would: checked the same way
    folder = download(trusted, work / "model", args.tracking_uri, 2 << 30)
    metadata = verify(folder, trusted)
    import pandas as pd

    frame = pd.read_parquet("data/prepared/test.parquet")
    row = frame[metadata["features"]].iloc[0]
    features = {k: float(v) for k, v in row.items()}

    report: dict = {
        "model": args.model,
        "version": version.version,
        "variant": metadata["variant"],
        "machine_cpus": os.cpu_count(),
        "load_client": "wrk -t1",
        "duration_s": args.duration,
    }
    report["raw_session_run_p50_ms"] = raw_session_p50(folder, row.to_numpy())

    env = {
        **os.environ,
        "ONNXSHIP_SERVING_TRACKING_URI": args.tracking_uri,
        "ONNXSHIP_SERVING_ALIAS": args.alias,
        "ONNXSHIP_SERVING_MODELS": json.dumps([args.model]),
        "ONNXSHIP_SERVING_CACHE_DIR": str(work / "cache"),
    }
    max_body = Settings().max_body_bytes
    for workers in WORKERS:
        port = free_port()
        ours_cmd = [
            sys.executable,
            "-m",
            "serving.http.serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ]
        load = {
            "url": f"http://127.0.0.1:{port}/predict",
            "body": json.dumps({"model": args.model, "features": features}),
        }

        def single_worker_figures(proc, port=port, load=load) -> dict:
            return {**split_rss_mb(proc.pid), "hostile": under_attack(port, load, args.duration, max_body)}

        report[f"onnxship_workers_{workers}"] = run_server(
            f"onnxship --workers {workers}",
            ours_cmd,
            f"http://127.0.0.1:{port}/health/ready",
            env,
            load,
            args.duration,
            extra=single_worker_figures if workers == 1 else None,
        )
        if workers == 1:  # a restart finds the cache warm: how soon is it ready?
            again = subprocess.Popen(
                ours_cmd,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                report["onnxship_workers_1"]["ready_warm_cache_s"] = wait_ready(
                    f"http://127.0.0.1:{port}/health/ready", again
                )
            finally:
                stop(again)
        port = free_port()
        mlflow_cmd = serve_command(f"models:/{args.model}/{version.version}", port, workers)
        report[f"mlflow_models_serve_workers_{workers}"] = run_server(
            f"mlflow models serve --workers {workers}",
            mlflow_cmd,
            f"http://127.0.0.1:{port}/ping",
            {**env, "MLFLOW_TRACKING_URI": args.tracking_uri},
            {
                "url": f"http://127.0.0.1:{port}/invocations",
                "body": json.dumps({"inputs": [row.astype(np.float32).tolist()]}),
            },
            args.duration,
        )
    # shadow mode on vs off, interleaved (same version as the champion, a twin as the candidate)
    default_share = Settings().shadow_share
    report["shadow"] = shadow_on_vs_off(args, str(version.version), env, load["body"], work, default_share)
    ours = report["onnxship_workers_1"]
    report["http_single_row_p50_ms"] = ours["c1"].get("p50_ms")
    report["http_overhead_p50_ms"] = ours["c1"].get("p50_ms", float("nan")) - report["raw_session_run_p50_ms"]
    for c in CONCURRENCY:
        for workers in WORKERS:
            mine = report[f"onnxship_workers_{workers}"][f"c{c}"]["req_s"]
            report[f"req_s_ratio_vs_mlflow_workers_{workers}_c{c}"] = mine / max(
                report[f"mlflow_models_serve_workers_{workers}"][f"c{c}"]["req_s"], 1e-9
            )
        report[f"req_s_workers_2_over_1_c{c}"] = report["onnxship_workers_2"][f"c{c}"]["req_s"] / max(
            ours[f"c{c}"]["req_s"], 1e-9
        )
    write_json(args.out, report)
    shutil.rmtree(work, ignore_errors=True)
    log_to_mlflow(report, args)
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, dict)}, indent=2))


if __name__ == "__main__":
    main()
