"""KServe V2 / Open Inference Protocol: /v2/health/*, /v2/models/{m}[/ready], /v2/models/{m}/infer.

Tensors go in as {"name": "input", "shape": [rows, features], "datatype": "FP32", "data": [...]}
(flat or nested, features in the model's order: GET /v2/models/{m} lists them), or for a model
of images as [rows, channels, height, width]; errors are
{"error": "..."} like every other route, and the request id is echoed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from onnxship.runtime import InputError
from serving.http.deps import SettingsDep, StoreDep, resolve_model
from serving.http.forecasting import ForecastSpec
from serving.http.inference import run_finite
from serving.http.schemas import ERRORS
from serving.http.store import LoadedModel
from serving.http.values import InvalidInput, float32_value, null_policy

router = APIRouter(prefix="/v2", tags=["kserve-v2"])
DATATYPES = ("FP32", "FP64", "INT32", "INT64")  # accepted; values are checked as float32 anyway
NUMPY_TO_V2 = {"float32": "FP32", "float64": "FP64", "int32": "INT32", "int64": "INT64"}


class InferTensor(BaseModel):
    name: str
    shape: list[int] = Field(min_length=1, max_length=5)  # rows and features, or images [N, C, H, W]
    datatype: str
    data: list[Any]


class InferRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "42",
                    "inputs": [{"name": "input", "shape": [1, 19], "datatype": "FP32", "data": [[4.1] * 19]}],
                }
            ]
        }
    )
    id: str | None = None
    inputs: list[InferTensor] = Field(min_length=1, max_length=3)
    parameters: dict[str, Any] | None = None


ORT_TO_V2 = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
}


def tensor_specs(args: list) -> list[dict]:
    """The session's own inputs or outputs in V2 terms (symbolic dims -> -1)."""
    return [
        {
            "name": a.name,
            "datatype": ORT_TO_V2.get(a.type, a.type),
            "shape": [d if isinstance(d, int) else -1 for d in a.shape],
        }
        for a in args
    ]


def _leaves(data: list, field: str, null: str | None) -> list[float]:
    """Nested JSON lists -> flat floats, each checked like a /predict value (null per `null`)."""
    out: list[float] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(float32_value(item, field, null))
        else:
            stack.pop()
    return out


def _values(tensor: InferTensor, i: int, null: str | None = None) -> np.ndarray:
    """The tensor's data as float64 in its declared shape, or 422 naming it."""
    if tensor.datatype not in DATATYPES:
        raise HTTPException(422, f"inputs[{i}].datatype: must be one of {', '.join(DATATYPES)}")
    try:
        flat = np.asarray(_leaves(tensor.data, f"inputs[{i}].data", null), dtype=np.float64)
    except InvalidInput as err:
        raise HTTPException(422, str(err)) from None
    if any(d < 1 for d in tensor.shape) or flat.size != math.prod(tensor.shape):
        raise HTTPException(422, f"inputs[{i}].shape: does not match the number of values in data")
    return flat.reshape(tuple(tensor.shape))


def _rows(tensor: InferTensor, i: int, max_rows: int) -> int:
    rows = tensor.shape[0]
    if not 1 <= rows <= max_rows:
        raise HTTPException(422, f"inputs[{i}].shape: {rows} rows, 1 to {max_rows} per request")
    return rows


def tabular_input(loaded: LoadedModel, inputs: list[InferTensor], max_rows: int) -> np.ndarray:
    """One [rows, features] (or [rows, *input_shape]) tensor named like the graph's input."""
    name = loaded.model.input_name
    if len(inputs) != 1 or inputs[0].name != name:
        raise HTTPException(422, f"inputs: expected one tensor named '{name}'")
    _rows(inputs[0], 0, max_rows)
    try:
        return loaded.model.check(_values(inputs[0], 0, null_policy(loaded.model.allow_nan)))
    except InputError as err:
        raise HTTPException(422, f"inputs[0]: {err}") from None


def forecast_feed(spec: ForecastSpec, inputs: list[InferTensor], max_rows: int) -> dict[str, np.ndarray]:
    """The forecaster's tensors by name, shapes as the contract says; null/NaN = missing."""
    if sorted(t.name for t in inputs) != sorted(spec.input_names):
        raise HTTPException(422, f"inputs: expected one tensor each named {', '.join(spec.input_names)}")
    rows = _rows(inputs[0], 0, max_rows)
    shapes = spec.input_shapes(rows)
    feed = {}
    for i, tensor in enumerate(inputs):
        if tuple(tensor.shape) != shapes[tensor.name]:
            raise HTTPException(422, f"inputs[{i}].shape: expected {list(shapes[tensor.name])}")
        feed[tensor.name] = _values(tensor, i).astype(np.float32)  # null = missing (NaN)
    return feed


@router.get("/health/live")
async def live() -> dict:
    return {"live": True}


@router.get("/health/ready", responses={503: {"description": "some configured model is not loaded"}})
async def ready(store: StoreDep) -> JSONResponse:
    return JSONResponse({"ready": store.ready()}, status_code=200 if store.ready() else 503)


@router.get("/models/{name}", responses=ERRORS)
async def model_metadata(name: str, store: StoreDep, settings: SettingsDep) -> dict:
    loaded = resolve_model(store, settings, name)
    return {
        "name": loaded.name,
        "versions": [loaded.version],
        "platform": "onnxruntime_onnx",
        "inputs": tensor_specs(loaded.model.session.get_inputs()),
        "outputs": tensor_specs(loaded.model.session.get_outputs()),
        "parameters": {"features": loaded.features},
    }


@router.get("/models/{name}/ready", responses=ERRORS)
async def model_ready(name: str, store: StoreDep, settings: SettingsDep) -> dict:
    loaded = resolve_model(store, settings, name)
    return {"name": loaded.name, "ready": True}


@router.post("/models/{name}/infer", responses=ERRORS)
def infer(name: str, body: InferRequest, store: StoreDep, settings: SettingsDep) -> JSONResponse:
    loaded = resolve_model(store, settings, name)
    if loaded.forecast is not None:
        feed = forecast_feed(loaded.forecast, body.inputs, settings.max_batch_rows)
    else:
        feed = {loaded.model.input_name: tabular_input(loaded, body.inputs, settings.max_batch_rows)}
    try:
        outputs = run_finite(loaded, feed, "inputs")
    except InvalidInput as err:
        raise HTTPException(422, str(err)) from None
    answer = {
        "model_name": loaded.name,
        "model_version": loaded.version,
        "id": body.id,
        "outputs": [
            {
                "name": n,
                "shape": list(o.shape),
                "datatype": NUMPY_TO_V2.get(o.dtype.name, o.dtype.name),
                "data": o.reshape(-1).tolist(),
            }
            for n, o in zip(loaded.model.output_names, outputs, strict=True)
        ],
    }
    return JSONResponse(answer, headers={"X-Model-Version": f"{loaded.name}/{loaded.version}"})
