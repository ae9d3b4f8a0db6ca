"""POST /forecast: one series (with optional covariates) -> quantiles over the horizon."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response

from serving.deps import MetricsDep, SettingsDep, StoreDep, resolve_model
from serving.forecasting import answer, build_feed
from serving.routes.predict import json_response
from serving.schemas import ERRORS, Forecast, ForecastRequest
from serving.values import InvalidInput

router = APIRouter(tags=["forecast"])


@router.post("/forecast", response_model=Forecast, responses=ERRORS)
def forecast(body: ForecastRequest, store: StoreDep, settings: SettingsDep, metrics: MetricsDep) -> Response:
    """Quantile forecast of one series by a forecaster (see serving/forecasting.py for the contract).

    A context shorter than the model's is padded as missing; longer is refused (422), as is a
    horizon beyond the model's or a quantile level outside its range."""
    loaded = resolve_model(store, settings, body.model)
    spec = loaded.forecast
    if spec is None:
        raise HTTPException(422, f"model: '{loaded.name}' is a {loaded.task} model; use POST /predict")
    try:
        feed, horizon, levels = build_feed(
            spec,
            body.context,
            body.horizon,
            body.quantile_levels,
            body.past_covariates,
            body.future_covariates,
        )
        (quantiles,) = loaded.model.run_feed(feed)
        out = answer(spec, quantiles, horizon, levels)
    except InvalidInput as err:
        raise HTTPException(422, str(err)) from None
    metrics.requests.labels("/forecast", "200", loaded.name, loaded.version).inc()
    return json_response(loaded, {"model": loaded.name, "version": loaded.version, **out})
