"""Task metrics: RMSE/MAE for regressors; accuracy and log-loss for classifiers."""

from __future__ import annotations

import numpy as np

from onnxship.families import Prediction


def task_metrics(task: str, y_true: np.ndarray, pred: Prediction) -> dict[str, float]:
    if task == "regression":
        err = pred.values - np.asarray(y_true, dtype=np.float64)
        return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}
    y = np.asarray(y_true, dtype=np.int64)
    proba = np.clip(pred.proba, 1e-15, 1.0)
    proba = proba / proba.sum(axis=1, keepdims=True)
    return {
        "accuracy": float(np.mean(pred.values == y)),
        "log_loss": float(-np.mean(np.log(proba[np.arange(len(y)), y]))),
    }


# the metrics that must be kept ("within 1 % of native") per task
GATED = {"regression": ["rmse"], "classification": ["accuracy", "log_loss"], "forecast": ["wql", "mase"]}
HIGHER_IS_BETTER = {"accuracy"}


def metric_gate(native: dict[str, float], onnx: dict[str, float], keys: list[str], limit: float) -> tuple:
    """Each gated metric, native vs ONNX: the relative change signed so that > 0 is worse, and a
    reason for each that got worse by more than `limit` (a variant may be better, never worse).
    Returns (figures, reasons, worst change)."""
    figures: dict[str, float] = {}
    reasons: list[str] = []
    worst = 0.0
    for key in keys:
        change = (onnx[key] - native[key]) / max(abs(native[key]), 1e-12)
        worse = -change if key in HIGHER_IS_BETTER else change
        figures |= {f"{key}_native": native[key], f"{key}_onnx": onnx[key], f"{key}_rel_worse": worse}
        worst = max(worst, worse)
        if worse > limit:
            reasons.append(
                f"test {key} {native[key]:.6g} -> {onnx[key]:.6g}: {worse:.2%} worse (> {limit:.0%})"
            )
    return figures, reasons, worst
