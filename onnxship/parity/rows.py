"""Parity: does an ONNX variant answer like the native model? Row-wise differences against
atol + rtol * |native|, the task metric native vs ONNX, hostile sets, batch-1 vs batch-N, and the
verdict with its reasons. Lossy variants (fp16, INT8) are held to the task metric and labels only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnxship.contract import LABEL, PREDICTION, PROBABILITIES, Prediction
from onnxship.runtime import InferenceSettings, OnnxModel
from onnxship.scoring import GATED, metric_gate, task_metrics


def onnx_prediction(model: OnnxModel, X: np.ndarray, task: str) -> Prediction:
    out = model.run(X)
    if task == "regression":
        return Prediction(out[PREDICTION].reshape(-1).astype(np.float64))
    return Prediction(out[LABEL].reshape(-1).astype(np.int64), out[PROBABILITIES].astype(np.float64))


def row_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| where equal values (NaN and infinities included) give 0 and NaN on one side gives inf."""
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - b)
    return np.where(same, 0.0, np.where(np.isnan(diff), np.inf, diff))


# |native - ONNX| histogram bins: powers of ten from 1e-12 to 1e4 (float32 rounding sits near
# 1e-7 relative; anything above the tolerance shows at once), plus exact zeros and non-finite
HISTOGRAM_LOG10 = tuple(range(-12, 5))


def diff_histogram(diff: np.ndarray) -> dict:
    """How the absolute differences spread, for the parity plot (reports keep counts, not diffs)."""
    d = np.asarray(diff, dtype=np.float64).reshape(-1)
    finite = d[np.isfinite(d) & (d > 0)]
    edges = np.array(HISTOGRAM_LOG10, dtype=np.float64)
    logs = np.clip(np.log10(finite), edges[0], edges[-1])
    counts, _ = np.histogram(logs, bins=edges)
    return {
        "values": int(d.size),
        "zero": int(np.sum(d == 0)),
        "nonfinite": int(np.sum(~np.isfinite(d))),
        "log10_edges": list(HISTOGRAM_LOG10),
        "counts": counts.tolist(),
    }


def outputs_of(pred: Prediction, rows: int) -> np.ndarray:
    """What parity is judged on: probabilities for classifiers, values for regressors."""
    return (pred.values if pred.proba is None else pred.proba).reshape(rows, -1)


