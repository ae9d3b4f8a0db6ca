"""The report's figures as PNG files (matplotlib, no display): latency vs batch size per model,
speedup bars over the zoo, parity-difference histograms, and forecast fan charts native vs ONNX.

Every plot is drawn from the JSON reports alone, so a figure and the table beside it always say
the same thing. Error bars are the 95 % order-statistic intervals the benchmark recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

from onnxship.contract import NATIVE, timed_runtimes

matplotlib.use("Agg")  # files only: no display on a build machine
import matplotlib.pyplot as plt

NATIVE_COLOUR = "#444444"
ONNX_COLOUR = "#1f77b4"


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # no timestamp in the file: the same figures give the same bytes
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def _bars(cells: list[dict], key: str) -> tuple[list[float], list[list[float]]]:
    """Estimates and asymmetric error bars (estimate - low, high - estimate) from `<key>_ci_ms`."""
    values = [c[f"{key}_ms"] for c in cells]
    lows = [max(0.0, c[f"{key}_ms"] - c.get(f"{key}_ci_ms", [c[f"{key}_ms"]] * 2)[0]) for c in cells]
    highs = [max(0.0, c.get(f"{key}_ci_ms", [c[f"{key}_ms"]] * 2)[1] - c[f"{key}_ms"]) for c in cells]
    return values, [lows, highs]


def latency_plot(report: dict, path: Path, highlight: str | None = None) -> Path:
    """p50 (solid) and p99 (dotted) latency per call vs batch size, one colour per runtime, log-log,
    with each figure's interval as an error bar; native in grey, the registered variant bold."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    runtimes = timed_runtimes(report)
    colours = plt.get_cmap("tab10")
    samples = []
    for i, (runtime, measured) in enumerate(runtimes.items()):
        sizes = sorted(measured["batches"], key=int)
        cells = [measured["batches"][s] for s in sizes]
        samples += [c.get("iterations", 0) for c in cells]
        x = [int(s) for s in sizes]
        colour = NATIVE_COLOUR if runtime == NATIVE else colours(i % 10)
        width = 2.6 if runtime in (NATIVE, highlight) else 1.1
        p50, p50_err = _bars(cells, "p50")
        p99, p99_err = _bars(cells, "p99")
        ax.errorbar(x, p50, yerr=p50_err, color=colour, lw=width, marker="o", ms=3, capsize=2, label=runtime)
        ax.errorbar(x, p99, yerr=p99_err, color=colour, lw=0.8, ls=":", capsize=2)
    if not runtimes:  # dvc.yaml declares the figure for every model: say why it is empty
        ax.text(0.5, 0.5, f"nothing timed: {report.get('skipped', 'no runtime')}", ha="center", va="center")
        ax.set_axis_off()
        return _save(fig, path)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size (rows or windows per call)")
    ax.set_ylabel("latency per call (ms)")
    n = f"{min(samples)}–{max(samples)} calls per point" if samples else ""
    ax.set_title(f"{report.get('model', '')}: p50 (solid) and p99 (dotted), 95 % intervals; {n}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def speedup_bars(rows: list[dict], path: Path) -> Path:
    """Per model, the registered variant's speedup over native at the smallest and largest batch,
    with the ratio's interval; the line at 1 is parity with native."""
    rows = [r for r in rows if r.get("speedups")]
    fig, ax = plt.subplots(figsize=(8, 0.45 * max(4, len(rows)) + 1))
    labels = []
    for i, row in enumerate(rows):
        for j, (size, cell) in enumerate(sorted(row["speedups"].items(), key=lambda kv: int(kv[0]))):
            value, (low, high) = cell["value"], cell.get("ci") or [cell["value"]] * 2
            y = i + (0.2 if j else -0.2)
            ax.barh(y, value, height=0.38, color=ONNX_COLOUR if j == 0 else "#ff7f0e", alpha=0.85)
            ax.errorbar(value, y, xerr=[[value - low], [high - value]], color="black", capsize=2, lw=0.8)
            ax.text(value * 1.05, y, f"b{size} {value:.2f}×", va="center", fontsize=7)
        labels.append(f"{row['model']} ({row['variant']})")
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_xscale("log")
    ax.axvline(1, color="black", lw=1)
    ax.set_xlabel("speedup = native p50 / ONNX p50 (log; > 1: ONNX faster); smallest and largest batch")
    ax.set_title("Registered variant vs native, same interleaved rounds, with intervals", fontsize=9)
    ax.invert_yaxis()
    return _save(fig, path)


def parity_histograms(entries: list[dict], path: Path) -> Path:
    """Per model, how far the registered variant's answers are from native's on the test split:
    counts of |native - ONNX| per power of ten (exact zeros counted apart)."""
    cols = 3
    rows = max(1, -(-len(entries) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(11, 2.3 * rows), squeeze=False)
    for ax, entry in zip(axes.flat, entries, strict=False):
        hist = entry["histogram"]
        edges, counts = hist["log10_edges"], hist["counts"]
        ax.bar(edges[:-1], counts, width=0.9, align="edge", color=ONNX_COLOUR)
        if entry.get("atol"):
            import math

            ax.axvline(math.log10(entry["atol"]), color="red", lw=1, ls="--")
        ax.set_yscale("symlog")
        ax.set_title(
            f"{entry['model']} ({entry['variant']}): {hist['values']} values, {hist['zero']} equal",
            fontsize=8,
        )
        ax.set_xlabel("log10 |native − ONNX|  (red: atol)", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(entries) :]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def fan_chart(model: str, variant: str, fan: dict, onnx_quantiles: list[list[float]], path: Path) -> Path:
    """One test window: the recent context, what happened, and the forecast's quantile fan from
    the library's own predict (grey) and from the ONNX graph (blue, dashed median)."""
    levels = fan["quantile_levels"]
    context = [float("nan") if v is None else v for v in fan["context_tail"]]
    horizon = range(len(context), len(context) + len(fan["truth"]))
    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.plot(range(len(context)), context, color="black", lw=1, label="context")
    ax.plot(horizon, fan["truth"], color="black", lw=1, ls=":", label="what happened")
    lo, hi, mid = 0, len(levels) - 1, min(range(len(levels)), key=lambda i: abs(levels[i] - 0.5))
    for name, quantiles, colour, style in (
        ("native", fan["native_quantiles"], NATIVE_COLOUR, "-"),
        (f"ONNX {variant}", onnx_quantiles, ONNX_COLOUR, "--"),
    ):
        ax.fill_between(
            horizon, [q[lo] for q in quantiles], [q[hi] for q in quantiles], color=colour, alpha=0.18
        )
        ax.plot(horizon, [q[mid] for q in quantiles], color=colour, ls=style, lw=1.4, label=f"{name} median")
    ax.set_title(
        f"{model}: test window {fan['window']}, {levels[lo]:g}–{levels[hi]:g} quantile band, native vs ONNX",
        fontsize=9,
    )
    ax.set_xlabel("time step")
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    return _save(fig, path)
