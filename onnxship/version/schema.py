"""The schema of a registered version's onnxship.json, with bounds, checked before anything is served.

The manifest (onnxship.version.manifest) proves the file is the one the pipeline wrote; this proves it is
a file serving can act on without surprises: names and counts within bounds, thread counts a
process can afford, the feature count matching the input shape, classes and forecast settings
consistent with the task. The package stage checks its own output against it, the watcher and
`promote` check every version against it. Pydantic only (no numpy, no onnx).
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

MAX_THREADS = 256  # a session setting above this is a broken or hostile file, not a big machine
MAX_FEATURES = 65_536
MAX_CLASSES = 10_000
MAX_CONTEXT = 100_000
MAX_HORIZON = 10_000
MAX_CATEGORIES = 10_000  # known values of one categorical column
MAX_METADATA_BYTES = 16 << 20

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Threads = Annotated[int, Field(ge=1, le=MAX_THREADS, strict=True)]
Dim = Annotated[int | str | None, Field(union_mode="left_to_right")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SessionSettings(_Strict):
    providers: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{1,40}ExecutionProvider$")]] = Field(
        min_length=1, max_length=8
    )
    intra_op_threads: Threads
    inter_op_threads: Threads
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    allow_spinning: bool = False
    execution_mode: Literal["sequential", "parallel"] = "sequential"
    extra: dict[Name, str | int | float | bool] = Field(default_factory=dict, max_length=32)


class Covariate(_Strict):
    name: Name
    future: bool = False


class ForecastGraphBlock(_Strict):
    """How the graph is called and rolled forward (onnxship.contract.ForecastGraph)."""

    layout: Literal["series", "chronos2", "chronos_bolt"]
    native_horizon: int = Field(ge=1, le=MAX_HORIZON)
    patch_size: int = Field(1, ge=1, le=MAX_HORIZON)
    model_context_length: int | None = Field(None, ge=1, le=MAX_CONTEXT)
    unrolled_quantiles: list[float] = Field(default_factory=list, max_length=99)
    unroll_weights: list[float] = Field(default_factory=list, max_length=99 * 99)


class ForecastBlock(_Strict):
    context_length: int = Field(ge=1, le=MAX_CONTEXT)
    prediction_length: int = Field(ge=1, le=MAX_HORIZON)
    max_horizon: int | None = Field(None, ge=1, le=MAX_HORIZON)
    quantile_levels: list[float] = Field(min_length=1, max_length=99)
    covariates: list[Covariate] = Field(default_factory=list, max_length=256)
    graph: ForecastGraphBlock | None = None

    @model_validator(mode="after")
    def _levels(self) -> ForecastBlock:
        levels = self.quantile_levels
        if levels != sorted(set(levels)) or not all(0 < q < 1 for q in levels):
            raise ValueError("quantile_levels must be increasing, inside (0, 1)")
        names = [c.name for c in self.covariates]
        if len(set(names)) != len(names):
            raise ValueError("covariate names must be unique")
        self._graph_fits(levels)
        return self

    def _graph_fits(self, levels: list[float]) -> None:
        """The rules onnxship.contract.ForecastSpec reads a forecast block by (kept in step with
        it: tests/test_contract.py feeds both the same blocks)."""
        graph = self.graph
        if graph is not None and (
            graph.native_horizon % graph.patch_size
            or (graph.model_context_length or self.context_length) < self.context_length
        ):
            raise ValueError(
                "graph: native_horizon must be whole patches, model_context_length >= context_length"
            )
        if graph is None or graph.layout == "series":
            if graph is not None and graph.native_horizon != self.prediction_length:
                raise ValueError("graph: a 'series' graph answers prediction_length steps")
            if self.max_horizon not in (None, self.prediction_length):
                raise ValueError("max_horizon: a graph of layout 'series' answers prediction_length steps")
            return
        if self.max_horizon is None or self.max_horizon < self.prediction_length:
            raise ValueError("max_horizon: a rolling-forward graph needs one, at least prediction_length")
        if self.prediction_length > graph.native_horizon:
            raise ValueError("prediction_length: at most one call's horizon (graph.native_horizon)")
        if graph.layout == "chronos_bolt" and self.covariates:
            raise ValueError("covariates: a chronos_bolt graph takes none")
        if graph.layout == "chronos2" and (
            not graph.unrolled_quantiles
            or not set(graph.unrolled_quantiles) <= set(levels)
            or len(graph.unroll_weights) != len(graph.unrolled_quantiles) * len(levels)
            or min(graph.unroll_weights) <= 0
        ):
            raise ValueError(
                "graph: a chronos2 graph needs unrolled_quantiles among its levels, positive unroll_weights"
            )


class Column(_Strict):
    """One typed column of a model of typed columns (onnxship.data.columns)."""

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]{0,99}$")]
    type: Literal["float32", "string"]
    categories: list[Annotated[str, StringConstraints(max_length=1000)]] | None = Field(
        None, max_length=MAX_CATEGORIES
    )


class TensorIO(_Strict):
    name: Name
    dtype: Name
    shape: list[Dim] = Field(max_length=8)


class VersionMetadata(BaseModel):
    """What serving reads from onnxship.json. Fields serving does not read (regimes, tolerance …)
    are allowed and passed through as they are: they are shown, never acted on."""

    model_config = ConfigDict(extra="allow")

    model: Name
    variant: Name
    task: Literal["regression", "classification", "forecast"]
    family: Name | None = None
    features: list[Name] = Field(max_length=MAX_FEATURES)
    input_shape: list[Annotated[int, Field(ge=1, le=MAX_CONTEXT, strict=True)]] | None = Field(
        None, min_length=1, max_length=4
    )
    classes: list[Name | int] | None = Field(None, max_length=MAX_CLASSES)
    layout: Literal["columns"] | None = None
    columns: list[Column] | None = Field(None, max_length=MAX_FEATURES)
    forecast: ForecastBlock | None = None
    inputs: list[TensorIO] | None = Field(None, max_length=MAX_FEATURES)
    outputs: list[TensorIO] | None = Field(None, max_length=8)
    inference_settings: SessionSettings
    accepts_nan: bool = False
    accepts_missing_categories: bool = False  # typed columns: a null category is served
    gates: dict[Name, bool] = Field(min_length=1, max_length=32)
    sha256: Sha256
    bytes: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> VersionMetadata:
        if len(set(self.features)) != len(self.features):
            raise ValueError("features: names must be unique")
        if self.task == "forecast":
            if self.forecast is None:
                raise ValueError("forecast: a forecaster needs its forecast block")
            return self
        if self.layout == "columns":
            self._columns_fit()
        elif self.columns is not None:
            raise ValueError("columns: only a model of layout 'columns' has them")
        shape = self.input_shape or self._declared_example_shape() or [len(self.features)]
        if not self.features or math.prod(shape) != len(self.features):
            raise ValueError(f"features: {len(self.features)} names for input shape {shape}")
        if self.task == "classification":
            classes = self.classes or []
            if len(classes) < 2 or len({str(c) for c in classes}) != len(classes):
                raise ValueError("classes: a classifier needs at least 2 distinct classes")
            declared = self._probabilities_width()
            if isinstance(declared, int) and declared > 0 and declared != len(classes):
                raise ValueError(f"classes: {len(classes)} names, the graph outputs {declared} probabilities")
        return self

    def _columns_fit(self) -> None:
        """Typed columns: one per feature, in order, each a graph input of its type."""
        columns = self.columns or []
        if [c.name for c in columns] != self.features:
            raise ValueError("columns: one per feature, named and ordered as features")
        if self.inputs is not None:
            declared = [(i.name, i.dtype) for i in self.inputs]
            if declared != [(c.name, c.type) for c in columns]:
                raise ValueError("columns: the graph's inputs are not these columns with these types")
        if any((c.categories is None) != (c.type == "float32") for c in columns):
            raise ValueError("columns: a string column lists its categories, a number column none")

    def _declared_example_shape(self) -> list[int] | None:
        """One example's shape as the described graph input says, when every dim is fixed."""
        if self.inputs and all(isinstance(d, int) and d > 0 for d in self.inputs[0].shape[1:]):
            return list(self.inputs[0].shape[1:])
        return None

    def _probabilities_width(self) -> Dim:
        for out in self.outputs or []:
            if out.name == "probabilities" and len(out.shape) == 2:
                return out.shape[1]
        return None


