"""Forecasting data: a prepared series (target + covariates, in time order) and the rolling
windows forecasters are fitted, judged and timed on.

A window is one forecast origin t: the context is the `context_length` values before t
(NaN-padded on the left where the series is shorter), the covariates over the same span, the
known future covariates over [t, t + H), and the truth over [t, t + H). Windows of a split have
their origin inside it; their context may reach back into earlier splits (that is history, not
leakage).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from onnxship.contract import CONTEXT, FUTURE, PAST, ForecastSpec
from onnxship.data.splits import split_bounds
from onnxship.errors import DataError
from onnxship.io import read_json

SERIES_FILE = "series.parquet"


def prepare_series(raw: pd.DataFrame, data: DictConfig, origin: str) -> tuple[pd.DataFrame, dict]:
    """The series table (target + covariates, float32) and its schema with the split bounds."""
    columns = [data.target, *list(data.covariates or [])]
    missing = [c for c in columns if c not in raw.columns]
    if missing:
        raise DataError(f"series column(s) not found: {', '.join(missing)} (table has {list(raw.columns)})")
    table = raw[columns].astype("float32").reset_index(drop=True)
    if len(table) < data.min_rows:
        raise DataError(f"only {len(table)} rows (data.min_rows = {data.min_rows})")
    bounds = split_bounds(len(table), data.split)
    schema = {
        "source": origin,
        "task": "forecast",
        "target": data.target,
        "covariates": list(data.covariates or []),
        "features": list(data.covariates or []),
        "classes": None,
        "season_length": int(data.season_length),
        "rows": {s: hi - lo for s, (lo, hi) in bounds.items()},
        "bounds": {s: list(b) for s, b in bounds.items()},
    }
    return table, schema


def load_series(prepared: str | Path) -> tuple[pd.DataFrame, dict]:
    return pd.read_parquet(Path(prepared) / SERIES_FILE), read_json(Path(prepared) / "schema.json")


def window_origins(
    schema: dict, split: str, spec: ForecastSpec, stride: int, limit: int | None = None
) -> list[int]:
    """Forecast origins inside a split, `stride` apart; the last `limit` of them when given."""
    lo, hi = schema["bounds"][split]
    origins = list(range(max(lo, 1), hi - spec.prediction_length + 1, stride))
    return origins[-limit:] if limit else origins


def windows(
    table: pd.DataFrame, schema: dict, spec: ForecastSpec, origins: list[int]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The feed (forecast contract) and the truth [n, H] for forecast origins."""
    T, H = spec.context_length, spec.prediction_length
    target = table[schema["target"]].to_numpy(np.float32)
    covariates = table[list(spec.covariates)].to_numpy(np.float32) if spec.covariates else None
    context = np.full((len(origins), T), np.nan, dtype=np.float32)
    truth = np.empty((len(origins), H), dtype=np.float32)
    past = np.full((len(origins), T, len(spec.covariates)), np.nan, dtype=np.float32)
    future = np.full((len(origins), H, len(spec.covariates)), np.nan, dtype=np.float32)
    known = [i for i, c in enumerate(spec.covariates) if c in spec.future_covariates]  # the rest: NaN
    for row, t in enumerate(origins):
        start = max(0, t - T)
        context[row, T - (t - start) :] = target[start:t]
        truth[row] = target[t : t + H]
        if covariates is not None:
            past[row, T - (t - start) :] = covariates[start:t]
            for i in known:
                future[row, :, i] = covariates[t : t + H, i]
    feed = {CONTEXT: context}
    if spec.covariates:
        feed |= {PAST: past, FUTURE: future}
    return feed, truth
