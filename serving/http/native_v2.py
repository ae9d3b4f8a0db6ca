"""KServe V2 for a version served natively (serving/http/native.py): its tensors by the same
convention as an ONNX version of the model would have (one tensor per column for a table of
numbers and categories, else one `input` [rows, features]), turned into feature rows for MLflow's
scoring server, and its answers as `prediction` (FP32 [rows, 1]) or `label` (BYTES [rows])."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from onnxship.contract import INPUT, LABEL, PREDICTION
from serving.http.columns import column_tensors, is_columns
from serving.http.values import InvalidInput


def native_tensor_specs(metadata: Mapping[str, Any]) -> tuple[list[dict], list[dict]]:
    """(inputs, outputs) as GET /v2/models/{name} lists them."""
    if is_columns(metadata):
        inputs = [
            {"name": c["name"], "datatype": "BYTES" if c["type"] == "string" else "FP32", "shape": [-1, 1]}
            for c in metadata["columns"]
        ]
    else:
        inputs = [{"name": INPUT, "datatype": "FP32", "shape": [-1, len(metadata["features"])]}]
    if metadata["task"] == "regression":
        return inputs, [{"name": PREDICTION, "datatype": "FP32", "shape": [-1, 1]}]
    return inputs, [{"name": LABEL, "datatype": "BYTES", "shape": [-1]}]


def native_rows(
    metadata: Mapping[str, Any],
    tensors: Sequence[Any],
    max_rows: int,
    values: Callable[[Any, int], np.ndarray],
) -> list[dict]:
    """The request's tensors as rows of features by name; `values(tensor, i)` reads a numeric
    tensor as V2's route does (null = missing)."""
    features = list(metadata["features"])
    if is_columns(metadata):
        feed = column_tensors(metadata, tensors, max_rows, allow_nan=True)
        columns = {name: feed[name].reshape(-1).tolist() for name in features}
        rows = len(next(iter(columns.values())))
        return [{name: _plain(columns[name][r]) for name in features} for r in range(rows)]
    if len(tensors) != 1 or tensors[0].name != INPUT:
        raise InvalidInput(f"inputs: expected one tensor named '{INPUT}'")
    shape = list(tensors[0].shape)
    if len(shape) != 2 or shape[1] != len(features) or not 1 <= shape[0] <= max_rows:
        raise InvalidInput(f"inputs[0].shape: [rows, {len(features)}], 1 to {max_rows} rows")
    matrix = values(tensors[0], 0)
    return [{name: _plain(v) for name, v in zip(features, row, strict=True)} for row in matrix.tolist()]


def _plain(value: Any) -> Any:
    """NaN (a missing number) as None, as the JSON rows of /predict carry it."""
    return None if isinstance(value, float) and value != value else value


def native_outputs(metadata: Mapping[str, Any], answer: dict) -> dict[str, np.ndarray]:
    if metadata["task"] == "regression":
        return {PREDICTION: np.asarray(answer["predictions"], dtype=np.float32).reshape(-1, 1)}
    return {LABEL: np.asarray([str(label) for label in answer["labels"]], dtype=object)}
