"""Forecasts of any horizon from a forecast graph, as the library's `predict` makes them.

Chronos-2 (layout "chronos2"): the graph takes rows, group ids and known-future rows and answers
as many steps as the future rows are long (whole patches inside). Up to the model's native
horizon (max_output_patches patches) that is one call, with ceil(h / patch) patches, exactly as
Chronos2Pipeline.predict. Beyond, the library's long-horizon heuristic: each series is copied
once per unrolled quantile level (a path, its own group), the path's quantile of the forecast so
far is appended to its context (known future covariates replace theirs), the next patches are
forecast, and the paths' quantiles are pooled back into the model's levels by weighted quantiles.

Chronos-Bolt (layout "chronos_bolt"): the graph answers its native horizon at once; beyond, each
of the model's quantiles is appended to the context in turn and the forecasts of all of them are
pooled with torch.quantile's linear rule (ChronosBoltPipeline.predict).

Other forecast graphs (layout "series") answer their fixed horizon: a shorter one is its first
steps.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

from onnxship.contract import CONTEXT, FUTURE, GROUP_IDS, SERIES, ForecastSpec
from onnxship.forecasting.quantiles import interpolate_quantiles, weighted_quantile
from onnxship.forecasting.tasks import LIBRARY_BATCH_ROWS, SeriesTask, layout

Run = Callable[[dict[str, np.ndarray]], np.ndarray]  # graph feed -> quantiles [rows, steps, levels]
CALL_ROWS = LIBRARY_BATCH_ROWS  # rows per graph call by default: the library's batch


class TooManyJointRows(ValueError):
    """Rows that must share one graph call (a cross-learning group, with its rollout paths) exceed
    the call's limit; args: (rows, limit)."""


def whole_groups(group_ids: np.ndarray, max_rows: int) -> list[tuple[int, int]]:
    """Row ranges for graph calls, each of whole groups (a group's rows attend to each other, so
    one call must hold all of them; a group is a run of equal ids) and at most max_rows rows."""
    edges = [0, *(int(i) for i in np.flatnonzero(np.diff(group_ids)) + 1), len(group_ids)]
    ranges, start = [], 0
    for left, right in itertools.pairwise(edges):
        if right - left > max_rows:
            raise TooManyJointRows(right - left, max_rows)
        if right - start > max_rows:
            ranges.append((start, left))
            start = left
    if start < len(group_ids):
        ranges.append((start, len(group_ids)))
    return ranges


def chronos2_call(
    run: Run, context: np.ndarray, group_ids: np.ndarray, future: np.ndarray, steps: int
) -> np.ndarray:
    """One graph call answering `steps` steps: [rows, levels, steps] (the library's order)."""
    if steps > future.shape[1]:
        pad = np.full((len(future), steps - future.shape[1]), np.nan, dtype=np.float32)
        future = np.concatenate([future, pad], axis=1)
    feed = {CONTEXT: context, GROUP_IDS: group_ids, FUTURE: np.ascontiguousarray(future[:, :steps])}
    return run(feed).transpose(0, 2, 1)


