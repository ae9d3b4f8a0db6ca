"""Requests to a model of typed columns (onnxship.data.columns): each column its own graph input
[rows, 1], float32 numbers and string categories. A category may be any string (an unknown one is
answered as the native model answers it: validate proved that on its hostile sets); null is a
missing value, "" inside the graph. A number where a category belongs, or a string where a number
belongs, is a 422 naming the column, never repeating the value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from serving.http.values import InvalidInput, float32_value, null_policy

MISSING = ""  # a missing category, as the graph takes it (onnxship.data.columns.MISSING_STRING)


def is_columns(metadata: Mapping[str, Any]) -> bool:
    return metadata.get("layout") == "columns"


NULL_REFUSED = (
    "null, and this model does not answer a missing category as its native model does "
    "(validate's missing_categories set); send a category"
)


def takes_null_categories(metadata: Mapping[str, Any]) -> bool:
    """Whether validate found the graph answers a missing category as native answers None."""
    return bool(metadata.get("accepts_missing_categories", False))


def category_value(value: object, field: str, null_ok: bool = True) -> str:
    """One category: a string, or null (missing) where the model answers it like native."""
    if value is None:
        if not null_ok:
            raise InvalidInput(f"{field}: {NULL_REFUSED}")
        return MISSING
    if not isinstance(value, str):
        raise InvalidInput(f"{field}: Input should be a string (a category) or null")
    try:
        value.encode("utf-8")  # the runtime takes UTF-8: a lone surrogate cannot be one
    except UnicodeEncodeError:
        raise InvalidInput(f"{field}: not valid Unicode text") from None
    return value


def column_feed(metadata: Mapping[str, Any], allow_nan: bool, rows: Sequence[Mapping[str, object]]) -> dict:
    """The graph's inputs for rows already checked to hold exactly the model's features."""
    null, null_ok = null_policy(allow_nan), takes_null_categories(metadata)
    feed: dict[str, np.ndarray] = {}
    many = len(rows) > 1
    for col in metadata["columns"]:
        name = col["name"]
        fields = [f"rows[{r}].features.{name}" if many else f"features.{name}" for r in range(len(rows))]
        if col["type"] == "string":
            values = [category_value(row[name], f, null_ok) for row, f in zip(rows, fields, strict=True)]
            feed[name] = np.asarray(values, dtype=object).reshape(-1, 1)
        else:
            numbers = [float32_value(row[name], f, null) for row, f in zip(rows, fields, strict=True)]
            feed[name] = np.asarray(numbers, dtype=np.float32).reshape(-1, 1)
    return feed


def warmup_feed(metadata: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """One row: zeros and missing categories."""
    return {
        c["name"]: np.asarray([[MISSING]], dtype=object)
        if c["type"] == "string"
        else np.zeros((1, 1), dtype=np.float32)
        for c in metadata["columns"]
    }


def column_tensors(
    metadata: Mapping[str, Any], tensors: Sequence[Any], max_rows: int, allow_nan: bool
) -> dict:
    """KServe V2 tensors, one per column by name: BYTES (strings; null = missing) for a category,
    FP32/FP64/INT32/INT64 for a number, each [rows] or [rows, 1]; InvalidInput naming the tensor."""
    columns = {c["name"]: c for c in metadata["columns"]}
    names = [t.name for t in tensors]
    if sorted(names) != sorted(columns):
        raise InvalidInput(
            f"inputs: one tensor per column ({len(columns)}), named as the columns "
            f"(GET /v2/models/{metadata['model']} lists them)"
        )
    rows = None
    feed: dict[str, np.ndarray] = {}
    null, null_ok = null_policy(allow_nan), takes_null_categories(metadata)
    for i, tensor in enumerate(tensors):
        col = columns[tensor.name]
        shape = list(tensor.shape)
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1) or not 1 <= shape[0] <= max_rows:
            raise InvalidInput(f"inputs[{i}].shape: [rows] or [rows, 1], 1 to {max_rows} rows")
        if rows is None:
            rows = shape[0]
        elif shape[0] != rows:
            raise InvalidInput(f"inputs[{i}].shape: {shape[0]} rows, the first tensor has {rows}")
        values = tensor_values(tensor, i, rows)
        if col["type"] == "string":
            if tensor.datatype != "BYTES":
                raise InvalidInput(f"inputs[{i}].datatype: a category column takes BYTES")
            feed[tensor.name] = np.asarray(
                [category_value(v, f"inputs[{i}].data", null_ok) for v in values], dtype=object
            ).reshape(-1, 1)
        else:
            if tensor.datatype not in ("FP32", "FP64", "INT32", "INT64"):
                raise InvalidInput(f"inputs[{i}].datatype: a number column takes FP32, FP64, INT32 or INT64")
            numbers = [float32_value(v, f"inputs[{i}].data", null) for v in values]
            feed[tensor.name] = np.asarray(numbers, dtype=np.float32).reshape(-1, 1)
    return feed


def tensor_values(tensor: Any, i: int, rows: int) -> list:
    """The tensor's values, flat: JSON data (flat or nested one level), or decoded binary data."""
    data = tensor.data
    if data is None:
        raise InvalidInput(f"inputs[{i}].data: Field required (or parameters.binary_data_size)")
    if isinstance(data, np.ndarray):  # the binary extension, already decoded (strings as objects)
        values = data.reshape(-1).tolist()
    else:
        values = [v for item in data for v in (item if isinstance(item, list) else [item])]
        if any(isinstance(v, list) for v in values):
            raise InvalidInput(f"inputs[{i}].data: nests deeper than [rows, 1]")
    if len(values) != rows:
        raise InvalidInput(f"inputs[{i}].shape: does not match the number of values in data")
    return values
