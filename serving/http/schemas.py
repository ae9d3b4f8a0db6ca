"""Request and response bodies (OpenAPI documents them, with examples)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

# a number, or a string for a category column of a model of typed columns; null = missing (numbers:
# only for models that accept NaN)
Value = StrictFloat | StrictInt | StrictStr | None

EXAMPLE_ROW = {
    "demand_lag_1": 4.1,
    "demand_lag_2": 4.0,
    "temperature": 21.5,
    "workday": 1,
    "...": "every feature",
}


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"model": "xgboost", "features": EXAMPLE_ROW}]}
    )
    model: str | None = Field(None, description="registered model name; the configured default if omitted")
    features: dict[str, Value] = Field(description="every feature of the model, by name")


class BatchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"model": "xgboost", "rows": [EXAMPLE_ROW]}]}
    )
    model: str | None = None
    rows: list[dict[str, Value]] = Field(min_length=1, description="rows of features by name")


class Prediction(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"model": "xgboost", "version": "3", "prediction": 4.213},
                {"model": "churn", "version": "1", "label": 1, "probabilities": {"0": 0.27, "1": 0.73}},
            ]
        }
    )
    model: str
    version: str
    prediction: float | None = Field(None, description="regressors")
    label: int | str | None = Field(None, description="classifiers: predicted class")
    probabilities: dict[str, float] | None = Field(None, description="classifiers: probability per class")


class BatchPrediction(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"model": "xgboost", "version": "3", "predictions": [4.213, 4.198]}]}
    )
    model: str
    version: str
    predictions: list[float] | None = None
    labels: list[int | str] | None = None
    probabilities: list[dict[str, float]] | None = None


Covariate = list[StrictFloat | StrictInt | StrictStr | None]  # numbers, or strings (categorical)
# one variate [length], or [n_variates][length] (Chronos-2): checked value by value in
# serving/http/forecasting.py, so an error names the position (context[1], context[0][3])
Context = list[Any]


class SeriesItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    context: Context = Field(min_length=1, description="past values, oldest first; null = missing")
    past_covariates: dict[str, Covariate] | None = None
    future_covariates: dict[str, Covariate] | None = None


class ForecastRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model": "chronos2",
                    "context": [4.1, 4.3, None, 4.6, 4.4],
                    "horizon": 3,
                    "quantile_levels": [0.1, 0.5, 0.9],
                    "past_covariates": {"temperature": [20.1, 21.0, 21.4, 22.0, 21.8]},
                    "future_covariates": {"temperature": [21.5, 21.0, 20.2]},
                },
                {
                    "model": "chronos2",
                    "series": [
                        {"context": [[4.1, 4.3, 4.6], [1.0, 1.2, 1.1]]},
                        {"context": [[3.9, 4.0, 4.2], [0.9, 1.0, 1.3]]},
                    ],
                    "cross_learning": True,
                    "horizon": 2,
                },
            ]
        },
    )
    model: str | None = Field(None, description="registered model name; the configured default if omitted")
    context: Context | None = Field(
        None,
        min_length=1,
        description="one series' past values, oldest first (null = missing); for Chronos-2 also a "
        "list of variates [n_variates][length], forecast jointly",
    )
    series: list[SeriesItem] | None = Field(
        None, min_length=1, description="a batch of series instead of `context`: each answered in order"
    )
    cross_learning: bool = Field(
        False, description="Chronos-2: the batch's series inform each other (the library's cross_learning)"
    )
    horizon: StrictInt | None = Field(None, description="steps to forecast; the model's default if omitted")
    quantile_levels: list[StrictFloat | StrictInt] | None = Field(
        None, description="levels in the model's range; the model's own levels if omitted"
    )
    past_covariates: dict[str, Covariate] | None = Field(
        None, description="covariates aligned with `context`: numbers, or strings (categorical, Chronos-2)"
    )
    future_covariates: dict[str, Covariate] | None = Field(
        None, description="covariates known ahead, `horizon` values each"
    )


class SeriesForecast(BaseModel):
    quantiles: dict[str, list[float] | list[list[float]]]


class Forecast(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "chronos2",
                    "version": "2",
                    "horizon": 3,
                    "quantile_levels": [0.1, 0.5, 0.9],
                    "quantiles": {"0.1": [4.0, 3.9, 3.8], "0.5": [4.4, 4.4, 4.3], "0.9": [4.8, 4.9, 5.0]},
                }
            ]
        }
    )
    model: str
    version: str
    horizon: int
    quantile_levels: list[float]
    quantiles: dict[str, list[float] | list[list[float]]] | None = Field(
        None, description="one series: level -> `horizon` values (per variate for a multivariate series)"
    )
    cross_learning: bool | None = None
    forecasts: list[SeriesForecast] | None = Field(None, description="a batch: one per series, in order")


class ErrorBody(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"error": "features: missing 'temperature'"}]})
    error: str


ERRORS = {
    404: {"model": ErrorBody, "description": "unknown model"},
    413: {"model": ErrorBody, "description": "request body too large"},
    422: {"model": ErrorBody, "description": "input does not fit the model (the field is named)"},
    503: {"model": ErrorBody, "description": "model not loaded yet"},
}
