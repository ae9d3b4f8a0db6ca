"""KServe V2 / Open Inference Protocol: /v2/health/*, /v2/models/{m}[/ready], /v2/models/{m}/infer.

Tensors go in as {"name": "input", "shape": [rows, features], "datatype": "FP32", "data": [...]}
(flat or nested, features in the model's order: GET /v2/models/{m} lists them); errors are
{"error": "..."} like every other route, and the request id is echoed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from serving.deps import MetricsDep, SettingsDep, StoreDep, resolve_model
from serving.inference import InvalidInput, run_finite
from serving.runtime import InputError
from serving.schemas import ERRORS

router = APIRouter(prefix="/v2", tags=["kserve-v2"])
DATATYPES = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64}
NUMPY_TO_V2 = {"float32": "FP32", "float64": "FP64", "int32": "INT32", "int64": "INT64"}


class InferTensor(BaseModel):
    name: str
    shape: list[int] = Field(min_length=1, max_length=2)
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
    inputs: list[InferTensor] = Field(min_length=1, max_length=1)
    parameters: dict[str, Any] | None = None


def tensor_specs(specs: list[dict]) -> list[dict]:
    """Our metadata's I/O specs in V2 terms (symbolic dims -> -1)."""
    return [
        {
            "name": t["name"],
            "datatype": NUMPY_TO_V2.get(t["dtype"], t["dtype"]),
            "shape": [-1 if isinstance(d, str) else d for d in t["shape"]],
        }
        for t in specs
    ]


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
        "inputs": tensor_specs(loaded.metadata["inputs"]),
        "outputs": tensor_specs(loaded.metadata["outputs"]),
        "parameters": {"features": loaded.features},
    }


@router.get("/models/{name}/ready", responses=ERRORS)
async def model_ready(name: str, store: StoreDep, settings: SettingsDep) -> dict:
    loaded = resolve_model(store, settings, name)
    return {"name": loaded.name, "ready": True}


@router.post("/models/{name}/infer", responses=ERRORS)
def infer(
    name: str, body: InferRequest, store: StoreDep, settings: SettingsDep, metrics: MetricsDep
) -> JSONResponse:
    loaded = resolve_model(store, settings, name)
    tensor = body.inputs[0]
    if tensor.name != loaded.model.input_name:
        raise HTTPException(
            422, f"inputs[0].name: '{tensor.name}', the model's input is '{loaded.model.input_name}'"
        )
    if tensor.datatype not in DATATYPES:
        raise HTTPException(
            422, f"inputs[0].datatype: '{tensor.datatype}' (accepted: {', '.join(DATATYPES)})"
        )
    rows = tensor.shape[0]
    if rows > settings.max_batch_rows:
        raise HTTPException(
            422, f"inputs[0].shape: {rows} rows, at most {settings.max_batch_rows} per request"
        )
    try:
        flat = np.asarray(tensor.data, dtype=np.float64).reshape(-1)
        X = loaded.model.check(flat.reshape(tuple(tensor.shape)))
    except (ValueError, TypeError, InputError) as err:
        raise HTTPException(422, f"inputs[0]: {str(err).splitlines()[0][:200]}") from None
    try:
        outputs = run_finite(loaded, X, "inputs[0]")
    except InvalidInput as err:
        raise HTTPException(422, str(err)) from None
    metrics.requests.labels("/v2/models/{name}/infer", "200", loaded.name, loaded.version).inc()
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
