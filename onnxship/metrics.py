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


# which metric decides "task metric kept within 1 %" per task
PRIMARY = {"regression": "rmse", "classification": "log_loss"}
