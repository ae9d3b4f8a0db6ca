"""Train-stage work per kind of data: fit a zoo entry, and score it on the test split (feature
rows: RMSE/MAE or accuracy/log-loss; series: weighted quantile loss and MASE on test windows)."""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxship.workloads import Rows, Series


def fit(data: Rows | Series, family: Any, spec: Any, zoo: Any, seed: int) -> Any:
    """A fitted model from its zoo entry: trained on the train split; a forecaster is its
    checkpoint (zero-shot) or the checkpoint fine-tuned on the train split (`finetune:`)."""
    if isinstance(data, Rows):
        X, y = data.split("train")
        return family.fit(family.build(spec, zoo, data.task, seed), X, y)
    est = family.build(spec, zoo, data.task, seed)
    if not spec.get("finetune"):
        return est
    forecast = data.spec(spec, family.quantile_levels(est))
    lo, hi = data.schema["bounds"]["train"]
    train = data.table.iloc[lo:hi]
    # the library's input format: one long series; known-future covariates marked with None
    series = {
        "target": train[data.schema["target"]].to_numpy(np.float32),
        "past_covariates": {c: train[c].to_numpy(np.float32) for c in forecast.covariates},
        "future_covariates": {c: None for c in forecast.future_covariates},
    }
    return family.finetune(est, [series], forecast, spec.finetune, seed)


def test_metrics(data: Rows | Series, family: Any, est: Any, entry: Any) -> dict[str, float]:
    """The task metric on the test split; none for a `speed_only` model (random weights at a
    release size: an accuracy figure would mean nothing)."""
    if entry.get("speed_only"):
        return {}
    if isinstance(data, Rows):
        from onnxship.metrics import task_metrics

        X, y = data.split("test")
        return task_metrics(data.task, y, family.predict(est, X, data.task))
    from onnxship.series import forecast_metrics

    spec = data.spec(entry, family.quantile_levels(est))
    feed, truth = data.windows(spec, "test", data.stride(entry, spec), data.limit(entry))
    return forecast_metrics(family.forecast(est, feed, spec), truth, feed, spec, data.schema["season_length"])
