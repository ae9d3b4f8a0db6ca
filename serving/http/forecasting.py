"""POST /forecast: a request's series -> forecasting tasks, and their quantiles -> the answer. The
contract forecasters are served under is onnxship.contract.ForecastSpec; the forecasting itself
(rows, groups, categorical encoding, rollout) is onnxship.forecasting, the code validate proves
against the library's `predict`.

A request is one series (`context`) or a batch of them (`series`). A series' context is a list of
numbers, or for Chronos-2 a list of variates forecast jointly ([n_variates][length], the library's
2-d target). Covariates are named lists: numbers, or (Chronos-2) strings, encoded as the library
encodes categorical covariates. `cross_learning: true` lets a batch's series inform each other, as
`predict(..., cross_learning=True)`; without it they never do. Any horizon from 1 to the model's
max_horizon, any quantile levels inside the model's range (interpolated linearly between its own,
as Chronos' pipelines do).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxship.contract import CHRONOS2, CONTEXT, FUTURE, PAST, SERIES, ForecastSpec
from onnxship.forecasting.categorical import UnseenCategory
from onnxship.forecasting.rollout import CALL_ROWS, Run, TooManyJointRows, forecast, series_forecast
from onnxship.forecasting.tasks import SeriesTask
from serving.http.store import LoadedModel
from serving.http.values import InvalidInput, float32_value
from serving.settings import Settings

MAX_LEVELS = 99
MAX_VARIATES = 64  # target variates per series
MAX_COVARIATES = 64  # covariates per series, for a Chronos-2 that takes any
MAX_TEXT = 200  # characters of one categorical value

__all__ = ["Ask", "ForecastSpec", "answer", "parse", "run"]


@dataclass
class Ask:
    """A checked /forecast request: its tasks, and how to answer them."""

    tasks: list[SeriesTask]
    horizon: int
    levels: list[float]
    cross_learning: bool
    batch: bool  # asked as `series`: answered as `forecasts`
    multivariate: list[bool]  # per series: context given as a list of variates


def _series(values: Any, field: str) -> np.ndarray:
    """A JSON list of numbers (null = missing) as float32, or a message naming the field."""
    if not isinstance(values, list):
        raise InvalidInput(f"{field}: Input should be a list of numbers or null")
    return np.array([float32_value(v, f"{field}[{i}]") for i, v in enumerate(values)], dtype=np.float32)


def _covariate(values: Any, field: str, categorical_ok: bool) -> np.ndarray:
    """Numbers/null -> float32; strings/null (Chronos-2) -> an object array (None = missing)."""
    if not isinstance(values, list):
        raise InvalidInput(f"{field}: Input should be a list of numbers, strings or null")
    if not any(isinstance(v, str) for v in values):
        return _series(values, field)
    if not categorical_ok:
        raise InvalidInput(f"{field}: this model takes numeric covariates only")
    for i, v in enumerate(values):
        if v is not None and not isinstance(v, str):
            raise InvalidInput(f"{field}[{i}]: a categorical covariate takes strings or null only")
        if isinstance(v, str) and len(v) > MAX_TEXT:
            raise InvalidInput(f"{field}[{i}]: longer than {MAX_TEXT} characters")
    return np.array(values, dtype=object)


def _target(context: Any, spec: ForecastSpec, field: str) -> tuple[np.ndarray, bool]:
    """[n_variates, length] float32, and whether it was given as a list of variates."""
    if not isinstance(context, list) or not context:
        raise InvalidInput(f"{field}: Input should be a non-empty list")
    multivariate = isinstance(context[0], list)
    rows = context if multivariate else [context]
    if multivariate and spec.graph.layout != CHRONOS2:
        raise InvalidInput(f"{field}: this model forecasts one variate per series (a list of numbers)")
    if len(rows) > MAX_VARIATES:
        raise InvalidInput(f"{field}: {len(rows)} variates, at most {MAX_VARIATES}")
    variates = [_series(r, f"{field}[{i}]" if multivariate else field) for i, r in enumerate(rows)]
    lengths = {len(v) for v in variates}
    if len(lengths) != 1:
        raise InvalidInput(f"{field}: variates of different lengths (ragged); left-pad with null")
    (length,) = lengths
    if not 1 <= length <= spec.context_length:
        raise InvalidInput(f"{field}: {length} values, this model takes 1 to {spec.context_length}")
    for i, v in enumerate(variates):
        if np.isnan(v).all():
            raise InvalidInput(f"{field}{f'[{i}]' if multivariate else ''}: every value is missing (null)")
    return np.stack(variates), multivariate


def _names(given: Any, field: str) -> dict[str, Any]:
    given = {} if given is None else given
    if not isinstance(given, dict):
        raise InvalidInput(f"{field}: Input should be an object of name -> list")
    return given


def _label(spec: ForecastSpec, group: str, name: str, position: int) -> str:
    """A covariate's field: by name when the model declares it, else by position (a name the
    caller chose is never echoed)."""
    return f"{group}.{name}" if name in spec.covariates else f"{group}[{position}]"


def _covariates(spec: ForecastSpec, item: dict, field: str, length: int, horizon: int) -> tuple[dict, dict]:
    """past {name: [length]}, future {name: [horizon]} of one series, held to the model's contract:
    the declared covariates exactly, or, for a Chronos-2 declaring none, any (the library's zero-shot
    covariates; future ones must also have a past)."""
    past, future = _names(item.get(PAST), f"{field}{PAST}"), _names(item.get(FUTURE), f"{field}{FUTURE}")
    if not (spec.graph.layout == CHRONOS2 and not spec.covariates):  # else open: any names
        for group, given, wanted in ((PAST, past, spec.covariates), (FUTURE, future, spec.future_covariates)):
            unknown = len(set(given) - set(wanted))  # counted, never repeated: a key can carry anything
            if unknown:
                known = ", ".join(repr(w) for w in wanted) or "none"
                raise InvalidInput(
                    f"{field}{group}: {unknown} name(s) this model does not take (it takes: {known})"
                )
            missing = [w for w in wanted if w not in given]
            if missing:
                raise InvalidInput(f"{field}{group}: missing {missing[0]!r}")
    else:
        if len(past) > MAX_COVARIATES:
            raise InvalidInput(f"{field}{PAST}: at most {MAX_COVARIATES} covariates")
        if set(future) - set(past):
            raise InvalidInput(f"{field}{FUTURE}: {len(set(future) - set(past))} name(s) with no past values")
    categorical_ok = spec.graph.layout == CHRONOS2
    out_past, out_future = {}, {}
    for group, given, size, out in ((PAST, past, length, out_past), (FUTURE, future, horizon, out_future)):
        for n, (name, values) in enumerate(given.items()):
            label = _label(spec, f"{field}{group}", name, n)
            series = _covariate(values, label, categorical_ok)
            if len(series) != size:
                raise InvalidInput(f"{label}: {len(series)} values, expected {size}")
            out[name] = series
    for n, name in enumerate(out_future):
        if all_null(out_future[name]):
            # known ahead but not given (all null): the library's None, a NaN row whatever the type
            out_future[name] = None
        elif (out_future[name].dtype == object) != (out_past[name].dtype == object):
            label = _label(spec, f"{field}{FUTURE}", name, n)
            raise InvalidInput(f"{label}: strings in one of past and future, numbers in the other")
    return out_past, out_future


def all_null(values: np.ndarray) -> bool:
    """Every value null."""
    return bool(np.isnan(values).all()) if values.dtype != object else all(v is None for v in values)


def _horizon(spec: ForecastSpec, horizon: Any) -> int:
    horizon = spec.prediction_length if horizon is None else horizon
    if isinstance(horizon, bool) or not isinstance(horizon, int) or not 1 <= horizon <= spec.max_horizon:
        raise InvalidInput(f"horizon: must be an integer from 1 to {spec.max_horizon} for this model")
    return horizon


def _levels(spec: ForecastSpec, levels: Any) -> list[float]:
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
    return [float(q) for q in levels]


def _consistent(tasks: list[SeriesTask], spec: ForecastSpec) -> None:
    """One call's series share a shape, as the library requires of its inputs."""
    first = tasks[0]
    for i, task in enumerate(tasks[1:], start=1):
        if len(task.target) != len(first.target):
            raise InvalidInput(
                f"series[{i}].context: {len(task.target)} variates, series[0] has {len(first.target)}"
            )
        if sorted(task.past) != sorted(first.past) or sorted(task.future) != sorted(first.future):
            raise InvalidInput(f"series[{i}]: other covariate names than series[0]")
        if any((task.future[n] is None) != (first.future[n] is None) for n in first.future):
            raise InvalidInput(f"series[{i}].{FUTURE}: all null where series[0] gives values, or the reverse")
        for name, values in task.past.items():
            if (values.dtype == object) != (first.past[name].dtype == object):
                raise InvalidInput(
                    f"series[{i}].{PAST}: a covariate numeric in one series, strings in another"
                )


