"""A benchmark report's derived views: speedups against native (with their intervals), the rows
`dvc plots` draws, the figures `dvc metrics show` lists, and the flat figures logged to MLflow.
Cells are read through onnxship.contract (timed_runtimes, bench_cells), the report's one reader."""

from __future__ import annotations

import math

from onnxship.contract import FLOOR, NATIVE, bench_cells, floor_cells, timed_runtimes
from onnxship.measure.intervals import paired_ratio_interval


def add_speedups(report: dict) -> None:
    """speedup = native p50 / runtime p50 at the same batch size (> 1: faster than native), both
    at their fastest settings; every tuning combination gets its ratio to that native figure too.
    Interleaved cells also get `speedup_ci`, the wider of two intervals: the ratio's bounds from
    the two p50 intervals (native low / runtime high, native high / runtime low: each holds with
    95 %, so both at once with at least 90 %), and, from 6 rounds on, the 95 % interval of the
    median of the ratios round by round (onnxship.measure.intervals.paired_ratio_interval). The
    first treats every call as independent, and is too narrow where whole rounds run slow
    together (cheap calls on a noisy machine); the second sees that spread. The floor graph's
    cells (report["ort_floor"]) get theirs too: the ceiling on any graph's speedup served
    through the same call."""
    native = timed_runtimes(report).get(NATIVE)
    if not native:
        return
    tuned = [m for measured in report.get("tuning", {}).values() for m in measured]
    floor = [report[FLOOR]] if floor_cells(report) else []
    for r in [*timed_runtimes(report).values(), *tuned, *floor]:
        for size, cell in r["batches"].items():
            base = native["batches"][size]
            cell["speedup_vs_native_p50"] = base["p50_ms"] / cell["p50_ms"]
            if "p50_ci_ms" in cell and "p50_ci_ms" in base:
                (n_low, n_high), (low, high) = base["p50_ci_ms"], cell["p50_ci_ms"]
                cell["speedup_ci"] = widest([n_low / high, n_high / low], by_round(base, cell))


def by_round(native: dict, cell: dict) -> list[float] | None:
    """The interval of the round-by-round ratio, where both were timed in the same rounds."""
    ours, theirs = cell.get("round_p50s_ms"), native.get("round_p50s_ms")
    if not ours or not theirs or len(ours) != len(theirs):
        return None
    paired = paired_ratio_interval(theirs, ours)
    return [paired.low, paired.high] if math.isfinite(paired.relative_half_width) else None


def widest(interval: list[float], other: list[float] | None) -> list[float]:
    return interval if other is None else [min(interval[0], other[0]), max(interval[1], other[1])]


def latency_rows(report: dict) -> list[dict]:
    """Long-format rows for `dvc plots` (one line per runtime, latency vs batch size)."""
    return [
        {
            "runtime": runtime,
            "batch_size": int(size),
            "p50_ms": c["p50_ms"],
            "p99_ms": c["p99_ms"],
            "p99_ci_low_ms": c.get("p99_ci_ms", [None, None])[0],
            "p99_ci_high_ms": c.get("p99_ci_ms", [None, None])[1],
            "samples": c["iterations"],
            "throughput_rows_s": c["throughput_rows_s"],
        }
        for runtime in timed_runtimes(report)
        for size, c in bench_cells(report, runtime).items()
    ]


def compact_metrics(report: dict) -> dict:
    """The figures `dvc metrics show` lists per runtime: p50/p99 per batch size, load, memory."""
    out = {}
    for runtime, r in timed_runtimes(report).items():
        cells = {
            f"b{size}_{k}": c[k]
            for size, c in bench_cells(report, runtime).items()
            for k in ("p50_ms", "p99_ms")
        }
        start = report.get("cold_start", {}).get(runtime)
        if start:  # from fresh processes that import only this runtime (onnxship.measure.coldstart)
            cells |= {k: start[k]["median"] for k in ("cold_start_s", "rss_rest_mb", "rss_peak_mb")}
        out[runtime] = {**cells, "load_s": r["load_seconds"], "rss_mb": r["rss_after_load_mb"]}
    return out


def flat_metrics(report: dict) -> dict:
    out = {}
    for runtime, r in timed_runtimes(report).items():
        out[f"{runtime}.load_seconds"] = r["load_seconds"]
        out[f"{runtime}.rss_after_load_mb"] = r["rss_after_load_mb"]
        out[f"{runtime}.file_bytes"] = r["file_bytes"]
        for size, c in bench_cells(report, runtime).items():
            for key in (
                "p50_ms",
                "p95_ms",
                "p99_ms",
                "mean_ms",
                "throughput_rows_s",
                "speedup_vs_native_p50",
                "iterations",
            ):
                out[f"{runtime}.b{size}.{key}"] = c[key]
            for key in ("p50_ci_ms", "p99_ci_ms", "speedup_ci"):
                if key in c:
                    out[f"{runtime}.b{size}.{key}_low"], out[f"{runtime}.b{size}.{key}_high"] = c[key]
    for runtime, figures in report.get("cold_start", {}).items():
        for key, value in figures.items():
            if isinstance(value, dict):  # median and interval over the fresh processes
                out[f"{runtime}.start.{key}"] = value["median"]
    return out
