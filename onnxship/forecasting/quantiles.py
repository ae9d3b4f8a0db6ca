"""chronos.utils' interpolate_quantiles and weighted_quantile in NumPy float32 (the library
computes them in float32)."""

from __future__ import annotations

import numpy as np

F32 = np.float32


def interpolate_quantiles(query: np.ndarray, levels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """values [..., K] at `levels` ([K], or per row like values) -> [..., len(query)], linearly
    interpolated; beyond the outermost levels the outermost value is kept."""
    query = np.asarray(query, dtype=F32)
    shape, k = values.shape, values.shape[-1]
    values = values.reshape(-1, k).astype(F32)
    levels = np.asarray(levels, dtype=F32)
    levels = np.broadcast_to(levels, values.shape) if levels.ndim == 1 else levels.reshape(-1, k)
    order = np.argsort(levels, axis=-1, kind="stable")
    levels, values = np.take_along_axis(levels, order, -1), np.take_along_axis(values, order, -1)
    rows = len(values)
    if levels.min() > 0:
        levels = np.concatenate([np.zeros((rows, 1), F32), levels], axis=-1)
        values = np.concatenate([values[:, :1], values], axis=-1)
    if levels.max() < 1:
        levels = np.concatenate([levels, np.ones((rows, 1), F32)], axis=-1)
        values = np.concatenate([values, values[:, -1:]], axis=-1)
    asked = np.broadcast_to(query, (rows, len(query)))
    # the first level strictly above each query (searchsorted, right=True), row by row
    upper = np.minimum((levels[:, None, :] <= asked[:, :, None]).sum(-1), levels.shape[-1] - 1)
    lower = upper - 1
    lo_level, hi_level = np.take_along_axis(levels, lower, -1), np.take_along_axis(levels, upper, -1)
    lo_value, hi_value = np.take_along_axis(values, lower, -1), np.take_along_axis(values, upper, -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.nan_to_num((asked - lo_level) / (hi_level - lo_level), nan=0.0)
    out = lo_value + weight * (hi_value - lo_value)
    return out.reshape(*shape[:-1], len(query)).astype(F32)


def weighted_quantile(query: np.ndarray, weights: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Quantiles of the distribution of `samples` [..., N] weighted by `weights` [N] (normalized,
    float32, as the library's weighted_quantile divides them): the empirical CDF of the sorted
    samples, interpolated at `query`.

    The top of the CDF decides the 0.99 quantile, so the weights must be the library's own bits
    (ForecastGraph.unroll_weights, computed by the library at export) and the cumulative sum is
    taken in float64 as PyTorch's CPU cumsum accumulates it."""
    shape, n = samples.shape, samples.shape[-1]
    samples = samples.reshape(-1, n).astype(F32)
    weights = np.broadcast_to(np.asarray(weights, dtype=F32), samples.shape)
    order = np.argsort(samples, axis=-1, kind="stable")
    samples, weights = np.take_along_axis(samples, order, -1), np.take_along_axis(weights, order, -1)
    cumulative = np.clip(np.cumsum(weights.astype(np.float64), axis=-1).astype(F32), 0.0, 1.0)
    out = interpolate_quantiles(query, cumulative, samples)
    return out.reshape(*shape[:-1], len(query))
