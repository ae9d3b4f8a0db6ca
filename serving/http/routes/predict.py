"""POST /predict and /predict/batch."""

from __future__ import annotations

import time

import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from serving.http.deps import SettingsDep, StoreDep, resolve_model
from serving.http.inference import InvalidInput, answers, check_names, parse_predict, to_feed
from serving.http.native import NativeUnavailable, native_answers, native_frame
from serving.http.schemas import ERRORS, BatchPrediction, BatchRequest, Prediction, PredictRequest
from serving.http.store import LoadedModel

router = APIRouter(tags=["predict"])
NATIVE_CALL_S = 30.0  # a natively served model's call, through its scoring server
PREDICT_BODY = {
    "required": True,
    "content": {"application/json": {"schema": PredictRequest.model_json_schema()}},
}


def rows_answer(loaded: LoadedModel, rows: list) -> dict:
    """Rows run through a model of feature rows: InvalidInput names what is wrong."""
    if loaded.native is not None:  # MLflow's scoring server, in its own process
        check_names(loaded, rows)
        predictions = loaded.native.invoke(native_frame(loaded.metadata, rows), NATIVE_CALL_S)
        return native_answers(loaded.metadata, predictions)
    if loaded.forecast is not None:
        raise InvalidInput(f"model: '{loaded.name}' is a forecaster; use POST /forecast")
    if len(loaded.model.input_shape) != 1:  # tensors (e.g. images), not feature rows
        infer = f"/v2/models/{loaded.name}/infer"
        raise InvalidInput(f"model: '{loaded.name}' takes tensors, not feature rows; use POST {infer}")
    return answers(loaded, to_feed(loaded, rows))


def _answer(loaded: LoadedModel, rows: list) -> dict:
    """Run rows through the model; any input problem becomes a 422 naming the field."""
    try:
        return rows_answer(loaded, rows)
    except InvalidInput as err:
        raise HTTPException(422, str(err)) from None
    except NativeUnavailable as err:
        raise HTTPException(
            503, f"model '{loaded.name}' (native): {err}", headers={"Retry-After": "5"}
        ) from None


def json_response(loaded: LoadedModel, payload: dict) -> Response:
    # serialised here with orjson: skips re-validating our own output against the response model
    return Response(
        orjson.dumps(payload),
        media_type="application/json",
        headers={"X-Model-Version": f"{loaded.name}/{loaded.version}"},
    )


@router.post(
    "/predict",
    response_model=Prediction,
    response_model_exclude_none=True,
    responses=ERRORS,
    openapi_extra={"requestBody": PREDICT_BODY},
)
async def predict(request: Request) -> Response:
    """One row of features by name; the answer says which model version produced it.

    The hot path: the body is parsed with orjson and checked against the model's feature list
    directly (no pydantic model, no dependency injection), and it runs on the event loop: one row
    takes microseconds in ONNX Runtime, less than a thread hop. A model measured slow at warm-up
    (LoadedModel.slow) runs in the thread pool instead, so it never holds other requests up."""
    state = request.app.state
    try:
        model, features = parse_predict(await request.body())
    except InvalidInput as err:
        raise HTTPException(422, str(err)) from None
    loaded = resolve_model(state.store, state.settings, model)
    started = time.perf_counter()
    out = await run_in_threadpool(_answer, loaded, [features]) if loaded.slow else _answer(loaded, [features])
    if state.shadow is not None:
        state.shadow.offer(loaded, "rows", [features], out, time.perf_counter() - started)
    head = {"model": loaded.name, "version": loaded.version}
    if "predictions" in out:
        return json_response(loaded, {**head, "prediction": out["predictions"][0]})
    probabilities = (
        {"probabilities": out["probabilities"][0]} if "probabilities" in out else {}
    )  # native: none
    return json_response(loaded, {**head, "label": out["labels"][0], **probabilities})


@router.post(
    "/predict/batch", response_model=BatchPrediction, response_model_exclude_none=True, responses=ERRORS
)
def predict_batch(body: BatchRequest, request: Request, store: StoreDep, settings: SettingsDep) -> Response:
    """Up to `max_batch_rows` rows in one call (runs in the thread pool: big batches take milliseconds)."""
    if len(body.rows) > settings.max_batch_rows:
        raise HTTPException(
            422, f"rows: {len(body.rows)} rows, at most {settings.max_batch_rows} per request"
        )
    loaded = resolve_model(store, settings, body.model)
    started = time.perf_counter()
    out = _answer(loaded, body.rows)
    shadow = request.app.state.shadow
    if shadow is not None:
        shadow.offer(loaded, "rows", body.rows, out, time.perf_counter() - started)
    return json_response(loaded, {"model": loaded.name, "version": loaded.version, **out})
