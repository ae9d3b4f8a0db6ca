"""The summary table over the zoo: one row per model from its export, validate, benchmark and
package reports (reports/summary.md and summary.json)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from onnxship.contract import EXPORT_REPORT
from onnxship.io import read_json


def _read(path: Path) -> dict:
    return read_json(path) if path.exists() else {}


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
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    lines += ["| " + " | ".join(_fmt(r.get(h)) for h in head) + " |" for r in rows]
    return "\n".join(lines) + "\n"