def compare(native: Prediction, other: Prediction, atol: float, rtol: float) -> dict:
    """Row-wise parity: a row is within when every output value is within atol + rtol*|native|."""
    a, b = outputs_of(native, len(native.values)), outputs_of(other, len(other.values))
    diff = row_diff(a, b)
    scale = np.abs(np.where(np.isfinite(a), a, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(diff == 0, 0.0, diff / np.maximum(scale, 1e-12))
    within = (diff <= atol + rtol * scale).all(axis=1)
    out = {
        "rows": len(a),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "max_rel_diff": float(rel.max()),
        "within_tolerance": float(within.mean()),
        "diff_histogram": diff_histogram(diff),
    }
    if native.proba is not None:
        out["label_agreement"] = float(np.mean(native.values == other.values))
    return out


@dataclass
class ParityCase:
    """What every variant of one model is judged against: the native answers on the test split and
    on each hostile set, computed once."""

    task: str
    tolerance: dict[str, float]  # atol, rtol
    gates: Any  # validate.* thresholds (min_within_test, min_within_hostile, ...)
    settings: InferenceSettings
    X_test: np.ndarray
    y_test: np.ndarray
    templates: np.ndarray  # rows for the batch-1 vs batch-N check
    hostile: dict[str, np.ndarray]
    native_test: Prediction
    native_metrics: dict[str, float]
    native_hostile: dict[str, Prediction]

    def check(self, path: Path, lossy: bool) -> dict:
        return check_variant(path, lossy, self)

    def set_sizes(self) -> dict[str, int]:
        """Rows per hostile set."""
        return {k: len(v) for k, v in self.hostile.items()}

    def fan(self) -> dict | None:
        return None  # a fan chart is a forecaster's figure


def check_variant(path: Path, lossy: bool, case: ParityCase) -> dict:
    """The verdict on one ONNX file: parity per set, task metric, batch consistency, reasons."""
    task, tol, gates = case.task, case.tolerance, case.gates
    model = OnnxModel(path, case.settings)
    reasons: list[str] = []
    pred = onnx_prediction(model, case.X_test, task)
    test = compare(case.native_test, pred, tol["atol"], tol["rtol"])
    metrics = task_metrics(task, case.y_test, pred)
    limit = gates.max_metric_rel_change
    figures, worse, worst = metric_gate(case.native_metrics, metrics, GATED[task], limit)
    test |= figures | {"metric_rel_worse": worst}
    reasons += worse
    # a lossy variant may flip labels near a boundary: its gate is the accuracy, not agreement
    if not lossy and task == "classification" and test["label_agreement"] < gates.min_label_agreement:
        reasons.append(f"test label agreement {test['label_agreement']:.4f} < {gates.min_label_agreement}")
    if not lossy and test["within_tolerance"] < gates.min_within_test:
        reasons.append(
            f"test rows within tolerance {test['within_tolerance']:.4%} < {gates.min_within_test:.2%}"
        )
    sets = {"test": test}
    for name, X in case.hostile.items():
        try:
            sets[name] = compare(
                case.native_hostile[name], onnx_prediction(model, X, task), tol["atol"], tol["rtol"]
            )
        except Exception as err:  # e.g. the runtime refusing input the native model took
            sets[name] = {"rows": len(X), "error": f"{type(err).__name__}: {err}", "within_tolerance": 0.0}
        if "error" in sets[name]:
            reasons.append(f"{name}: ONNX Runtime refused what the native model took ({sets[name]['error']})")
        elif not lossy and sets[name]["within_tolerance"] < gates.min_within_hostile:
            reasons.append(
                f"{name} rows within tolerance {sets[name]['within_tolerance']:.2%} "
                f"< {gates.min_within_hostile:.0%}"
            )
    rows = case.templates
    one_by_one = np.vstack([outputs_of(onnx_prediction(model, row[None, :], task), 1) for row in rows])
    together = outputs_of(onnx_prediction(model, case.templates, task), len(case.templates))
    batch_diff = float(row_diff(one_by_one, together).max())
    sets["batch_consistency"] = {"rows": len(case.templates), "max_abs_diff": batch_diff}
    if lossy:
        # dynamic INT8 quantizes activations over the whole batch, so a row's answer depends on
        # its batch-mates: the metric must also hold for rows sent one at a time (serving at batch 1)
        alone = [onnx_prediction(model, row[None, :], task) for row in case.X_test]
        single = Prediction(
            np.concatenate([p.values for p in alone]),
            None if task == "regression" else np.vstack([p.proba for p in alone]),
        )
        figures, worse, _ = metric_gate(
            case.native_metrics,
            task_metrics(task, case.y_test, single),
            GATED[task],
            gates.max_metric_rel_change,
        )
        sets["test_one_by_one"] = {"rows": len(case.X_test), **figures}
        reasons += [f"one row at a time: {r}" for r in worse]
    elif batch_diff > tol["atol"]:
        reasons.append(f"batch 1 vs batch N differ by {batch_diff:.3g} (> atol {tol['atol']})")
    return verdict(reasons, lossy, metrics, sets)


def verdict(reasons: list[str], lossy: bool, metrics: dict, sets: dict) -> dict:
    """One variant's entry in reports/validate/<model>.json: it passes when nothing failed."""
    return {
        "verdict": "pass" if not reasons else "fail",
        "reasons": reasons,
        "lossy": lossy,
        "onnx_metrics": metrics,
        "sets": sets,
    }


def compact_metrics(report: dict) -> dict:
    """The figures `dvc metrics show` lists per variant (the full report has every set)."""
    out = {}
    for variant, entry in report["variants"].items():
        sets = entry.get("sets", {})
        test = sets.get("test", {})
        hostile = [s["within_tolerance"] for k, s in sets.items() if "within_tolerance" in s and k != "test"]
        out[variant] = {
            "passed": entry["verdict"] == "pass",
            "test_max_abs_diff": test.get("max_abs_diff"),
            "test_within_tolerance": test.get("within_tolerance"),
            "test_metric_rel_worse": test.get("metric_rel_worse"),
            "hostile_min_within_tolerance": min(hostile) if hostile else None,
        }
        horizons = [
            h["within_tolerance"] for h in sets.get("horizons", {}).values() if "within_tolerance" in h
        ]
        if horizons:  # forecasters judged at other horizons (onnxship.parity.forecasts)
            out[variant]["horizons_min_within_tolerance"] = min(horizons)
    return out
