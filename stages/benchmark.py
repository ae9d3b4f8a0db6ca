"""benchmark: native predict vs every ONNX variant, in one run, per batch size.

A screen times session-settings combinations briefly (onnxship.measure.screen); then each runtime at its
fastest settings is timed in interleaved rounds until its interval is tight or the budget ends
(onnxship.measure.rounds); cold start and memory come from fresh processes that import only their
runtime (onnxship.measure.coldstart). conf/benchmark says how deep. Every runtime runs in its own process;
ONNX sessions come from onnxship.runtime, as in serving: what is measured is what is served.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from onnxship.contract import NATIVE_META, OPTIMIZE_REPORT, timed_runtimes
from onnxship.io import read_json
from onnxship.measure.report import add_speedups, compact_metrics, flat_metrics, latency_rows
from onnxship.measure.rounds import FORK_NATIVE, measure_model
from onnxship.measure.timing import NATIVE, bench_settings, floor_job, gpu_runs, variants_to_time
from onnxship.packaging.choice import served_runtimes
from onnxship.pipeline.config import as_plain, model_spec
from onnxship.pipeline.runner import Outcome, main, stage
from onnxship.pipeline.workload import workload


@stage("benchmark", lambda cfg: {k: as_plain(cfg[k]) for k in ("benchmark", "runtime", "package")})
def run(cfg: DictConfig, _run) -> Outcome:
    name = cfg.model
    optimized = Path(cfg.paths.optimized) / name
    opt = read_json(optimized / OPTIMIZE_REPORT)
    bench = bench_settings(as_plain(cfg.benchmark), as_plain(model_spec(cfg).get("benchmark") or {}))
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
            validation = read_json(Path(cfg.paths.reports) / "validate" / f"{name}.json")
            timed, report["not_timed"] = variants_to_time(opt, bench, validation)
            variants = [
                {**common, "runtime": v, "path": str(optimized / f"{v}.onnx"), "sha256": e["sha256"]}
                for v, e in opt["variants"].items()
                if v in timed
            ]
            base, pkg = as_plain(cfg.runtime), cfg.package
            # start-up of every runtime, or (`cold_start: served`) of what package would register
            served = served_runtimes(validation, pkg.select_batch_size, pkg.min_gain_over_base)
            served = served if bench.get("cold_start") == "served" else None
            # ONNX Runtime's per-call floor: the same inputs through a graph of no work, in the rounds
            floor = floor_job(common, base, Path(tmp))
            # native times in a fork of this process: it has run no native work (rounds.start_method)
            native = {**common, "runtime": NATIVE, FORK_NATIVE: True}
            report |= measure_model(native, variants, base, bench, name, served, floor)
            report["gpu"] = gpu_runs(base, bench.get("gpu_providers") or [], variants)
    else:
        report["skipped"] = "export failed"
    add_speedups(report)
    from onnxship.report.plots import (
        latency_plot,  # matplotlib: not in the timing processes this module spawns
    )

    out = Path(cfg.paths.reports) / "benchmark"
    plots = {latency_plot(report, out / name / "latency.png"): "plots"}  # says why when nothing was timed
    lines = [
        f"{runtime} load {r['load_seconds']:.2f}s, "
        + ", ".join(f"b{b} p50 {c['p50_ms']:.3f} ms" for b, c in r["batches"].items())
        for runtime, r in timed_runtimes(report).items()
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