def parse(spec: ForecastSpec, body: dict[str, Any], max_rows: int, max_answer: int = 10**6) -> Ask:
    """The request's tasks, horizon and levels; InvalidInput naming the field for anything that
    does not fit the model: at most `max_rows` rows (targets and covariates), an answer of at most
    `max_answer` numbers."""
    horizon, levels = _horizon(spec, body.get("horizon")), _levels(spec, body.get("quantile_levels"))
    cross = bool(body.get("cross_learning"))
    if cross and spec.graph.layout != CHRONOS2:
        raise InvalidInput(
            "cross_learning: this model forecasts each series on its own (Chronos-2 can learn across)"
        )
    batch = body.get("series") is not None
    if batch == (body.get("context") is not None):
        raise InvalidInput("context: give `context` (one series) or `series` (a batch), not both")
    items = body["series"] if batch else [body]
    if not isinstance(items, list) or not items:
        raise InvalidInput("series: Input should be a non-empty list")
    for group in (PAST, FUTURE):
        if batch and body.get(group) is not None:
            raise InvalidInput(f"{group}: with `series`, each series gives its own")
    if cross and not batch:
        raise InvalidInput("cross_learning: needs a batch of series (`series`)")
    tasks, multivariate, rows = [], [], 0
    for i, item in enumerate(items):
        field = f"series[{i}]." if batch else ""
        if not isinstance(item, dict):
            raise InvalidInput(f"series[{i}]: Input should be an object")
        target, multi = _target(item.get(CONTEXT), spec, f"{field}{CONTEXT}")
        past, future = _covariates(spec, item, field, target.shape[1], horizon)
        rows += len(target) + len(past)
        if rows > max_rows:
            raise InvalidInput(f"series: more than {max_rows} rows (targets and covariates) in one request")
        tasks.append(SeriesTask(target, past, future))
        multivariate.append(multi)
    _consistent(tasks, spec)
    numbers = sum(len(t.target) for t in tasks) * horizon * len(levels)
    if numbers > max_answer:
        raise InvalidInput(
            f"horizon: the answer would hold more than {max_answer} numbers (series x steps x levels)"
        )
    return Ask(tasks, horizon, levels, cross, batch, multivariate)


