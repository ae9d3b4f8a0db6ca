"""Forecasters: the ONNX contract they are served under, and POST /forecast's checks and answer.

A forecaster's version carries `"task": "forecast"` and a `"forecast"` block in onnxship.json:

    "forecast": {"context_length": 512, "prediction_length": 64,
                 "quantile_levels": [0.1, 0.2, ..., 0.9],
                 "covariates": [{"name": "temperature", "future": true}, {"name": "load", "future": false}]}

and its graph has these inputs and output (float32; NaN means missing):

    context            [batch, context_length]                 the series, right-aligned (NaN-padded left)
    past_covariates    [batch, context_length, n_covariates]   only when covariates are declared
    future_covariates  [batch, prediction_length, n_covariates] NaN where unknown (past-only covariates)
    quantiles          [batch, prediction_length, n_levels]     output, levels in `quantile_levels` order

A request asks for any horizon up to prediction_length and any quantile levels inside the model's
range (levels between the model's own are interpolated linearly, as Chronos' pipelines do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.values import InvalidInput, float32_value

CONTEXT, PAST, FUTURE, QUANTILES = "context", "past_covariates", "future_covariates", "quantiles"
MAX_LEVELS = 99


@dataclass(frozen=True)
class ForecastSpec:
    context_length: int
    prediction_length: int
    quantile_levels: tuple[float, ...]
    covariates: tuple[str, ...] = ()
    future_covariates: tuple[str, ...] = ()

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ForecastSpec:
        block = metadata.get("forecast")
        if metadata.get("task") != "forecast" or not isinstance(block, dict):
            raise ValueError("metadata: not a forecaster (task 'forecast' with a 'forecast' block)")
        levels = tuple(float(q) for q in block["quantile_levels"])
        if not levels or list(levels) != sorted(set(levels)) or not all(0 < q < 1 for q in levels):
            raise ValueError(f"forecast.quantile_levels must be increasing, inside (0, 1): {levels}")
        covariates = block.get("covariates", [])
        spec = cls(
            context_length=int(block["context_length"]),
            prediction_length=int(block["prediction_length"]),
            quantile_levels=levels,
            covariates=tuple(c["name"] for c in covariates),
            future_covariates=tuple(c["name"] for c in covariates if c.get("future")),
        )
        if spec.context_length < 1 or spec.prediction_length < 1:
            raise ValueError("forecast.context_length and prediction_length must be positive")
        return spec

    @property
    def input_names(self) -> list[str]:
        return [CONTEXT, PAST, FUTURE] if self.covariates else [CONTEXT]

    def input_shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        T, H, C = self.context_length, self.prediction_length, len(self.covariates)
        shapes = {CONTEXT: (batch, T)}
        if self.covariates:
            shapes |= {PAST: (batch, T, C), FUTURE: (batch, H, C)}
        return shapes

    def example_feed(self, batch: int = 1) -> dict[str, np.ndarray]:
        """A plausible input (a sine wave, NaN-free): for warm-up and the probe."""
        feed = {}
        for name, shape in self.input_shapes(batch).items():
            steps = np.sin(np.arange(shape[1], dtype=np.float32) / 8)
            feed[name] = np.broadcast_to(steps.reshape((1, -1) + (1,) * (len(shape) - 2)), shape).copy()
        return feed

    def check_graph_io(self, input_names: list[str], output_names: list[str]) -> None:
        if input_names != self.input_names or output_names != [QUANTILES]:
            raise ValueError(
                f"graph I/O {input_names} -> {output_names}, the forecast contract says "
                f"{self.input_names} -> {[QUANTILES]}"
            )

    def check_output(self, quantiles: np.ndarray, batch: int) -> None:
        expected = (batch, self.prediction_length, len(self.quantile_levels))
        if quantiles.shape != expected:
            raise ValueError(f"quantiles output has shape {list(quantiles.shape)}, expected {list(expected)}")


def _series(values: Any, field: str) -> np.ndarray:
    """A JSON list of numbers (null = missing) as float32, or a message naming the field."""
    if not isinstance(values, list):
        raise InvalidInput(f"{field}: Input should be a list of numbers or null")
    return np.array([float32_value(v, f"{field}[{i}]") for i, v in enumerate(values)], dtype=np.float32)


def _covariates(given: Any, wanted: tuple[str, ...], length: int, field: str) -> dict[str, np.ndarray]:
    given = {} if given is None else given
    if not isinstance(given, dict):
        raise InvalidInput(f"{field}: Input should be an object of name -> list")
    unknown = sorted(set(given) - set(wanted))
    if unknown:
        known = ", ".join(repr(w) for w in wanted) or "none"
        raise InvalidInput(f"{field}: unknown {unknown[0][:40]!r} (this model takes: {known})")
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
