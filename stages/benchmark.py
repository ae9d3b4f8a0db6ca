"""benchmark: native predict vs every ONNX variant, in one run, per batch size.

A screen times every session-settings combination briefly (onnxship.tuning); then each runtime at
its fastest settings is timed in interleaved rounds until its p99 interval is within ±10 % or the
budget ends (onnxship.bench_rounds); cold start and memory come from fresh processes that import
only their runtime (onnxship.coldstart). Every runtime runs in its own process; ONNX sessions come
from onnxship.runtime, as in serving: what is measured is what is served.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from onnxship.bench_rounds import measure_model
from onnxship.benchmarking import (
    FLOOR,
    NATIVE,
    add_speedups,
    compact_metrics,
    flat_metrics,
    gpu_runs,
    latency_rows,
    measure_floor,
)
from onnxship.contract import NATIVE_META, OPTIMIZE_REPORT
from onnxship.io import read_json
from onnxship.pipeline.config import as_plain, model_spec
from onnxship.pipeline.runner import Outcome, main, stage
from onnxship.plots import latency_plot
from onnxship.workloads import workload


@stage("benchmark", lambda cfg: {"benchmark": as_plain(cfg.benchmark), "runtime": as_plain(cfg.runtime)})
def run(cfg: DictConfig, _run) -> Outcome:
    name = cfg.model
    optimized = Path(cfg.paths.optimized) / name
    opt = read_json(optimized / OPTIMIZE_REPORT)
    # a zoo entry may set its own batch sizes and timing budget (forecasters: 1, 8, 32 windows)
    bench = as_plain(cfg.benchmark) | as_plain(model_spec(cfg).get("benchmark") or {})
    report: dict = {
        "model": name,
        "machine": {"cpus": os.cpu_count()},
        "settings": as_plain(cfg.runtime),  # the base each tuning combination changes
        "bench": bench,
        "runtimes": {},
    }
    if opt["export_status"] == "ok":
        meta = read_json(Path(cfg.paths.native) / name / NATIVE_META)
        with tempfile.TemporaryDirectory(prefix="onnxship-bench-") as tmp:
            data = Path(tmp) / "inputs.npz"
            np.savez(data, **workload(cfg).bench_feeds(model_spec(cfg), meta, max(bench["batch_sizes"])))
            common = {"data": str(data), "bench": bench, "native_dir": str(Path(cfg.paths.native) / name)}
            variants = [
                {**common, "runtime": v, "path": str(optimized / f"{v}.onnx"), "sha256": e["sha256"]}
                for v, e in opt["variants"].items()
                if e["status"] == "ok"
            ]
            base = as_plain(cfg.runtime)
            report |= measure_model({**common, "runtime": NATIVE}, variants, base, bench)
            # ONNX Runtime's per-call floor: the same inputs through an identity graph
            report[FLOOR] = measure_floor(common, base, Path(tmp))
            report["gpu"] = gpu_runs(base, bench.get("gpu_providers") or [], variants)
    else:
        report["skipped"] = "export failed"
    add_speedups(report)
    out = Path(cfg.paths.reports) / "benchmark"
    plots = {latency_plot(report, out / name / "latency.png"): "plots"} if report["runtimes"] else {}
    lines = [
        f"{runtime} load {r['load_seconds']:.2f}s, "
        + ", ".join(f"b{b} p50 {c['p50_ms']:.3f} ms" for b, c in r["batches"].items())
        for runtime, r in report["runtimes"].items()
    ]
    return Outcome(
        report,
        "; ".join(lines) or report.get("skipped", ""),
        writes={
            out / f"{name}.json": report,
            out / name / "latency.json": latency_rows(report),
            out / f"{name}.metrics.json": compact_metrics(report),
        },
        logged=flat_metrics(report),
        artifacts=plots,
    )


if __name__ == "__main__":
    main(run)
