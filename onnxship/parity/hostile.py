"""Hostile input sets for validate, built from test rows used as templates.

Each builder returns (name, X float64) or None when the set does not apply to the model.
"""

from __future__ import annotations

import numpy as np

from onnxship.graph import tree_thresholds


def nan_rows(templates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each feature missing alone, then about a fifth of all features missing at random."""
    n, width = templates.shape
    single = np.repeat(templates[: max(1, n // width + 1)], width, axis=0)[: max(width, n)]
    for i in range(len(single)):
        single[i, i % width] = np.nan
    scattered = templates.copy()
    scattered[rng.random(scattered.shape) < 0.2] = np.nan
    return np.vstack([single, scattered])


def threshold_rows(
    templates: np.ndarray, thresholds: dict[int, np.ndarray], per_feature: int, rng: np.random.Generator
) -> np.ndarray | None:
    """Feature values exactly at a split threshold and one float32 step either side of it."""
    rows = []
    for feature, values in sorted(thresholds.items()):
        if feature >= templates.shape[1]:
            continue
        picked = values if len(values) <= per_feature else rng.choice(values, per_feature, replace=False)
        for t in np.asarray(picked, dtype=np.float32):
            for x in (np.nextafter(t, np.float32(-np.inf)), t, np.nextafter(t, np.float32(np.inf))):
                row = templates[rng.integers(len(templates))].copy()
                row[feature] = float(x)
                rows.append(row)
    return np.asarray(rows) if rows else None


def extreme_rows(templates: np.ndarray, magnitudes: list[float]) -> np.ndarray:
    """One feature at a time pushed to each magnitude (all within the float32 range)."""
    width = templates.shape[1]
    rows = []
    for m in magnitudes:
        for feature in range(width):
            row = templates[feature % len(templates)].copy()
            row[feature] = m
            rows.append(row)
    return np.asarray(rows)


def float64_rows(templates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Values float32 cannot hold exactly: the runtime must cast, the answer must not move."""
    return templates * (1.0 + rng.uniform(-1e-9, 1e-9, size=templates.shape))


def build_sets(
    templates: np.ndarray, onnx_model, accepts_nan: bool, cfg_hostile, seed: int
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sets = {}
    if accepts_nan:
        sets["nan"] = nan_rows(templates, rng)
    thresholds = threshold_rows(
        templates, tree_thresholds(onnx_model), int(cfg_hostile.thresholds_per_feature), rng
    )
    if thresholds is not None:
        sets["thresholds"] = thresholds
    sets["extreme"] = extreme_rows(templates, list(cfg_hostile.magnitudes))
    sets["float64"] = float64_rows(templates, rng)
    return sets
