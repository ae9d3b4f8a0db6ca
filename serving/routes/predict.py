"""POST /predict and /predict/batch."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response

from serving.deps import MetricsDep, SettingsDep, StoreDep, resolve_model
from serving.inference import InvalidInput, answers, to_matrix
from serving.schemas import ERRORS, BatchPrediction, BatchRequest, Prediction, PredictRequest

router = APIRouter(tags=["predict"])


def _stamp(response: Response, name: str, version: str) -> None:
    response.headers["X-Model-Version"] = f"{name}/{version}"


@router.post("/predict", response_model=Prediction, response_model_exclude_none=True, responses=ERRORS)
def predict(
    body: PredictRequest, response: Response, store: StoreDep, settings: SettingsDep, metrics: MetricsDep
) -> dict:
    """One row of features by name; the answer says which model version produced it."""
    loaded = resolve_model(store, settings, body.model)
    try:
        X = to_matrix(loaded, [body.features])
    except InvalidInput as err:
        raise HTTPException(422, str(err)) from None
    out = answers(loaded, X)
    _stamp(response, loaded.name, loaded.version)
    metrics.requests.labels("/predict", "200", loaded.name, loaded.version).inc()
    if "predictions" in out:
        return {"model": loaded.name, "version": loaded.version, "prediction": out["predictions"][0]}
    return {
        "model": loaded.name,
        "version": loaded.version,
        "label": out["labels"][0],
        "probabilities": out["probabilities"][0],
    }


@router.post(
    "/predict/batch", response_model=BatchPrediction, response_model_exclude_none=True, responses=ERRORS
)
def predict_batch(
    body: BatchRequest, response: Response, store: StoreDep, settings: SettingsDep, metrics: MetricsDep
) -> dict:
    """Up to `max_batch_rows` rows in one call."""
    if len(body.rows) > settings.max_batch_rows:
        raise HTTPException(
            422, f"rows: {len(body.rows)} rows, at most {settings.max_batch_rows} per request"
        )
    loaded = resolve_model(store, settings, body.model)
    try:
        X = to_matrix(loaded, body.rows)
    except InvalidInput as err:
        raise HTTPException(422, str(err)) from None
    _stamp(response, loaded.name, loaded.version)
    metrics.requests.labels("/predict/batch", "200", loaded.name, loaded.version).inc()
    return {"model": loaded.name, "version": loaded.version, **answers(loaded, X)}
