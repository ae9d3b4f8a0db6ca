"""Validate-stage work per kind of data: the native answers every ONNX variant is judged against
(onnxship.parity for feature rows and tensors, onnxship.forecast_parity for forecasters), and
the verdict on one variant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from onnxship.runtime import InferenceSettings
from onnxship.workloads import Rows, Series


def parity_case(
    data: Rows | Series, cfg: DictConfig, family: Any, est: Any, meta: dict, tolerance: dict
) -> Any:
    settings = InferenceSettings.from_mapping(cfg.runtime)
    if isinstance(data, Series):
        return forecast_case(data, cfg, family, est, meta, tolerance, settings)
    import onnx

    from onnxship.contract import BASE_VARIANT
    from onnxship.hostile import build_sets
    from onnxship.metrics import task_metrics
    from onnxship.parity import ParityCase

    X_test, y_test = data.split("test")
    templates = X_test[: int(cfg.validate.hostile.rows)]
    base = onnx.load(str(Path(cfg.paths.optimized) / meta["model"] / f"{BASE_VARIANT}.onnx"))
    # hostile sets are built on flat rows; tensor inputs (images) go back to their shape after
    flat = templates.reshape(len(templates), -1)
    hostile = build_sets(flat, base, family.takes_missing_values(est), cfg.validate.hostile, cfg.seed)
    hostile = {k: rows.reshape(len(rows), *X_test.shape[1:]) for k, rows in hostile.items()}
    native_test = family.predict(est, X_test, data.task)
    return ParityCase(
        task=data.task,
        tolerance=tolerance,
        gates=cfg.validate,
        settings=settings,
        X_test=X_test,
        y_test=y_test,
        templates=templates,
        hostile=hostile,
        native_test=native_test,
        native_metrics=task_metrics(data.task, y_test, native_test),
        native_hostile={k: family.predict(est, X, data.task) for k, X in hostile.items()},
    )


def forecast_case(
    data: Series,
    cfg: DictConfig,
    family: Any,
    est: Any,
    meta: dict,
    tolerance: dict,
    settings: InferenceSettings,
) -> Any:
    """Native (the library's own predict) on the test windows and on harder variants of them."""
    from onnxship.contract import ForecastSpec
    from onnxship.forecast_parity import ForecastCase, hostile_feeds
    from onnxship.pipeline.config import model_spec
    from onnxship.series import forecast_metrics

    entry, spec = model_spec(cfg), ForecastSpec.from_metadata(meta)
    feed, truth = data.windows(spec, "test", data.stride(entry, spec), data.limit(entry))
    sets = {"test": feed} | hostile_feeds(feed, spec, np.random.default_rng(cfg.seed))
    native = {name: family.forecast(est, f, spec) for name, f in sets.items()}
    season = data.schema["season_length"]
    # speed-only models have random weights: their WQL/MASE is no accuracy figure (the summary
    # shows none), but a lossy variant must still not forecast worse than the same weights do natively
    accuracy = forecast_metrics(native["test"], truth, feed, spec, season)
    return ForecastCase(
        spec=spec,
        tolerance=tolerance,
        gates=cfg.validate,
        settings=settings,
        season=season,
        truth=truth,
        sets=sets,
        native=native,
        native_metrics=accuracy,
    )


def check_variant(case: Any, path: Path, lossy: bool) -> dict:
    from onnxship.forecast_parity import ForecastCase, check_forecast_variant
    from onnxship.parity import check_variant as check_rows

    return (check_forecast_variant if isinstance(case, ForecastCase) else check_rows)(path, lossy, case)


def is_forecast(case: Any) -> bool:
    return not hasattr(case, "hostile")


def fan_chart(case: Any) -> dict:
    from onnxship.forecast_parity import fan_chart

    return fan_chart(case)


def set_sizes(case: Any) -> dict[str, int]:
    """Rows (windows) per hostile set."""
    if hasattr(case, "hostile"):
        return {k: len(v) for k, v in case.hostile.items()}
    return {k: len(f["context"]) for k, f in case.sets.items() if k != "test"}
