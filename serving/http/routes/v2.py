"""KServe V2 / Open Inference Protocol: /v2/health/*, /v2/models/{m}[/ready], /v2/models/{m}/infer.

Tensors go in as {"name": "input", "shape": [rows, features], "datatype": "FP32", "data": [...]}
(flat or nested, features in the model's order: GET /v2/models/{m} lists them), or for a model
of images as [rows, channels, height, width], or as raw bytes after a JSON header (the binary
tensor extension, serving.http.v2_binary); errors are {"error": "..."} like every other route,
and the request id is echoed. The body is JSON whatever its Content-Type says.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool

from onnxship.contract import CHRONOS2, CONTEXT, FUTURE, GROUP_IDS, SERIES, ForecastSpec
from onnxship.runtime import FLOAT32_MAX, InputError
from serving.http import v2_binary
from serving.http.columns import column_tensors, is_columns
from serving.http.deps import FollowerDep, SettingsDep, StoreDep, resolve_model
from serving.http.inference import run_finite
from serving.http.native import NativeUnavailable
from serving.http.native_v2 import native_outputs, native_rows, native_tensor_specs
from serving.http.routes.predict import rows_answer
from serving.http.schemas import ERRORS
from serving.http.store import LoadedModel
from serving.http.values import InvalidInput, float32_value, null_policy

router = APIRouter(prefix="/v2", tags=["kserve-v2"])
MAX_INPUTS = 1024
DATATYPES = ("FP32", "FP64", "INT32", "INT64")  # accepted; values are checked as float32 anyway
NUMPY_TO_V2 = {"float32": "FP32", "float64": "FP64", "int32": "INT32", "int64": "INT64"}


class InferTensor(BaseModel):
    name: str = Field(max_length=256)
    shape: list[int] = Field(min_length=1, max_length=5)  # rows and features, or images [N, C, H, W]
    datatype: str = Field(max_length=16)
    data: list[Any] | None = None  # absent when parameters.binary_data_size says where it is
    parameters: dict[str, Any] | None = None


class InferOutput(BaseModel):
    name: str = Field(max_length=256)
    parameters: dict[str, Any] | None = None


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
    id: str | None = Field(default=None, max_length=256)
    # a forecaster takes up to 3 tensors; a model of typed columns one per column
    inputs: list[InferTensor] = Field(min_length=1, max_length=MAX_INPUTS)
    outputs: list[InferOutput] | None = Field(default=None, max_length=8)
    parameters: dict[str, Any] | None = None

    @field_validator("id")
    @classmethod
    def _unicode(cls, value: str | None) -> str | None:
        """The id is echoed: it must be text an answer can carry (no lone surrogate)."""
        if value is not None:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("not valid Unicode text") from None
        return value


ORT_TO_V2 = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(string)": "BYTES",
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


def _binary_values(raw: np.ndarray, i: int, null: str | None) -> np.ndarray:
    """Raw tensor bytes as float64, held to the JSON route's rules (finite float32, NaN per `null`)."""
    values = raw.astype(np.float64)
    nan = np.isnan(values)
    if nan.any() and null is not None:
        raise HTTPException(422, f"inputs[{i}].data: NaN, {null}")
    if (np.abs(values[~nan]) > FLOAT32_MAX).any():
        raise HTTPException(422, f"inputs[{i}].data: not a finite float32 number (|x| <= {FLOAT32_MAX:.4g})")
    return values