def _series_layout_feed(spec: ForecastSpec, tasks: list[SeriesTask]) -> dict[str, np.ndarray]:
    """A 'series' graph's feed: each task one row, right-aligned in the model's context."""
    T, H, C = spec.context_length, spec.prediction_length, len(spec.covariates)
    feed = {CONTEXT: np.full((len(tasks), T), np.nan, dtype=np.float32)}
    if C:
        feed[PAST] = np.full((len(tasks), T, C), np.nan, dtype=np.float32)
        feed[FUTURE] = np.full((len(tasks), H, C), np.nan, dtype=np.float32)
    for b, task in enumerate(tasks):
        feed[CONTEXT][b, T - task.length :] = task.target[0]
        for c, name in enumerate(spec.covariates):
            feed[PAST][b, T - task.length :, c] = task.past[name]
            if name in task.future:
                feed[FUTURE][b, : len(task.future[name]), c] = task.future[name]
    return feed


def run(spec: ForecastSpec, call: Run, ask: Ask, call_rows: int = CALL_ROWS) -> list[np.ndarray]:
    """Per task [n_variates, horizon, n_levels], in graph calls of at most `call_rows` rows."""
    if spec.graph.layout == SERIES:
        out = series_forecast(call, spec, _series_layout_feed(spec, ask.tasks), ask.horizon)
        return [q[None] for q in out]
    try:
        return forecast(call, spec, ask.tasks, ask.horizon, ask.cross_learning, call_rows)
    except TooManyJointRows as err:
        rows, limit = err.args
        paths = ", 9 paths each beyond one call" if ask.horizon > spec.graph.native_horizon else ""
        raise InvalidInput(
            f"cross_learning: {rows} rows learn jointly, at most {limit} ({call_rows} per call{paths})"
        ) from None
    except UnseenCategory as err:
        task, step, name = err.args
        field = f"series[{task}]." if ask.batch else ""
        label = _label(spec, f"{field}{FUTURE}", name, list(ask.tasks[task].future).index(name))
        raise InvalidInput(f"{label}[{step}]: a category that no past value of this request has") from None


