"""POST /forecast: one series or a batch (with optional covariates) -> quantiles over the horizon."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Request, Response

from serving.http.deps import SettingsDep, StoreDep, resolve_model
from serving.http.forecasting import forecast_answer
from serving.http.routes.predict import json_response
from serving.http.schemas import ERRORS, Forecast, ForecastRequest
from serving.http.values import InvalidInput

router = APIRouter(tags=["forecast"])


@router.post("/forecast", response_model=Forecast, responses=ERRORS)
def forecast(body: ForecastRequest, request: Request, store: StoreDep, settings: SettingsDep) -> Response:
    """Quantile forecast by a forecaster, as its library's `predict` answers (see
    serving/http/forecasting.py for the contract).

    A context shorter than the model's is padded as missing; longer is refused (422), as is a
    horizon beyond the model's max_horizon or a quantile level outside its range."""
    loaded = resolve_model(store, settings, body.model)
    spec = loaded.forecast
    if spec is None:
        raise HTTPException(422, f"model: '{loaded.name}' is a {loaded.task} model; use POST /predict")
    asked = body.model_dump()
    started = time.perf_counter()
    try:
        out = forecast_answer(loaded, asked, settings)
    except InvalidInput as err:
        raise HTTPException(422, str(err)) from None
    shadow = request.app.state.shadow
    if shadow is not None:
        shadow.offer(loaded, "forecast", asked, out, time.perf_counter() - started)
    return json_response(loaded, {"model": loaded.name, "version": loaded.version, **out})
