"""Session tuning: runtimes are timed under each combination of session settings in the tuning grid
(threads, execution mode, spinning), each in its own process (onnxship.measure.rounds); per batch
size the fastest settings win, and the report keeps the whole grid.

    report["runtimes"][runtime]   the best settings per batch size (cell["settings"] says which)
    report["tuning"][runtime]     every settings combination with its own figures

Native is tuned too (its thread count), so a speedup is native at its best vs ONNX at its best.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

NATIVE_KNOBS = ("intra_op_threads",)  # what a native library lets us set
ORT_KNOBS = (
    "intra_op_threads",
    "inter_op_threads",
    "execution_mode",
    "allow_spinning",
    "graph_optimization_level",
)


def thread_counts(values: list[Any]) -> list[int]:
    """`cores` means every core of this machine; counts above it are dropped (they only queue)."""
    cores = os.cpu_count() or 1
    counts = {cores if v == "cores" else int(v) for v in values}
    return sorted(c for c in counts if 1 <= c <= cores) or [1]


def settings_grid(base: dict[str, Any], tuning: dict[str, Any], native: bool = False) -> list[dict]:
    """Every settings combination to time, as full runtime-settings mappings (an axis the grid
    does not list stays at the base setting). Sequential execution ignores inter-op threads, so
    those combinations are not repeated."""

    def axis(key: str, default: Any) -> list:
        return list(tuning.get(key, [base.get(key, default)]))

    axes: dict[str, list] = {"intra_op_threads": thread_counts(axis("intra_op_threads", 1))}
    if not native:
        axes["execution_mode"] = axis("execution_mode", "sequential")
        axes["inter_op_threads"] = thread_counts(axis("inter_op_threads", 1))
        axes["allow_spinning"] = [bool(v) for v in axis("allow_spinning", False)]
        axes["graph_optimization_level"] = axis("graph_optimization_level", "all")
    grid = []
    for values in itertools.product(*axes.values()):
        combo = dict(zip(axes, values, strict=True))
        if combo.get("execution_mode") == "sequential" and combo.get("inter_op_threads", 1) != 1:
            continue
        grid.append(base | combo)
    return grid


def tuned_knobs(settings: dict[str, Any], native: bool = False) -> dict[str, Any]:
    """The settings the grid varies, as recorded beside each figure."""
    return {k: settings[k] for k in (NATIVE_KNOBS if native else ORT_KNOBS) if k in settings}


def best_per_batch(measured: list[dict]) -> dict:
    """One runtime's figures with, per batch size, the cell of its fastest settings (p50); load
    time and memory come from the first (default) settings' process."""
    first = measured[0]
    out = {k: v for k, v in first.items() if k not in ("batches", "settings")}
    out["batches"] = {}
    for size in first["batches"]:
        best = min(measured, key=lambda m: m["batches"][size]["p50_ms"])
        out["batches"][size] = best["batches"][size] | {"settings": best["settings"]}
    return out


def tuning_jobs(
    native: dict, variants: list[dict], base: dict, tuning: dict, mode: str = "every"
) -> list[dict]:
    """Native under each thread count and every variant under every settings combination (mode
    "every"), or of the variants only the first (mode "representative": the others take its
    winners, onnxship.measure.rounds.inherited_screens)."""
    if mode not in ("every", "representative"):
        raise ValueError(f"benchmark.screen must be 'every' or 'representative', not {mode!r}")
    grid = settings_grid(base, tuning)
    jobs = [native | {"runtime_settings": s} for s in settings_grid(base, tuning, native=True)]
    for job in variants if mode == "every" else variants[:1]:
        jobs += [job | {"runtime_settings": s} for s in grid]
    return jobs


def tuned_figures(jobs: list[dict], figures: list[dict], native: str) -> dict[str, list[dict]]:
    """{runtime: [figures with the settings they were timed under]}, in the jobs' order."""
    measured: dict[str, list] = {}
    for job, result in zip(jobs, figures, strict=True):
        knobs = tuned_knobs(job["runtime_settings"], native=job["runtime"] == native)
        measured.setdefault(job["runtime"], []).append(result | {"settings": knobs})
    return measured