def at_levels(quantiles: np.ndarray, model_levels: tuple[float, ...], wanted: list[float]) -> np.ndarray:
    """[..., len(wanted)] from [..., len(model_levels)]: exact levels copied, others linearly
    interpolated between the model's neighbouring levels."""
    levels = np.asarray(model_levels)
    out = np.empty((*quantiles.shape[:-1], len(wanted)), dtype=np.float64)
    for k, q in enumerate(wanted):
        j = int(np.searchsorted(levels, q))
        if j < len(levels) and math.isclose(levels[j], q, abs_tol=1e-9):
            out[..., k] = quantiles[..., j]
        else:
            t = (q - levels[j - 1]) / (levels[j] - levels[j - 1])
            out[..., k] = (1 - t) * quantiles[..., j - 1] + t * quantiles[..., j]
    return out


def answer(spec: ForecastSpec, ask: Ask, outputs: list[np.ndarray]) -> dict[str, Any]:
    """The JSON body: per level, `horizon` values (a list of them per variate for a
    multivariate series); a batch answers one such object per series, in order."""
    bodies = []
    for i, (quantiles, multi) in enumerate(zip(outputs, ask.multivariate, strict=True)):
        if not np.isfinite(quantiles).all():
            field = f"series[{i}].context" if ask.batch else "context"
            raise InvalidInput(f"{field}: these values drive the forecast beyond the float32 range")
        table = at_levels(quantiles, spec.quantile_levels, ask.levels)  # [V, h, levels]
        per_level = {
            str(q): (table[..., k] if multi else table[0, :, k]).tolist() for k, q in enumerate(ask.levels)
        }
        bodies.append({"quantiles": per_level})
    head = {"horizon": ask.horizon, "quantile_levels": ask.levels}
    if ask.batch:
        return head | {"cross_learning": ask.cross_learning, "forecasts": bodies}
    return head | bodies[0]


def forecast_answer(loaded: LoadedModel, body: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """A /forecast body (as parsed JSON) answered by a forecaster: InvalidInput names what is wrong."""
    spec = loaded.forecast
    ask = parse(spec, body, settings.max_batch_rows, settings.max_answer_values)
    call = lambda feed: loaded.model.run_feed(feed)[0]  # noqa: E731
    return answer(spec, ask, run(spec, call, ask, settings.max_call_rows))
