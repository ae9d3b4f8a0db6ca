"""The summary table over the zoo: one row per model from its export, validate, benchmark and
package reports (reports/summary.md and summary.json)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from onnxship.contract import EXPORT_REPORT
from onnxship.io import read_json


def _read(path: Path) -> dict:
    return read_json(path) if path.exists() else {}


def is_forecaster(cfg: DictConfig, name: str) -> bool:
    return _read(Path(cfg.paths.reports) / "validate" / f"{name}.json").get("task") == "forecast"


def model_row(cfg: DictConfig, name: str, small: int, large: int) -> dict:
    reports = Path(cfg.paths.reports)
    export = _read(Path(cfg.paths.onnx) / name / EXPORT_REPORT)
    validation = _read(reports / "validate" / f"{name}.json")
    bench = _read(reports / "benchmark" / f"{name}.json")
    package = _read(reports / "package" / f"{name}.json")
    variant = package.get("variant") or "base"
    entry = validation.get("variants", {}).get(variant, {})
    row = {
        "model": name,
        "family": validation.get("family", "?"),
        "export": export.get("status", "missing") + (f": {export['reason']}" if export.get("reason") else ""),
        "variant": variant,
        "parity": entry.get("verdict", "n/a"),
        "max_abs_diff": entry.get("sets", {}).get("test", {}).get("max_abs_diff"),
        "registered": f"v{package['version']}" + (f" @{package['alias']}" if package.get("alias") else "")
        if package.get("registered")
        else "no",
    }
    runtimes = bench.get("runtimes", {})
    for size in (small, large):
        native = runtimes.get("native", {}).get("batches", {}).get(str(size), {})
        onnx_ = runtimes.get(variant, {}).get("batches", {}).get(str(size), {})
        row |= {
            f"native_p50_ms_b{size}": native.get("p50_ms"),
            f"native_p99_ms_b{size}": native.get("p99_ms"),
            f"onnx_p50_ms_b{size}": onnx_.get("p50_ms"),
            f"onnx_p99_ms_b{size}": onnx_.get("p99_ms"),
            f"speedup_b{size}": onnx_.get("speedup_vs_native_p50"),
        }
    return row


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.3f}"
    return str(value)


def table(head: list[str], rows: list[dict]) -> list[str]:
    """A markdown table's lines: the columns `head`, one line per row."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(_fmt(r.get(h)) for h in head) + " |" for r in rows]


def markdown(rows: list[dict], small: int, large: int) -> str:
    head = ["model", "family", "export", "variant", "parity", "max_abs_diff", "registered"]
    for size in (small, large):
        head += [
            f"native_p50_ms_b{size}",
            f"onnx_p50_ms_b{size}",
            f"native_p99_ms_b{size}",
            f"onnx_p99_ms_b{size}",
            f"speedup_b{size}",
        ]
    lines = [
        "# Pipeline summary",
        "",
        "Latency in milliseconds per call; speedup = native p50 / ONNX p50 (> 1: ONNX faster).",
        "Figures come from reports/validate/*.json and reports/benchmark/*.json; see README "
        '"Reading the reports".',
        "",
        *table(head, rows),
    ]
    return "\n".join(lines) + "\n"


FORECAST_SIZES = (1, 32)


def forecast_row(cfg: DictConfig, name: str) -> dict:
    """A forecaster's row: parity, accuracy native vs ONNX (none for speed-only models), and
    PyTorch eager vs ONNX Runtime latency at batch 1 and 32."""
    reports = Path(cfg.paths.reports)
    row = {k: v for k, v in model_row(cfg, name, *FORECAST_SIZES).items() if "p99" not in k}
    validation = _read(reports / "validate" / f"{name}.json")
    test = validation.get("variants", {}).get(row["variant"], {}).get("sets", {}).get("test", {})
    row["kind"] = "speed only" if validation.get("speed_only") else "accuracy"
    for key in ("wql", "mase"):
        if not validation.get("speed_only"):  # random weights: a gate figure, not an accuracy
            row[f"{key}_native"], row[f"{key}_onnx"] = test.get(f"{key}_native"), test.get(f"{key}_onnx")
    return row


def forecast_markdown(rows: list[dict]) -> str:
    head = ["model", "family", "export", "kind", "variant", "parity", "max_abs_diff", "registered"]
    head += ["wql_native", "wql_onnx", "mase_native", "mase_onnx"]
    for size in FORECAST_SIZES:
        head += [f"native_p50_ms_b{size}", f"onnx_p50_ms_b{size}", f"speedup_b{size}"]
    lines = [
        "",
        "## Forecasters",
        "",
        "Rolling test windows of the elecdemand series; wql = weighted quantile loss, mase = mean",
        "absolute scaled error of the median (both: lower is better), from the library's own predict",
        "(native) and from the registered ONNX variant. Latency: PyTorch eager on the same wrapper",
        "the graph was exported from vs ONNX Runtime, per call of `batch` windows. Speed-only models",
        "have random weights at the release size: no accuracy figure.",
        "",
        *table(head, rows),
    ]
    return "\n".join(lines) + "\n"


def candidates_markdown(cfg: DictConfig, names: list[str]) -> str:
    """Per model, every variant: its gates and its speed at the smallest and largest batch, at its
    best session settings; and the batch sizes where no proven variant beats native."""
    reports = Path(cfg.paths.reports)
    lines = [
        "",
        "## Variants: gates and speed",
        "",
        "Every variant of every model (reports/package/<model>.json `candidates`). `worse` = the",
        "largest relative worsening of a task metric (lossy variants must stay within 1 %); speed is",
        "native p50 / variant p50 at each at its fastest session settings (`threads`).",
    ]
    for name in names:
        package = _read(reports / "package" / f"{name}.json")
        if not package.get("candidates"):
            continue
        sizes = sorted({int(b) for c in package["candidates"] for b in c.get("batches", {})})
        small, large = sizes[0], sizes[-1]
        rows = []
        for c in package["candidates"]:
            cells = c.get("batches", {})
            rows.append(
                {
                    "variant": c["variant"] + (" ◀" if c["variant"] == package.get("variant") else ""),
                    "lossy": "yes" if c["lossy"] else "",
                    "verdict": c["verdict"],
                    "worse": c.get("metric_rel_worse"),
                    f"speedup_b{small}": cells.get(str(small), {}).get("speedup_vs_native_p50"),
                    f"threads_b{small}": (cells.get(str(small), {}).get("settings") or {}).get(
                        "intra_op_threads"
                    ),
                    f"speedup_b{large}": cells.get(str(large), {}).get("speedup_vs_native_p50"),
                    "reason": (c["reasons"][0][:90] if c["reasons"] else ""),
                }
            )
        head = ["variant", "lossy", "verdict", "worse", f"speedup_b{small}", f"threads_b{small}"]
        head += [f"speedup_b{large}", "reason"]
        lines += ["", f"### {name}", "", *table(head, rows)]
        regimes = package.get("regimes") or {}
        slower = [
            f"{b} rows ({r['fastest_proven_speedup']:.2f}×)" for b, r in regimes.items() if r["native_faster"]
        ]
        if slower:
            lines += ["", "Native is faster than every proven variant at " + ", ".join(slower) + "."]
    return "\n".join(lines) + "\n"
