"""Validate-stage work per kind of data: the native answers every ONNX variant is judged against
(onnxship.parity.rows for feature rows and tensors, onnxship.parity.forecasts for forecasters).
A case judges one variant (`case.check(path, lossy)`) whatever its kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from onnxship.data.workloads import Columns, Rows, Series
from onnxship.runtime import InferenceSettings


def parity_case(
    data: Rows | Columns | Series,
    cfg: DictConfig,
    entry: Any,
    family: Any,
    est: Any,
    meta: dict,
    tolerance: dict,
) -> Any:
    """The case for one model: `entry` is its zoo entry, `tolerance` its family's atol/rtol."""
    settings = InferenceSettings.from_mapping(cfg.runtime)
    build = {"rows": rows_case, "columns": columns_case, "series": forecast_case}[data.kind]
    return build(data, cfg, entry, family, est, meta, tolerance, settings)


def rows_case(
    data: Rows,
    cfg: DictConfig,
    entry: Any,
    family: Any,
    est: Any,
    meta: dict,
    tolerance: dict,
    settings: InferenceSettings,
) -> Any:
    """Native on the test rows and on hostile rows built from the base graph's tree thresholds."""
    import onnx

    from onnxship.contract import BASE_VARIANT
    from onnxship.parity.hostile import build_sets
    from onnxship.parity.rows import ParityCase
    from onnxship.scoring import task_metrics

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


def columns_case(
    data: Columns,
    cfg: DictConfig,
    entry: Any,
    family: Any,
    est: Any,
    meta: dict,
    tolerance: dict,
    settings: InferenceSettings,
) -> Any:
    """Native on the test rows and on hostile tables (onnxship.parity.columns)."""
    from onnxship.parity.columns import ColumnsCase, build_column_sets

    X_test, y_test = data.split("test")
    templates = X_test.iloc[: int(cfg.validate.hostile.rows)].reset_index(drop=True)
    hostile = build_column_sets(
        templates, data.columns, family.takes_missing_values(est), cfg.validate.hostile, cfg.seed
    )
    return ColumnsCase.build(
        lambda frame: data.native(family, est, frame),
        X_test,
        y_test,
        data.columns,
        hostile,
        templates,
        task=data.task,
        tolerance=tolerance,
        gates=cfg.validate,
        settings=settings,
    )


HORIZON_WINDOWS = 8  # test windows per horizon case


def horizon_cases(data: Series, cfg: DictConfig, entry: Any, family: Any, est: Any, spec: Any) -> dict:
    """h -> (the last test windows cut h ahead, the library's forecast of them), for each horizon
    of validate.horizons the model serves other than its own."""
    import dataclasses

    out = {}
    for horizon in cfg.validate.get("horizons") or []:
        if horizon == spec.prediction_length or horizon > spec.max_horizon or not spec.graph.rolls_forward:
            continue
        at = dataclasses.replace(spec, prediction_length=int(horizon))
        windows, _ = data.windows(
            at, "test", data.stride(entry, at), min(HORIZON_WINDOWS, data.limit(entry) or HORIZON_WINDOWS)
        )
        out[int(horizon)] = (windows, family.forecast(est, windows, at))
    return out


def forecast_case(
    data: Series,
    cfg: DictConfig,
    entry: Any,
    family: Any,
    est: Any,
    meta: dict,
    tolerance: dict,
    settings: InferenceSettings,
) -> Any:
    """Native (the library's own predict) on the test windows and on harder variants of them."""
    from onnxship.contract import ForecastSpec
    from onnxship.parity.forecasts import ForecastCase, hostile_feeds
    from onnxship.scoring import forecast_metrics

    spec = ForecastSpec.from_metadata(meta)
    feed, truth = data.windows(spec, "test", data.stride(entry, spec), data.limit(entry))
    sets = {"test": feed} | hostile_feeds(feed, spec, np.random.default_rng(cfg.seed))
    native = {name: family.forecast(est, f, spec) for name, f in sets.items()}
    season = data.schema["season_length"]
    # speed-only models have random weights: their WQL/MASE is no accuracy figure (the summary
    # shows none), but a lossy variant must still not forecast worse than the same weights do natively
    accuracy = forecast_metrics(native["test"], truth, feed, spec, season)
    return ForecastCase(
        horizons=horizon_cases(data, cfg, entry, family, est, spec),
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
