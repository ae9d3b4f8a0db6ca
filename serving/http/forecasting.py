"""POST /forecast: a request's series and covariates -> the graph's tensors, and its quantiles ->
the answer. The contract forecasters are served under is onnxship.contract.ForecastSpec.

A request asks for any horizon up to prediction_length and any quantile levels inside the model's
range (levels between the model's own are interpolated linearly, as Chronos' pipelines do).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from onnxship.contract import CONTEXT, FUTURE, PAST, ForecastSpec
from serving.http.values import InvalidInput, float32_value

MAX_LEVELS = 99


def _series(values: Any, field: str) -> np.ndarray:
    """A JSON list of numbers (null = missing) as float32, or a message naming the field."""
    if not isinstance(values, list):
        raise InvalidInput(f"{field}: Input should be a list of numbers or null")
    return np.array([float32_value(v, f"{field}[{i}]") for i, v in enumerate(values)], dtype=np.float32)


def _covariates(given: Any, wanted: tuple[str, ...], length: int, field: str) -> dict[str, np.ndarray]:
    given = {} if given is None else given
    if not isinstance(given, dict):
        raise InvalidInput(f"{field}: Input should be an object of name -> list")
    unknown = len(set(given) - set(wanted))  # counted, never repeated: a key can carry anything
    if unknown:
        known = ", ".join(repr(w) for w in wanted) or "none"
        raise InvalidInput(f"{field}: {unknown} name(s) this model does not take (it takes: {known})")
    missing = [w for w in wanted if w not in given]
    if missing:
        raise InvalidInput(f"{field}: missing {missing[0]!r}")
    out = {}
    for name in wanted:
        series = _series(given[name], f"{field}.{name}")
        if len(series) != length:
            raise InvalidInput(f"{field}.{name}: {len(series)} values, expected {length}")
        out[name] = series
    return out


def build_feed(
    spec: ForecastSpec,
    context: Any,
    horizon: int | None,
    levels: list[float] | None,
    past: Any = None,
    future: Any = None,
) -> tuple[dict[str, np.ndarray], int, list[float]]:
    """The graph's inputs for one series, the horizon and the levels asked for; InvalidInput
    naming the field for anything that does not fit the model."""
    series = _series(context, "context")
    T, H = spec.context_length, spec.prediction_length
    if not 1 <= len(series) <= T:
        raise InvalidInput(f"context: {len(series)} values, this model takes 1 to {T}")
    if np.isnan(series).all():
        raise InvalidInput("context: every value is missing (null)")
    horizon = H if horizon is None else horizon
    if isinstance(horizon, bool) or not isinstance(horizon, int) or not 1 <= horizon <= H:
        raise InvalidInput(f"horizon: must be an integer from 1 to {H} for this model")
    levels = list(spec.quantile_levels) if levels is None else levels
    if not isinstance(levels, list):
        raise InvalidInput("quantile_levels: Input should be a list of numbers")
    lo, hi = spec.quantile_levels[0], spec.quantile_levels[-1]
    for i, q in enumerate(levels):
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not lo <= q <= hi:
            raise InvalidInput(f"quantile_levels[{i}]: must be a number from {lo} to {hi}")
    if not 1 <= len(levels) <= MAX_LEVELS:
        raise InvalidInput(f"quantile_levels: 1 to {MAX_LEVELS} levels")
    if len(set(levels)) != len(levels):
        raise InvalidInput("quantile_levels: each level at most once")
    feed = {CONTEXT: np.full((1, T), np.nan, dtype=np.float32)}
    feed[CONTEXT][0, T - len(series) :] = series
    if spec.covariates:
        past_values = _covariates(past, spec.covariates, len(series), PAST)
        future_values = _covariates(future, spec.future_covariates, horizon, FUTURE)
        feed[PAST] = np.full((1, T, len(spec.covariates)), np.nan, dtype=np.float32)
        feed[FUTURE] = np.full((1, H, len(spec.covariates)), np.nan, dtype=np.float32)
        for c, name in enumerate(spec.covariates):
            feed[PAST][0, T - len(series) :, c] = past_values[name]
            if name in future_values:
                feed[FUTURE][0, :horizon, c] = future_values[name]
    else:
        for field, given in ((PAST, past), (FUTURE, future)):
            if given:
                raise InvalidInput(f"{field}: this model takes no covariates")
    return feed, horizon, [float(q) for q in levels]


def at_levels(quantiles: np.ndarray, model_levels: tuple[float, ...], wanted: list[float]) -> np.ndarray:
    """[steps, len(wanted)] from [steps, len(model_levels)]: exact levels copied, others linearly
    interpolated between the model's neighbouring levels."""
    levels = np.asarray(model_levels)
    out = np.empty((quantiles.shape[0], len(wanted)), dtype=np.float64)
    for k, q in enumerate(wanted):
        j = int(np.searchsorted(levels, q))
        if j < len(levels) and math.isclose(levels[j], q, abs_tol=1e-9):
            out[:, k] = quantiles[:, j]
        else:
            t = (q - levels[j - 1]) / (levels[j] - levels[j - 1])
            out[:, k] = (1 - t) * quantiles[:, j - 1] + t * quantiles[:, j]
    return out


def answer(spec: ForecastSpec, quantiles: np.ndarray, horizon: int, levels: list[float]) -> dict[str, Any]:
    """The JSON body: one list of `horizon` values per level asked for."""
    if not np.isfinite(quantiles[0, :horizon]).all():
        raise InvalidInput("context: these values drive the forecast beyond the float32 range")
    table = at_levels(quantiles[0, :horizon], spec.quantile_levels, levels)
    return {
        "horizon": horizon,
        "quantile_levels": levels,
        "quantiles": {str(q): table[:, k].tolist() for k, q in enumerate(levels)},
    }
