"""Tables of typed columns: numbers and categories (strings), the way real tabular models read
them. A graph of such a model takes each column as its own named input ([batch, 1], float32 or
string); the schema records each column's type and, for categories, the values seen in training.

    prepared   data/prepared/<dataset>/{train,val,test}.parquet: the columns as they came
               (numbers float32, strings with None for missing) and the target
    schema     "layout": "columns", "columns": [{"name", "type": "float32"|"string", "categories"}]

A missing string travels as "" inside the graph (ONNX string tensors have no null): validate's
`missing_strings` set proves that the graph answers "" as the native model answers a missing
value, or the model is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from onnxship.data.splits import split_bounds
from onnxship.errors import ConfigError, DataError
from onnxship.io import read_json

LAYOUT = "columns"
NUMBER, STRING = "float32", "string"
MISSING_STRING = ""  # a missing category inside the graph
# a column name becomes a graph input name and a JSON key: plain names only
COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,99}$")
MAX_CATEGORIES = 10_000  # per column, recorded in the schema (a free-text column is not a category)


def is_columns(schema_or_meta: Mapping[str, Any]) -> bool:
    return schema_or_meta.get("layout") == LAYOUT


def column_types(table: pd.DataFrame, features: list[str], categorical: Sequence[str] | None) -> list[dict]:
    """Each feature's type: a category when listed in `categorical` (null: every non-numeric
    column), else a number. Names must be plain (they become graph inputs and JSON keys)."""
    for name in features:
        if not COLUMN_NAME.match(str(name)):
            raise DataError(
                f"feature column {str(name)[:40]!r}: use letters, digits, '_', '.', '-' in names "
                "(they become the graph's input names); rename the column"
            )
    if categorical is not None:
        unknown = [c for c in categorical if c not in features]
        if unknown:
            raise DataError(f"categorical column(s) not among the features: {', '.join(unknown)}")
    out = []
    for name in features:
        col = table[name]
        numeric = pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)
        category = name in categorical if categorical is not None else not numeric
        out.append({"name": name, "type": STRING if category else NUMBER})
    return out


def typed_frame(table: pd.DataFrame, columns: list[dict]) -> pd.DataFrame:
    """The feature columns with their types applied: numbers as float32 (NaN missing), categories
    as Python strings (None missing). A column that is neither stops with a DataError naming it.

    Numbers are float32 because the graph takes float32: trained on float32 values, the native
    model sees exactly what the graph sees (LightGBM, trained on float64 decimals, splits between
    a value and its float32 rounding on some rows: measured on mlc_churn, 0.8 % of test rows)."""
    out = {}
    for col in columns:
        name, values = col["name"], table[col["name"]]
        if col["type"] == NUMBER:
            if pd.api.types.is_bool_dtype(values):
                values = values.astype(float)
            if not pd.api.types.is_numeric_dtype(values):
                raise DataError(
                    f"feature '{name}' is not numeric (dtype {values.dtype}); list it as categorical"
                )
            if values.isna().all():
                raise DataError(f"feature '{name}' is entirely missing")
            if (np.abs(values[values.notna()].astype(np.float64)) > np.finfo(np.float32).max).any():
                raise DataError(f"feature '{name}' has values beyond the float32 range the graph takes")
            out[name] = values.astype(np.float32)
        else:
            out[name] = as_strings(values)
    return pd.DataFrame(out, index=table.index)


def missing(value: Any) -> bool:
    """None, NaN or pandas' NA: a missing value whatever the column's dtype made of it."""
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def as_strings(values: pd.Series) -> pd.Series:
    """A column of categories as Python strings, None where missing (an object column: pandas'
    own string dtypes would turn None back into NaN)."""
    return pd.Series([None if missing(v) else str(v) for v in values], index=values.index, dtype=object)


def record_categories(frame: pd.DataFrame, columns: list[dict]) -> list[dict]:
    """The columns with, for each category, the values the train rows hold (sorted)."""
    out = []
    for col in columns:
        if col["type"] == STRING:
            seen = sorted({v for v in frame[col["name"]] if not missing(v)})
            if len(seen) > MAX_CATEGORIES:
                raise DataError(
                    f"feature '{col['name']}' has {len(seen)} distinct values (> {MAX_CATEGORIES}): "
                    "free text, not a category; leave it out with features"
                )
            col = col | {"categories": seen}
        out.append(col)
    return out


def shuffled(table: pd.DataFrame, split: DictConfig) -> pd.DataFrame:
    """Rows in a seeded random order when the split says `shuffle` (rows not in time order, e.g.
    diamonds sorted by price), else as they are."""
    if not split.get("shuffle"):
        return table
    order = np.random.default_rng(int(split.get("seed", 0))).permutation(len(table))
    return table.iloc[order].reset_index(drop=True)


def prepare_columns(raw: pd.DataFrame, data: DictConfig, origin: str) -> tuple[dict[str, pd.DataFrame], dict]:
    """A `layout: columns` dataset: its splits (typed feature columns + target) and schema."""
    from onnxship.data.tables import build_table, encode_target, feature_columns

    table = build_table(raw, data)
    features = feature_columns(table, data)
    categorical = data.get("categorical")
    columns = column_types(table, features, list(categorical) if categorical is not None else None)
    X = typed_frame(table, columns)
    y = table[data.target]
    keep = y.notna().to_numpy()
    X, y = X[keep].reset_index(drop=True), y[keep].reset_index(drop=True)
    y, classes = encode_target(y, data.task)
    if len(X) < data.min_rows:
        raise DataError(f"only {len(X)} usable rows (min_rows = {data.min_rows})")
    both = shuffled(X.assign(**{data.target: y.to_numpy()}), data.split)
    bounds = split_bounds(len(both), data.split)
    lo, hi = bounds["train"]
    columns = record_categories(both.iloc[lo:hi], columns)
    frames = {split: both.iloc[a:b].reset_index(drop=True) for split, (a, b) in bounds.items()}
    schema = {
        "layout": LAYOUT,
        "source": origin,
        "task": data.task,
        "target": data.target,
        "features": features,
        "columns": columns,
        "classes": classes,
        "rows": {s: b - a for s, (a, b) in bounds.items()},
        "dropped_rows_missing_target": int((~keep).sum()),
        "missing_share_by_feature": {f: float(X[f].isna().mean()) for f in features if X[f].isna().any()},
    }
    return frames, schema


def load_columns(prepared: str | Path, split: str) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """Feature columns (float32 numbers, strings with None missing), target and schema of a split."""
    schema = read_json(Path(prepared) / "schema.json")
    frame = pd.read_parquet(Path(prepared) / f"{split}.parquet")
    X = frame[schema["features"]].copy()
    for col in schema["columns"]:
        if col["type"] == STRING:
            X[col["name"]] = as_strings(X[col["name"]])
    return X, frame[schema["target"]].to_numpy(), schema


def graph_feed(frame: pd.DataFrame, columns: list[dict]) -> dict[str, np.ndarray]:
    """The graph's inputs for these rows: each column [rows, 1], float32 or string (None -> "")."""
    feed = {}
    for col in columns:
        values = frame[col["name"]]
        if col["type"] == NUMBER:
            feed[col["name"]] = values.to_numpy(np.float32).reshape(-1, 1)
        else:
            strings = [MISSING_STRING if missing(v) else str(v) for v in values]
            feed[col["name"]] = np.asarray(strings, dtype=object).reshape(-1, 1)
    return feed


