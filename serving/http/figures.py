"""The summary's figures for the version being served, from the benchmark report it carries:
per batch size, native vs the served variant (p50/p99 with their 95 % intervals and sample
counts, speedup with its interval), and start-up and memory from fresh processes. The report was
verified against the registry's manifest with the rest of the version; missing parts (a report
from an older pipeline) are left out, never guessed."""

from __future__ import annotations

from typing import Any

from onnxship.contract import NATIVE, bench_cells, timed_runtimes

CELL_KEYS = ("p50_ms", "p50_ci_ms", "p99_ms", "p99_ci_ms", "iterations", "stopped")
START_KEYS = ("cold_start_s", "import_s", "load_s", "rss_rest_mb", "rss_peak_mb")


def _cell(cell: Any) -> dict:
    return {k: cell[k] for k in CELL_KEYS if isinstance(cell, dict) and k in cell}


def served_figures(report: dict, variant: str | None) -> dict:
    if variant not in timed_runtimes(report):
        return {}
    native = bench_cells(report, NATIVE)
    out: dict[str, Any] = {"variant": variant, "batches": {}}
    for size, cell in bench_cells(report, variant).items():
        entry = {"served": _cell(cell), "native": _cell(native.get(size))}
        for key in ("speedup_vs_native_p50", "speedup_ci"):
            if key in cell:
                entry[key] = cell[key]
        out["batches"][size] = entry
    starts = report.get("cold_start")
    if isinstance(starts, dict):
        out["cold_start"] = {
            side: {k: starts[rt][k]["median"] for k in START_KEYS if k in starts.get(rt, {})}
            | {"runs": starts.get(rt, {}).get("runs")}
            for side, rt in (("served", variant), ("native", NATIVE))
            if rt in starts
        }
    return out
