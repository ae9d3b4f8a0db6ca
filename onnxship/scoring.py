"""Every task score and the metric gate: RMSE/MAE for regressors, accuracy and log-loss for
classifiers, weighted quantile loss and MASE for forecasters."""

from __future__ import annotations

import numpy as np

from onnxship.contract import CONTEXT, ForecastSpec, Prediction


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


def weighted_quantile_loss(quantiles: np.ndarray, truth: np.ndarray, levels: list[float]) -> float:
    """Mean over levels of 2 * sum(pinball loss) / sum(|truth|) (GluonTS's mean_wQuantileLoss).
    quantiles [n, H, Q], truth [n, H]."""
    y = truth.astype(np.float64)[..., None]
    q = np.asarray(levels, dtype=np.float64)
    error = y - quantiles.astype(np.float64)
    pinball = np.maximum(q * error, (q - 1) * error)  # [n, H, Q]
    return float(np.mean(2 * pinball.sum(axis=(0, 1)) / np.abs(truth).sum()))


def mase(median: np.ndarray, truth: np.ndarray, context: np.ndarray, season: int) -> float:
    """Mean absolute scaled error of the median forecast, scaled per window by the seasonal-naive
    in-sample error of its context (NaN skipped), averaged over windows."""
    scores = []
    for m, y, c in zip(median, truth, context, strict=True):
        naive = np.abs(c[season:] - c[:-season])
        scale = np.nanmean(naive) if np.isfinite(naive).any() else np.nan
        if np.isfinite(scale) and scale > 0:
            scores.append(np.mean(np.abs(y - m)) / scale)
    return float(np.mean(scores)) if scores else float("nan")


def forecast_metrics(
    quantiles: np.ndarray, truth: np.ndarray, feed: dict, spec: ForecastSpec, season: int
) -> dict[str, float]:
    levels = list(spec.quantile_levels)
    median = quantiles[..., levels.index(0.5)] if 0.5 in levels else np.median(quantiles, axis=-1)
    return {
        "wql": weighted_quantile_loss(quantiles, truth, levels),
        "mase": mase(median, truth, feed[CONTEXT], season),
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