def chronos2_step(
    run: Run, context, group_ids, future, steps: int, call_rows: int, paths: int = 1
) -> np.ndarray:
    """`steps` steps for every row, in calls of whole groups and at most `call_rows` rows: group
    attention costs rows squared per call. With `paths`, rows are series rows times their
    rollout paths (row r * paths + p), and a series' paths stay in one call."""
    series_groups = group_ids[::paths] // paths
    out = [
        chronos2_call(
            run,
            context[a * paths : b * paths],
            group_ids[a * paths : b * paths],
            future[a * paths : b * paths],
            steps,
        )
        for a, b in whole_groups(series_groups, max(1, call_rows // paths))
    ]
    return np.concatenate(out) if len(out) > 1 else out[0]


def chronos2_rollout(
    run: Run, spec: ForecastSpec, context, group_ids, future, horizon: int, call_rows: int = CALL_ROWS
) -> np.ndarray:
    """[rows, levels, horizon] for every row (Chronos2Pipeline._predict_batch)."""
    graph = spec.graph
    patch = graph.patch_size
    max_patches = graph.native_horizon // patch
    n = len(graph.unrolled_quantiles)

    def steps_for(remaining: int) -> int:
        return min(math.ceil(remaining / patch), max_patches) * patch

    if horizon > graph.native_horizon:  # every group must fit one call with its paths: before any work
        whole_groups(group_ids, max(1, call_rows // n))
    prediction = chronos2_step(run, context, group_ids, future, steps_for(horizon), call_rows)
    predictions, remaining = [prediction], horizon - prediction.shape[-1]
    if remaining > 0:
        paths = np.asarray(graph.unrolled_quantiles, dtype=np.float32)
        rows = len(context)
        context = np.repeat(context[:, None, :], n, axis=1)
        future = np.repeat(future[:, None, :], n, axis=1)
        group_ids = group_ids[:, None] * n + np.arange(n)[None, :]
        weights = np.asarray(graph.unroll_weights, dtype=np.float32)
    while remaining > 0:
        along = interpolate_quantiles(paths, spec.quantile_levels, prediction.transpose(0, 2, 1))
        context = np.concatenate([context, along.transpose(0, 2, 1)], axis=-1)[
            ..., -graph.model_context_length :
        ]
        done = prediction.shape[-1]  # known future covariates replace their forecast in the context
        known = future[..., :done]
        context[..., -done:] = np.where(np.isnan(known), context[..., -done:], known)
        future = future[..., done:]
        out = chronos2_step(
            run,
            np.ascontiguousarray(context.reshape(rows * n, -1)),
            group_ids.reshape(-1),
            future.reshape(rows * n, -1),
            steps_for(remaining),
            call_rows,
            paths=n,
        )
        pooled = out.reshape(rows, n * out.shape[1], out.shape[2]).transpose(0, 2, 1)
        prediction = weighted_quantile(spec.quantile_levels, weights, pooled).transpose(0, 2, 1)
        predictions.append(prediction)
        remaining -= prediction.shape[-1]
    return np.concatenate(predictions, axis=-1)[..., :horizon]


def bolt_rollout(
    run: Run, spec: ForecastSpec, context: np.ndarray, horizon: int, call_rows: int = CALL_ROWS
) -> np.ndarray:
    """[series, levels, horizon] (ChronosBoltPipeline.predict), at most `call_rows` rows a call."""
    keep = spec.graph.model_context_length

    def call(rows: np.ndarray) -> np.ndarray:
        out = [
            run({CONTEXT: np.ascontiguousarray(rows[i : i + call_rows])})
            for i in range(0, len(rows), call_rows)
        ]
        return (np.concatenate(out) if len(out) > 1 else out[0]).transpose(0, 2, 1)

    context = context[:, -keep:]
    prediction = call(context)
    predictions, remaining = [prediction], horizon - prediction.shape[-1]
    levels = np.asarray(spec.quantile_levels, dtype=np.float32)
    if remaining > 0:
        context = np.repeat(context[:, None, :], len(levels), axis=1)
    while remaining > 0:
        context = np.concatenate([context, prediction], axis=-1)[..., -keep:]
        series, paths, length = context.shape
        out = call(context.reshape(series * paths, length))
        out = out.reshape(series, paths * out.shape[1], out.shape[2])
        prediction = np.quantile(out, levels, axis=1).transpose(1, 0, 2).astype(np.float32)
        predictions.append(prediction)
        remaining -= prediction.shape[-1]
    return np.concatenate(predictions, axis=-1)[..., :horizon]


def forecast(
    run: Run,
    spec: ForecastSpec,
    tasks: list[SeriesTask],
    horizon: int,
    cross_learning: bool = False,
    call_rows: int = CALL_ROWS,
) -> list[np.ndarray]:
    """Each task's forecast, [n_variates, horizon, levels], as the library's predict answers the
    same inputs (float32 rounding aside), in graph calls of at most `call_rows` rows (a
    cross-learning group that cannot fit one: TooManyJointRows). Inputs are trusted to fit `spec`
    (the caller checks)."""
    layout_name = spec.graph.layout
    if layout_name == "chronos2":
        rows = layout(tasks, horizon, cross_learning)
        out = chronos2_rollout(run, spec, rows.context, rows.group_ids, rows.future, horizon, call_rows)
        return [out[start:end].transpose(0, 2, 1) for start, end in rows.targets]
    if layout_name == "chronos_bolt":
        rows = layout(tasks, horizon)
        out = bolt_rollout(run, spec, rows.context, horizon, call_rows)
        return [out[start:end].transpose(0, 2, 1) for start, end in rows.targets]
    raise ValueError(f"no rollout for forecast graphs of layout {layout_name!r}")


def series_forecast(run: Run, spec: ForecastSpec, windows: dict[str, np.ndarray], horizon: int) -> np.ndarray:
    """A 'series' graph: one call, its first `horizon` steps."""
    return run(windows)[:, :horizon]


def forecast_windows(
    run: Run, spec: ForecastSpec, windows: dict[str, np.ndarray], horizon: int | None = None
) -> np.ndarray:
    """[batch, horizon, levels] for windows in the series layout (context [batch, T], covariates
    [batch, T | horizon, C]), each window its own series: the path serving takes."""
    horizon = horizon or spec.prediction_length
    if spec.graph.layout == SERIES:
        return series_forecast(run, spec, windows, horizon)
    return np.stack([o[0] for o in forecast(run, spec, spec.window_tasks(windows), horizon)])