def _values(tensor: InferTensor, i: int, null: str | None = None) -> np.ndarray:
    """The tensor's data as float64 in its declared shape, or 422 naming it."""
    if tensor.datatype not in DATATYPES:
        raise HTTPException(422, f"inputs[{i}].datatype: must be one of {', '.join(DATATYPES)}")
    if isinstance(tensor.data, np.ndarray):  # from the binary extension: shape already checked
        return _binary_values(tensor.data, i, null)
    if tensor.data is None:
        raise HTTPException(422, f"inputs[{i}].data: Field required (or parameters.binary_data_size)")
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
    """The forecaster's graph tensors by name (one model call: no rollout, GET /v2/models/{m}
    lists them); null/NaN = missing. Chronos-2 takes its own rows and group ids, answering as many
    steps as future_covariates is long, up to its native horizon."""
    if sorted(t.name for t in inputs) != sorted(spec.input_names):
        raise HTTPException(422, f"inputs: expected one tensor each named {', '.join(spec.input_names)}")
    rows = _rows(inputs[0], 0, max_rows)
    if spec.graph.layout == CHRONOS2:
        steps = next(t for t in inputs if t.name == FUTURE).shape[-1]
        if not 1 <= steps <= spec.graph.native_horizon:
            raise HTTPException(422, f"{FUTURE}: 1 to {spec.graph.native_horizon} steps in one call")
    feed = {}
    for i, tensor in enumerate(inputs):
        shape = forecast_shape(spec, tensor, rows)
        if tuple(tensor.shape) != shape:
            raise HTTPException(422, f"inputs[{i}].shape: expected {list(shape)}")
        values = _values(tensor, i)  # null = missing (NaN)
        if tensor.name == GROUP_IDS:
            if not np.isfinite(values).all() or (values != np.round(values)).any():
                raise HTTPException(422, f"inputs[{i}].data: group ids must be integers")
            feed[tensor.name] = values.astype(np.int64)
        else:
            feed[tensor.name] = values.astype(np.float32)
    return feed


def forecast_shape(spec: ForecastSpec, tensor: InferTensor, rows: int) -> tuple[int, ...]:
    """The shape a forecast input must have in a call of `rows` rows (the context length and,
    Chronos-2, the steps as given, within the model's bounds)."""
    if tensor.name == CONTEXT and spec.graph.layout != SERIES:
        length = tensor.shape[-1] if len(tensor.shape) == 2 else 0
        if not 1 <= length <= spec.context_length:
            raise HTTPException(422, f"{CONTEXT}: 1 to {spec.context_length} values per row")
        return (rows, length)
    if tensor.name == GROUP_IDS:
        return (rows,)
    if tensor.name == FUTURE and spec.graph.layout == CHRONOS2:
        return (rows, tensor.shape[-1])
    return spec.series_feed_shapes(rows)[tensor.name]


@router.get("/health/live")
async def live() -> dict:
    return {"live": True}


@router.get("/health/ready", responses={503: {"description": "a model is not loaded, or following stopped"}})
async def ready(store: StoreDep, follower: FollowerDep) -> JSONResponse:
    ok = store.ready() and follower.stopped_reason is None  # the same rule as /health/ready
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


@router.get("/models/{name}", responses=ERRORS)
async def model_metadata(name: str, store: StoreDep, settings: SettingsDep) -> dict:
    loaded = resolve_model(store, settings, name)
    if loaded.native is not None:  # MLflow's scoring server: the tensors it takes, by convention
        inputs, outputs = native_tensor_specs(loaded.metadata)
        platform = "mlflow_pyfunc"
    else:
        inputs = tensor_specs(loaded.model.session.get_inputs())
        outputs = tensor_specs(loaded.model.session.get_outputs())
        platform = "onnxruntime_onnx"
    return {
        "name": loaded.name,
        "versions": [loaded.version],
        "platform": platform,
        "inputs": inputs,
        "outputs": outputs,
        "parameters": {"features": loaded.features},
    }


@router.get("/models/{name}/ready", responses=ERRORS)
async def model_ready(name: str, store: StoreDep, settings: SettingsDep) -> dict:
    loaded = resolve_model(store, settings, name)
    return {"name": loaded.name, "ready": True}


INFER_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": InferRequest.model_json_schema()},
        "application/octet-stream": {
            "schema": {"type": "string", "format": "binary"},
            "description": "JSON header of Inference-Header-Content-Length bytes, then raw tensors",
        },
    },
}


