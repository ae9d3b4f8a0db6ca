"""Which variant a version registers, with which session settings, and the evidence behind it:
the candidate table (every variant with its verdict, its gate figures and its best latency per
batch size) and the regime table (per batch size: the registered variant at its best settings,
the fastest proven variant, and whether anything beat native at all).

Rule: among variants that passed every gate and were timed as the very file validated, the lowest
p50 at the target batch size (conf/package), with its fastest settings at that size; the plain
export (`base`) is kept unless a lossless variant beats it by `min_gain_over_base`, and a lossy
variant (fp16, INT8) is taken only if it beats the best lossless one by that factor too: timing
noise alone must not pick a graph, nor trade accuracy for nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from onnxship.contract import BASE_VARIANT, NATIVE, bench_cell, bench_cells, timed_runtimes


def proven(validation: dict, bench: dict) -> list[str]:
    return [v for v in validation.get("passed", []) if v in timed_runtimes(bench)]


def choose_variant(
    validation: dict, bench: dict, batch_size: int, min_gain: float
) -> tuple[str | None, list[str]]:
    """The variant to register, or None with the reasons none can be."""
    passed = proven(validation, bench)
    if not passed:
        failed = {v: e.get("reasons") for v, e in validation.get("variants", {}).items()}
        return None, [validation.get("skipped") or f"no variant passed validation: {failed}"]

    def p50(variant: str) -> float:
        return bench_cell(bench, variant, batch_size)["p50_ms"]

    def lossy(variant: str) -> bool:
        return bool(validation["variants"].get(variant, {}).get("lossy"))

    def pick(candidates: list[str], plain: str) -> str:
        """The fastest, unless `plain` is within `min_gain` of it."""
        fastest = min(candidates, key=p50)
        return plain if plain in candidates and p50(plain) < p50(fastest) * min_gain else fastest

    # lossless first (the plain export unless beaten by min_gain), then a lossy variant only if it
    # beats that by min_gain too: a proven lossy variant still gives up a little accuracy
    lossless = [v for v in passed if not lossy(v)]
    best = pick(lossless, BASE_VARIANT) if lossless else None
    lossy_ones = [v for v in passed if lossy(v)]
    if best is None:
        return min(lossy_ones, key=p50), []
    return (pick([*lossy_ones, best], best) if lossy_ones else best), []


def served_runtimes(validation: dict, batch_size: int, min_gain: float) -> Callable[[dict], list[str]]:
    """For the benchmark's `cold_start: served`: given its timed runtimes, the ones a deployment
    compares at start-up: native and the variant this rule will register (the plain export when
    nothing beats it)."""

    def pick(runtimes: dict) -> list[str]:
        chosen, _ = choose_variant(validation, {"runtimes": runtimes}, batch_size, min_gain)
        return [NATIVE, chosen or BASE_VARIANT]

    return pick


def tuned_settings(bench: dict, variant: str, batch: int) -> dict[str, Any]:
    """The session settings that made `variant` fastest at `batch` (empty if not tuned)."""
    return dict(bench_cell(bench, variant, batch).get("settings") or {})


def candidate_table(validation: dict, bench: dict) -> list[dict]:
    """One row per variant: gates and, per batch size, p50 at its best settings and the speedup."""
    rows = []
    for variant, entry in validation.get("variants", {}).items():
        test = entry.get("sets", {}).get("test", {})
        row: dict[str, Any] = {
            "variant": variant,
            "lossy": entry.get("lossy", False),
            "verdict": entry["verdict"],
            "reasons": entry.get("reasons", []),
            "test_max_abs_diff": test.get("max_abs_diff"),
            "metric_rel_worse": test.get("metric_rel_worse"),
        }
        timed = timed_runtimes(bench).get(variant)
        if timed:
            row["file_bytes"] = timed.get("file_bytes")
            row["batches"] = {
                size: {
                    "p50_ms": c["p50_ms"],
                    "p99_ms": c["p99_ms"],
                    "speedup_vs_native_p50": c.get("speedup_vs_native_p50"),
                    "settings": c.get("settings"),
                }
                for size, c in timed["batches"].items()
            }
        rows.append(row)
    return rows


def regime_table(validation: dict, bench: dict, variant: str) -> dict[str, dict]:
    """Per batch size: the registered variant at its best settings vs native at its best, and the
    fastest proven variant there (which may be another file). `native_faster` says where no
    proven variant beats native, with the ratio: the version records it rather than hide it."""
    passed = proven(validation, bench)
    out = {}
    for size in bench_cells(bench, variant):
        ours = bench_cell(bench, variant, int(size))
        best = max(passed, key=lambda v: bench_cell(bench, v, int(size)).get("speedup_vs_native_p50", 0))
        best_speedup = bench_cell(bench, best, int(size)).get("speedup_vs_native_p50")
        out[size] = {
            "p50_ms": ours["p50_ms"],
            "native_p50_ms": bench_cell(bench, NATIVE, size)["p50_ms"],
            "speedup_vs_native_p50": ours.get("speedup_vs_native_p50"),
            "settings": ours.get("settings"),
            "fastest_proven_variant": best,
            "fastest_proven_speedup": best_speedup,
            "native_faster": best_speedup is not None and best_speedup < 1.0,
        }
    return out