def frame_of(feed: Mapping[str, np.ndarray], columns: list[dict]) -> pd.DataFrame:
    """The native model's view of a graph feed: one DataFrame column per input."""
    return pd.DataFrame(
        {
            c["name"]: np.asarray(feed[c["name"]])
            .reshape(-1)
            .astype(object if c["type"] == STRING else np.float32)
            for c in columns
        }
    )


def storable(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A feed np.savez can write without pickling: strings as fixed-width unicode."""
    return {k: v.astype(str) if v.dtype == object else v for k, v in feed.items()}


def as_served(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A stored feed (storable) with its strings as serving builds them (object arrays,
    graph_feed): ONNX Runtime would otherwise convert fixed-width unicode inside every call."""
    return {k: v.astype(object) if v.dtype.kind == "U" else v for k, v in feed.items()}


def missing_as_empty(frame: pd.DataFrame, columns: list[dict]) -> pd.DataFrame:
    """The table with each missing category written as "" - the graph's missing value - for
    libraries that learn a missing category as a value of its own (scikit-learn's OneHotEncoder
    makes None a category; CatBoost refuses None): trained and called this way, they answer a
    missing category as their graph does."""
    out = frame.copy()
    for col in columns:
        if col["type"] == STRING:
            out[col["name"]] = pd.Series(
                [MISSING_STRING if missing(v) else v for v in frame[col["name"]]],
                index=frame.index,
                dtype=object,
            )
    return out


def categories_of(columns: list[dict]) -> dict[str, list[str]]:
    return {c["name"]: c["categories"] for c in columns if c["type"] == STRING}


def require_columns(meta: Mapping[str, Any]) -> list[dict]:
    if not is_columns(meta):
        raise ConfigError(f"model {meta.get('model')}: not a model of typed columns")
    return list(meta["columns"])
