"""Request and response bodies (OpenAPI documents them, with examples)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

Value = StrictFloat | StrictInt | None  # null = missing (only for models that accept NaN)

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
    model: str
    version: str
    prediction: float | None = Field(None, description="regressors")
    label: int | str | None = Field(None, description="classifiers: predicted class")
    probabilities: dict[str, float] | None = Field(None, description="classifiers: probability per class")


class BatchPrediction(BaseModel):
    model: str
    version: str
    predictions: list[float] | None = None
    labels: list[int | str] | None = None
    probabilities: list[dict[str, float]] | None = None


class ErrorBody(BaseModel):
    error: str


ERRORS = {
    404: {"model": ErrorBody, "description": "unknown model"},
    413: {"model": ErrorBody, "description": "request body too large"},
    422: {"model": ErrorBody, "description": "input does not fit the model (the field is named)"},
    503: {"model": ErrorBody, "description": "model not loaded yet"},
}
