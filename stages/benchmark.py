"""benchmark: native predict vs every ONNX variant, in one run, per batch size.

Each runtime is measured in a fresh subprocess (spawn), so load time, first-call latency and RSS
belong to that runtime alone. ONNX sessions come from serving.runtime: what is measured is what
is served. Latency is timed per call; each cell keeps timing until its time budget is spent.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from stages.common.config import as_plain, model_spec, run_stage
from stages.common.io import read_json, write_json
from stages.common.tracking import log_report, stage_run
from stages.optimize import OPTIMIZE_FILE

NATIVE = "native"


def time_calls(call, batch: np.ndarray, bench: dict) -> dict:
    for _ in range(bench["warmup_iterations"]):
        call(batch)
    samples: list[int] = []
    deadline = time.perf_counter() + bench["time_budget_s"]
    while len(samples) < bench["max_iterations"] and (
        len(samples) < bench["min_iterations"] or time.perf_counter() < deadline
    ):
        start = time.perf_counter_ns()
        call(batch)
        samples.append(time.perf_counter_ns() - start)
    ms = np.asarray(samples) / 1e6
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        "iterations": len(ms),
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "mean_ms": ms.mean(),
        "throughput_rows_s": len(batch) / (ms.mean() / 1e3),
    }


def measure_runtime(job: dict) -> dict:
    """Runs in a fresh process: load one runtime, time the first call, then every batch size."""
    import psutil

    proc = psutil.Process()
    rss_start = proc.memory_info().rss
    started = time.perf_counter()
    X = np.load(job["data"])
    if job["runtime"] == NATIVE:
        from stages import families

        family, est, meta = families.load_native(Path(job["native_dir"]))
        task = meta["task"]

        def call(batch):
            return family.predict(est, batch, task)

        file_bytes = (Path(job["native_dir"]) / meta["native_file"]).stat().st_size
    else:
        from serving.runtime import InferenceSettings, OnnxModel

        model = OnnxModel(job["path"], InferenceSettings.from_mapping(job["runtime_settings"]))
        call = model.run
        file_bytes = Path(job["path"]).stat().st_size
    load_s = time.perf_counter() - started
    first = time.perf_counter()
    call(X[:1])
    first_call_ms = (time.perf_counter() - first) * 1e3
    rss_loaded = proc.memory_info().rss
    batches = {}
    for size in job["bench"]["batch_sizes"]:
        batch = X[np.arange(size) % len(X)]
        batches[str(size)] = time_calls(call, batch, job["bench"])
    rss_end = proc.memory_info().rss
    return {
        "load_seconds": load_s,
        "first_call_ms": first_call_ms,
        "file_bytes": file_bytes,
        "rss_after_load_mb": rss_loaded / 2**20,
        "rss_peak_mb": max(rss_end, rss_loaded) / 2**20,
        "rss_growth_mb": (max(rss_end, rss_loaded) - rss_start) / 2**20,
        "batches": batches,
    }


def run(cfg: DictConfig) -> dict:
    from stages.prepare import load_split

    name = cfg.model
    model_spec(cfg, name)
    optimized = Path(cfg.paths.optimized) / name
    opt = read_json(optimized / OPTIMIZE_FILE)
    out_dir = Path(cfg.paths.reports) / "benchmark"
    report: dict = {
        "model": name,
        "machine": {"cpus": os.cpu_count()},
        "settings": as_plain(cfg.runtime),
        "bench": as_plain(cfg.benchmark),
        "runtimes": {},
    }
    jobs = []
    if opt["export_status"] == "ok":
        X, _, _ = load_split(cfg.paths.prepared, "test")
        data = Path(tempfile.mkdtemp(prefix="onnxship-bench-")) / "inputs.npy"
        np.save(data, X[: max(cfg.benchmark.batch_sizes)])
        common = {
            "data": str(data),
            "bench": as_plain(cfg.benchmark),
            "runtime_settings": as_plain(cfg.runtime),
            "native_dir": str(Path(cfg.paths.native) / name),
        }
        jobs.append({**common, "runtime": NATIVE})
        jobs += [
            {**common, "runtime": v, "path": str(optimized / f"{v}.onnx"), "sha256": e["sha256"]}
            for v, e in opt["variants"].items()
            if e["status"] == "ok"
        ]
        spawn = multiprocessing.get_context("spawn")
        for job in jobs:  # one at a time: runtimes never compete for the cores
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                result = pool.submit(measure_runtime, job).result()
            # which file was timed: package registers a variant only if it is this exact file
            report["runtimes"][job["runtime"]] = {**result, "sha256": job.get("sha256")}
        shutil.rmtree(data.parent, ignore_errors=True)
    else:
        report["skipped"] = "export failed"
    add_speedups(report)
    write_json(out_dir / f"{name}.json", report)
    write_json(out_dir / name / "latency.json", latency_rows(report))
    write_json(out_dir / f"{name}.metrics.json", compact_metrics(report))
    with stage_run(
        cfg, "benchmark", name, {"benchmark": as_plain(cfg.benchmark), "runtime": as_plain(cfg.runtime)}
    ):
        log_report(flat_metrics(report), f"benchmark_{name}.json")
    for runtime, r in report["runtimes"].items():
        cells = ", ".join(f"b{b}: p50 {c['p50_ms']:.3f} ms" for b, c in r["batches"].items())
        print(f"benchmark {name}/{runtime}: load {r['load_seconds']:.2f}s; {cells}")
    return report


def add_speedups(report: dict) -> None:
    """speedup = native p50 / runtime p50 at the same batch size (> 1: faster than native)."""
    native = report["runtimes"].get(NATIVE)
    if not native:
        return
    for _name, r in report["runtimes"].items():
        for size, cell in r["batches"].items():
            cell["speedup_vs_native_p50"] = native["batches"][size]["p50_ms"] / cell["p50_ms"]


def latency_rows(report: dict) -> list[dict]:
    """Long-format rows for `dvc plots` (one line per runtime, latency vs batch size)."""
    return [
        {
            "runtime": runtime,
            "batch_size": int(size),
            "p50_ms": c["p50_ms"],
            "p99_ms": c["p99_ms"],
            "throughput_rows_s": c["throughput_rows_s"],
        }
        for runtime, r in report["runtimes"].items()
        for size, c in r["batches"].items()
    ]


def compact_metrics(report: dict) -> dict:
    """The figures `dvc metrics show` lists per runtime: p50/p99 per batch size, load, memory."""
    out = {}
    for runtime, r in report["runtimes"].items():
        cells = {f"b{size}_{k}": c[k] for size, c in r["batches"].items() for k in ("p50_ms", "p99_ms")}
        out[runtime] = {**cells, "load_s": r["load_seconds"], "rss_mb": r["rss_after_load_mb"]}
    return out


def flat_metrics(report: dict) -> dict:
    out = {}
    for runtime, r in report["runtimes"].items():
        out[f"{runtime}.load_seconds"] = r["load_seconds"]
        out[f"{runtime}.rss_after_load_mb"] = r["rss_after_load_mb"]
        out[f"{runtime}.file_bytes"] = r["file_bytes"]
        for size, c in r["batches"].items():
            for key in (
                "p50_ms",
                "p95_ms",
                "p99_ms",
                "mean_ms",
                "throughput_rows_s",
                "speedup_vs_native_p50",
            ):
                out[f"{runtime}.b{size}.{key}"] = c[key]
    return out


if __name__ == "__main__":
    run_stage(run)
