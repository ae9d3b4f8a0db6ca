"""POST /forecast: one series or a batch (with optional covariates) -> quantiles over the horizon."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response

from serving.http.deps import SettingsDep, StoreDep, resolve_model
from serving.http.forecasting import answer, parse, run
from serving.http.routes.predict import json_response
from serving.http.schemas import ERRORS, Forecast, ForecastRequest
from serving.http.values import InvalidInput

router = APIRouter(tags=["forecast"])


@router.post("/forecast", response_model=Forecast, responses=ERRORS)
def forecast(body: ForecastRequest, store: StoreDep, settings: SettingsDep) -> Response:
    """Quantile forecast by a forecaster, as its library's `predict` answers (see
    serving/http/forecasting.py for the contract).

    A context shorter than the model's is padded as missing; longer is refused (422), as is a
    horizon beyond the model's max_horizon or a quantile level outside its range."""
    loaded = resolve_model(store, settings, body.model)
    spec = loaded.forecast
    if spec is None:
        raise HTTPException(422, f"model: '{loaded.name}' is a {loaded.task} model; use POST /predict")
    try:
        ask = parse(spec, body.model_dump(), settings.max_batch_rows, settings.max_answer_values)
        call = lambda feed: loaded.model.run_feed(feed)[0]  # noqa: E731
        out = answer(spec, ask, run(spec, call, ask, settings.max_call_rows))
    except InvalidInput as err:
        raise HTTPException(422, str(err)) from None
    return json_response(loaded, {"model": loaded.name, "version": loaded.version, **out})