class MetadataRejected(ValueError):
    """onnxship.json does not fit the schema; the message names the field, never its value."""


def parse_metadata(raw: bytes) -> dict[str, Any]:
    """onnxship.json bytes -> the checked metadata as a dict (extra fields kept)."""
    if len(raw) > MAX_METADATA_BYTES:
        raise MetadataRejected(f"onnxship.json is larger than {MAX_METADATA_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise MetadataRejected("onnxship.json is not valid JSON (or nests too deep)") from None
    if not isinstance(data, dict):
        raise MetadataRejected("onnxship.json is not a JSON object")
    try:
        checked = VersionMetadata.model_validate(data)
    except ValidationError as err:
        raise MetadataRejected(f"onnxship.json: {describe_errors(err)}") from None
    except RecursionError:
        raise MetadataRejected("onnxship.json nests too deep") from None
    return checked.model_dump(mode="json", exclude_unset=True)


def describe_errors(err: ValidationError, limit: int = 3) -> str:
    """'inference_settings.intra_op_threads: Input should be less than or equal to 256' - field
    paths (list positions, known names) and pydantic's message, never the offending value."""
    parts = []
    for e in err.errors(include_input=False, include_url=False)[:limit]:
        loc = ".".join(str(p) if isinstance(p, int) or len(str(p)) <= 40 else "<key>" for p in e["loc"])
        message = e["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {message}" if loc else message)
    return "; ".join(parts)