def parse_infer(body: bytes, header_length: str | None) -> InferRequest:
    """The request, JSON or JSON + binary tensors, whatever the Content-Type; 422 naming the field."""
    try:
        data, binary = v2_binary.split_body(body, header_length)
    except v2_binary.BadBinary as err:
        raise HTTPException(422, str(err)) from None
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, nesting too deep
        raise HTTPException(422, "body: not valid JSON") from None
    if not isinstance(data, dict):
        raise HTTPException(422, "body: Input should be a JSON object")
    try:
        request = InferRequest.model_validate(data)
    except ValidationError as err:
        raise RequestValidationError(err.errors()) from None
    chunks = v2_binary.BinaryInputs(binary)
    try:
        for i, tensor in enumerate(request.inputs):
            size = (tensor.parameters or {}).get("binary_data_size")
            if size is not None:
                if tensor.data is not None:
                    raise v2_binary.BadBinary(f"inputs[{i}]: data and binary_data_size both given")
                tensor.data = chunks.take(i, size, tensor.datatype, tensor.shape)
        chunks.check_used()
    except v2_binary.BadBinary as err:
        raise HTTPException(422, str(err)) from None
    return request


def answer_of(
    loaded: LoadedModel, request: InferRequest, produced: dict[str, np.ndarray]
) -> tuple[bytes, dict]:
    """The V2 answer: the outputs asked for (all by default), each as JSON data or raw bytes
    (BYTES outputs, a native classifier's labels, always as JSON data)."""
    names = [o.name for o in request.outputs] if request.outputs else list(produced)
    unknown = [n for n in names if n not in produced]
    if unknown:
        raise HTTPException(
            422, f"outputs: the model has no output named like {len(unknown)} of those asked for"
        )
    entries, raws = [], []
    for name in names:
        value = produced[name]
        entry = {
            "name": name,
            "shape": list(value.shape),
            "datatype": "BYTES"
            if value.dtype.kind == "O"
            else NUMPY_TO_V2.get(value.dtype.name, value.dtype.name),
        }
        binary = value.dtype.kind != "O" and v2_binary.wants_binary(request.parameters, request.outputs, name)
        if binary:
            raw = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            raws.append(raw)
        else:
            entry["data"] = value.reshape(-1).tolist()
        entries.append(entry)
    answer = {
        "model_name": loaded.name,
        "model_version": loaded.version,
        "id": request.id,
        "outputs": entries,
    }
    return v2_binary.encode(answer, raws)


def run_infer(loaded: LoadedModel, request: InferRequest, max_rows: int) -> tuple[bytes, dict]:
    if loaded.native is not None:  # rows to MLflow's scoring server, its answers as tensors
        try:
            rows = native_rows(loaded.metadata, request.inputs, max_rows, lambda t, i: _values(t, i))
            return answer_of(loaded, request, native_outputs(loaded.metadata, rows_answer(loaded, rows)))
        except InvalidInput as err:
            raise HTTPException(422, str(err)) from None
        except NativeUnavailable as err:
            raise HTTPException(503, f"model '{loaded.name}' (native): {err}", {"Retry-After": "5"}) from None
    if loaded.forecast is not None:
        feed = forecast_feed(loaded.forecast, request.inputs, max_rows)
    elif is_columns(loaded.metadata):  # one tensor per column: BYTES categories, numbers
        try:
            feed = column_tensors(loaded.metadata, request.inputs, max_rows, loaded.model.allow_nan)
        except InvalidInput as err:
            raise HTTPException(422, str(err)) from None
    else:
        feed = {loaded.model.input_name: tabular_input(loaded, request.inputs, max_rows)}
    try:
        outputs = run_finite(loaded, feed, "inputs")
    except InvalidInput as err:
        raise HTTPException(422, str(err)) from None
    return answer_of(loaded, request, dict(zip(loaded.model.output_names, outputs, strict=True)))


@router.post("/models/{name}/infer", responses=ERRORS, openapi_extra={"requestBody": INFER_BODY})
async def infer(name: str, request: Request) -> Response:
    state = request.app.state
    loaded = resolve_model(state.store, state.settings, name)
    parsed = parse_infer(await request.body(), request.headers.get(v2_binary.HEADER_LENGTH))
    # a forecaster's tensors are one graph call: at most max_call_rows rows (group attention)
    rows = state.settings.max_call_rows if loaded.forecast is not None else state.settings.max_batch_rows
    body, headers = await run_in_threadpool(run_infer, loaded, parsed, rows)
    headers["X-Model-Version"] = f"{loaded.name}/{loaded.version}"
    return Response(body, headers=headers)
