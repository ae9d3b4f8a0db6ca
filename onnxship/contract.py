"""The model contract, in one place: task kinds, the files of a model folder and of a registered
version, the graph's tensor names per task, and the forecaster contract served by POST /forecast.

Read by the stages, the registry watcher and the server alike; imports numpy only.

Graph I/O per task (float32 unless said; `batch` is a symbolic axis):
  regression      input "input" [batch, n_features]  -> "prediction" [batch, 1]
  classification  input "input" [batch, n_features]  -> "label" int64 [batch],
                                                         "probabilities" [batch, n_classes]
  (typed columns: one input per column, named as the column, [batch, 1] float32 or string;
   the outputs as above - onnxship.data.columns)
  (images: classification with input "input" [batch, channels, height, width])
  tensor          input "input" [batch, ...]         -> "output" [batch, ...]
  forecast        per ForecastGraph.layout (see ForecastSpec):
    series        "context" [batch, T] (+ "past_covariates" [batch, T, C], "future_covariates" [batch, H, C])
                  -> "quantiles" [batch, H, n_levels]
    chronos2      "context" [rows, T], "group_ids" int64 [rows], "future_covariates" [rows, F]
                  -> "quantiles" [rows, F, n_levels]        (any F up to the native horizon)
    chronos_bolt  "context" [batch, T] -> "quantiles" [batch, native_horizon, n_levels]
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np


class Task(StrEnum):
    REGRESSION = "regression"
    CLASSIFICATION = "classification"
    TENSOR = "tensor"
    FORECAST = "forecast"


# files of models/native/<model>/, models/onnx/<model>/, models/optimized/<model>/
NATIVE_META = "meta.json"
ONNX_FILE = "model.onnx"
EXPORT_REPORT = "export.json"
OPTIMIZE_REPORT = "optimize.json"
BASE_VARIANT = "base"  # the exported graph, unchanged, among the optimized variants
NATIVE = "native"  # the original model, run by its own library, in benchmark and validate reports
FLOOR = "ort_floor"  # a benchmark report's graph of no work: ONNX Runtime's own cost per call
# files of a registered version's artifact folder
MODEL_FILE = ONNX_FILE
METADATA_FILE = "onnxship.json"
BENCHMARK_FILE = "benchmark.json"
VALIDATION_FILE = "validation.json"
CANDIDATES_FILE = "candidates.json"  # every variant: verdict, gate figures, latency at its best settings

# tensor names
INPUT = "input"
PREDICTION, LABEL, PROBABILITIES, OUTPUT = "prediction", "label", "probabilities", "output"
CONTEXT, PAST, FUTURE, QUANTILES = "context", "past_covariates", "future_covariates", "quantiles"
GROUP_IDS = "group_ids"
BATCH = "batch"
ROWS, STEPS = "rows", "steps"

OUTPUTS: dict[str, list[str]] = {
    Task.REGRESSION: [PREDICTION],
    Task.CLASSIFICATION: [LABEL, PROBABILITIES],
    Task.TENSOR: [OUTPUT],
    Task.FORECAST: [QUANTILES],
}


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name, numpy dtype name, shape (int = fixed, str = symbolic axis
    such as "batch", None = any length)."""

    name: str
    dtype: str
    shape: tuple[int | str | None, ...]


@dataclass(frozen=True)
class ModelIO:
    """The typed inputs and outputs a graph of a task must have. Families export to it, export
    checks the graph against it, serving reads the same names."""

    task: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    forecast_spec: ForecastSpec | None = None  # forecasters: horizon, levels, covariates
    # typed columns: each {"name", "type", "categories"} as the model was trained (onnxship.data.columns)
    columns: tuple[dict, ...] = ()

    @classmethod
    def tabular(
        cls, task: str, n_features: int, n_classes: int = 0, input_shape: list[int] | None = None
    ) -> ModelIO:
        """Feature rows [batch, n_features], or tensors [batch, *input_shape] (e.g. images)."""
        shape = tuple(input_shape or [n_features])
        features = (TensorSpec(INPUT, "float32", (BATCH, *shape)),)
        if task == Task.REGRESSION:
            return cls(task, features, (TensorSpec(PREDICTION, "float32", (BATCH, 1)),))
        if task == Task.CLASSIFICATION:
            outputs = (
                TensorSpec(LABEL, "int64", (BATCH,)),
                TensorSpec(PROBABILITIES, "float32", (BATCH, n_classes or None)),
            )
            return cls(task, features, outputs)
        raise ValueError(f"not a tabular task: {task}")

    @classmethod
    def of_columns(cls, task: str, columns: list[dict], n_classes: int = 0) -> ModelIO:
        """Typed columns: each its own input [batch, 1], "float32" or "string"."""
        rows = cls.tabular(task, 1, n_classes)
        inputs = tuple(TensorSpec(c["name"], c["type"], (BATCH, 1)) for c in columns)
        return cls(task, inputs, rows.outputs, columns=tuple(columns))

    @property
    def takes_columns(self) -> bool:
        """One input per named column (not the one feature matrix `input`)."""
        return self.task != Task.FORECAST and [i.name for i in self.inputs] != [INPUT]

    @classmethod
    def forecast(cls, spec: ForecastSpec) -> ModelIO:
        H, C, Q = spec.prediction_length, len(spec.covariates), len(spec.quantile_levels)
        layout = spec.graph.layout
        if layout == CHRONOS2:
            inputs = [
                TensorSpec(CONTEXT, "float32", (ROWS, None)),
                TensorSpec(GROUP_IDS, "int64", (ROWS,)),
                TensorSpec(FUTURE, "float32", (ROWS, STEPS)),
            ]
            outputs = (TensorSpec(QUANTILES, "float32", (ROWS, STEPS, Q)),)
            return cls(Task.FORECAST, tuple(inputs), outputs, forecast_spec=spec)
        if layout == CHRONOS_BOLT:
            inputs = [TensorSpec(CONTEXT, "float32", (BATCH, None))]
            outputs = (TensorSpec(QUANTILES, "float32", (BATCH, spec.graph.native_horizon, Q)),)
            return cls(Task.FORECAST, tuple(inputs), outputs, forecast_spec=spec)
        inputs = [TensorSpec(CONTEXT, "float32", (BATCH, None))]  # the context length may stay dynamic
        if spec.covariates:
            inputs += [
                TensorSpec(PAST, "float32", (BATCH, None, C)),
                TensorSpec(FUTURE, "float32", (BATCH, H, C)),
            ]
        outputs = (TensorSpec(QUANTILES, "float32", (BATCH, H, Q)),)
        return cls(Task.FORECAST, tuple(inputs), outputs, forecast_spec=spec)

    @classmethod
    def of_model(cls, meta: dict[str, Any]) -> ModelIO:
        """The contract of a trained model, from its meta.json (or a version's onnxship.json)."""
        if meta["task"] == Task.FORECAST:
            return cls.forecast(ForecastSpec.from_metadata(meta))
        classes = len(meta.get("classes") or [])
        if meta.get("layout") == "columns":
            return cls.of_columns(meta["task"], meta["columns"], classes)
        return cls.tabular(meta["task"], len(meta["features"]), classes, meta.get("input_shape"))

    @property
    def n_features(self) -> int:
        """Width of the feature matrix of a tabular graph."""
        width = self.inputs[0].shape[-1]
        if not isinstance(width, int):
            raise ValueError(f"{self.task} graphs have no fixed feature width")
        return width

    def mismatches(self, described: dict[str, list[dict]]) -> list[str]:
        """How a graph's I/O (describe_io) differs from this contract; empty when it fits."""
        problems = []
        for side, wanted in (("inputs", self.inputs), ("outputs", self.outputs)):
            got = described[side]
            if [g["name"] for g in got] != [w.name for w in wanted]:
                problems.append(f"{side} {[g['name'] for g in got]}, expected {[w.name for w in wanted]}")
                continue
            for g, w in zip(got, wanted, strict=True):
                if g["dtype"] != w.dtype:
                    problems.append(f"{w.name}: dtype {g['dtype']}, expected {w.dtype}")
                elif len(g["shape"]) != len(w.shape) or any(
                    # a graph may leave a dim open (0 or a name); a fixed one must agree
                    isinstance(e, int) and isinstance(a, int) and a > 0 and a != e
                    for a, e in zip(g["shape"], w.shape, strict=True)
                ):
                    problems.append(f"{w.name}: shape {g['shape']}, expected {list(w.shape)}")
        return problems


def describe_io(model: Any) -> dict[str, list[dict]]:
    """Names, dtypes and shapes of an onnx.ModelProto's inputs and outputs (symbolic dims by name)."""
    import onnx

    def spec(value: Any) -> dict:
        tensor = value.type.tensor_type
        string = tensor.elem_type == onnx.TensorProto.STRING  # numpy calls it object
        return {
            "name": value.name,
            "dtype": "string" if string else onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
            "shape": [d.dim_param or d.dim_value for d in tensor.shape.dim],
        }

    return {"inputs": [spec(v) for v in model.graph.input], "outputs": [spec(v) for v in model.graph.output]}


SERIES, CHRONOS2, CHRONOS_BOLT = "series", "chronos2", "chronos_bolt"
LAYOUTS = (SERIES, CHRONOS2, CHRONOS_BOLT)
LIBRARY_UNROLLED_QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # Chronos2Pipeline.predict's


@dataclass(frozen=True)
class ForecastGraph:
    """How a forecast graph is called and how forecasts of any horizon are made from it
    (onnxship/forecasting/rollout.py):

        layout                 series | chronos2 | chronos_bolt (the graph I/O, module docstring)
        native_horizon         steps one call answers at most
        patch_size             chronos2: steps per output patch (a call answers whole patches)
        model_context_length   the context the model keeps (a longer one is cut, also in rollout)
        unrolled_quantiles     chronos2: the levels a forecast beyond native_horizon follows
        unroll_weights         chronos2: each (path, level) sample's probability mass when the
                               paths are pooled, as the library computes them (float32 bits)
    """

    layout: str = SERIES
    native_horizon: int = 0
    patch_size: int = 1
    model_context_length: int = 0
    unrolled_quantiles: tuple[float, ...] = ()
    unroll_weights: tuple[float, ...] = ()

    @property
    def rolls_forward(self) -> bool:
        return self.layout in (CHRONOS2, CHRONOS_BOLT)

    def as_metadata(self) -> dict[str, Any]:
        return {
            "layout": self.layout,
            "native_horizon": self.native_horizon,
            "patch_size": self.patch_size,
            "model_context_length": self.model_context_length,
            "unrolled_quantiles": list(self.unrolled_quantiles),
            "unroll_weights": list(self.unroll_weights),
        }


@dataclass(frozen=True)
class ForecastSpec:
    """A forecaster's version carries `"task": "forecast"` and a `"forecast"` block in onnxship.json:

        "forecast": {"context_length": 512, "prediction_length": 64, "max_horizon": 1024,
                     "quantile_levels": [0.1, 0.2, ..., 0.9],
                     "covariates": [{"name": "temperature", "future": true},
                                    {"name": "load", "future": false}],
                     "graph": {"layout": "chronos2", "native_horizon": 128, "patch_size": 16, ...}}

    context_length is the longest context served, prediction_length the default horizon (the one
    the model was judged on), max_horizon the longest served. Without a "graph" block the graph is
    of layout "series", which takes (NaN = missing):
        context            [batch, context_length]                  the series, right-aligned (NaN left)
        past_covariates    [batch, context_length, n_covariates]    only when covariates are declared
        future_covariates  [batch, prediction_length, n_covariates] NaN where unknown (past-only covariates)
    and returns
        quantiles          [batch, prediction_length, n_levels]     levels in `quantile_levels` order
    Chronos graphs take rows (module docstring) and answer any horizon up to max_horizon.
    """

    context_length: int
    prediction_length: int
    quantile_levels: tuple[float, ...]
    covariates: tuple[str, ...] = ()
    future_covariates: tuple[str, ...] = ()
    graph: ForecastGraph = ForecastGraph()
    max_horizon: int = 0

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ForecastSpec:
        block = metadata.get("forecast")
        if metadata.get("task") != Task.FORECAST or not isinstance(block, dict):
            raise ValueError("metadata: not a forecaster (task 'forecast' with a 'forecast' block)")
        levels = tuple(float(q) for q in block["quantile_levels"])
        if not levels or list(levels) != sorted(set(levels)) or not all(0 < q < 1 for q in levels):
            raise ValueError(f"forecast.quantile_levels must be increasing, inside (0, 1): {levels}")
        covariates = block.get("covariates", [])
        horizon = int(block["prediction_length"])
        graph = cls._graph(block.get("graph"), horizon, int(block["context_length"]))
        if graph.rolls_forward and horizon > graph.native_horizon:
            raise ValueError("forecast.prediction_length: at most one call's horizon (graph.native_horizon)")
        if graph.layout == CHRONOS_BOLT and covariates:
            raise ValueError("forecast.covariates: a chronos_bolt graph takes none")
        if graph.layout == CHRONOS2 and (
            not graph.unrolled_quantiles
            or not set(graph.unrolled_quantiles) <= set(levels)
            or len(graph.unroll_weights) != len(graph.unrolled_quantiles) * len(levels)
            or min(graph.unroll_weights) <= 0
        ):
            raise ValueError(
                "forecast.graph: a chronos2 graph needs unrolled_quantiles among its levels and "
                "their positive unroll_weights"
            )
        spec = cls(
            context_length=int(block["context_length"]),
            prediction_length=horizon,
            quantile_levels=levels,
            covariates=tuple(c["name"] for c in covariates),
            future_covariates=tuple(c["name"] for c in covariates if c.get("future")),
            graph=graph,
            max_horizon=int(block.get("max_horizon") or (horizon if not graph.rolls_forward else 0)),
        )
        if spec.context_length < 1 or spec.prediction_length < 1:
            raise ValueError("forecast.context_length and prediction_length must be positive")
        if spec.max_horizon < (spec.prediction_length if graph.rolls_forward else 1):
            raise ValueError("forecast.max_horizon must be at least prediction_length")
        if not graph.rolls_forward and spec.max_horizon != spec.prediction_length:
            raise ValueError(
                "forecast.max_horizon: a graph of layout 'series' answers prediction_length steps"
            )
        return spec

    @staticmethod
    def _graph(block: Any, horizon: int, context_length: int) -> ForecastGraph:
        if block is None:
            return ForecastGraph(SERIES, horizon, 1, context_length)
        if not isinstance(block, dict) or block.get("layout") not in LAYOUTS:
            raise ValueError(f"forecast.graph.layout must be one of {list(LAYOUTS)}")
        graph = ForecastGraph(
            layout=block["layout"],
            native_horizon=int(block["native_horizon"]),
            patch_size=int(block.get("patch_size", 1)),
            model_context_length=int(block.get("model_context_length") or context_length),
            unrolled_quantiles=tuple(float(q) for q in block.get("unrolled_quantiles") or ()),
            unroll_weights=tuple(float(w) for w in block.get("unroll_weights") or ()),
        )
        if graph.native_horizon < 1 or graph.patch_size < 1 or graph.native_horizon % graph.patch_size:
            raise ValueError("forecast.graph: native_horizon must be a positive multiple of patch_size")
        if graph.model_context_length < context_length:
            raise ValueError("forecast.graph.model_context_length must be at least context_length")
        if graph.layout == SERIES and graph.native_horizon != horizon:
            raise ValueError("forecast.graph: a 'series' graph answers prediction_length steps")
        return graph

    def as_metadata(self) -> dict[str, Any]:
        """The "forecast" block of a version's onnxship.json."""
        block: dict[str, Any] = {
            "context_length": self.context_length,
            "prediction_length": self.prediction_length,
            "quantile_levels": list(self.quantile_levels),
            "covariates": [{"name": c, "future": c in self.future_covariates} for c in self.covariates],
        }
        if self.graph.layout != SERIES:
            block |= {"max_horizon": self.max_horizon, "graph": self.graph.as_metadata()}
        return block

    @property
    def input_names(self) -> list[str]:
        if self.graph.layout == CHRONOS2:
            return [CONTEXT, GROUP_IDS, FUTURE]
        if self.graph.layout == CHRONOS_BOLT:
            return [CONTEXT]
        return [CONTEXT, PAST, FUTURE] if self.covariates else [CONTEXT]

    def series_feed_shapes(self, batch: int) -> dict[str, tuple[int, ...]]:
        """A batch of windows in the series layout (what stages slice and time, any layout)."""
        T, H, C = self.context_length, self.prediction_length, len(self.covariates)
        shapes = {CONTEXT: (batch, T)}
        if self.covariates:
            shapes |= {PAST: (batch, T, C), FUTURE: (batch, H, C)}
        return shapes

    def example_windows(self, batch: int = 1) -> dict[str, np.ndarray]:
        """Plausible windows in the series layout (a sine wave, NaN-free)."""
        feed = {}
        for name, shape in self.series_feed_shapes(batch).items():
            steps = np.sin(np.arange(shape[1], dtype=np.float32) / 8)
            feed[name] = np.broadcast_to(steps.reshape((1, -1) + (1,) * (len(shape) - 2)), shape).copy()
        return feed

    def graph_feed(self, windows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The graph's inputs for windows in the series layout, prediction_length steps ahead:
        Chronos-2's rows are laid out as its library lays them out (onnxship/forecasting/tasks)."""
        if self.graph.layout == SERIES:
            return windows
        if self.graph.layout == CHRONOS_BOLT:
            return {CONTEXT: windows[CONTEXT]}
        from onnxship.forecasting.tasks import layout

        rows = layout(self.window_tasks(windows), self.prediction_length)
        return {CONTEXT: rows.context, GROUP_IDS: rows.group_ids, FUTURE: rows.future}

    def window_quantiles(self, windows: dict[str, np.ndarray], quantiles: np.ndarray) -> np.ndarray:
        """[batch, prediction_length, n_levels] of the windows from the graph's answer to graph_feed."""
        if self.graph.layout == CHRONOS2:
            return quantiles[:: 1 + len(self.covariates)]
        return quantiles[:, : self.prediction_length]

    def window_tasks(self, windows: dict[str, np.ndarray]) -> list:
        """Windows in the series layout as forecasting tasks (onnxship.forecasting.tasks.SeriesTask)."""
        from onnxship.forecasting.tasks import SeriesTask

        tasks = []
        for b, context in enumerate(windows[CONTEXT]):
            past = {c: windows[PAST][b, :, i] for i, c in enumerate(self.covariates)}
            # a known-future covariate whose future is all missing is past-only, as the library's
            # dict inputs say it (onnxship.families.chronos builds them the same way)
            future = {
                c: windows[FUTURE][b, :, i]
                for i, c in enumerate(self.covariates)
                if c in self.future_covariates and not np.isnan(windows[FUTURE][b, :, i]).all()
            }
            tasks.append(SeriesTask(context[None, :], past, future))
        return tasks

    def example_feed(self, batch: int = 1) -> dict[str, np.ndarray]:
        """A plausible graph input: for warm-up, export and the probe."""
        return self.graph_feed(self.example_windows(batch))

    def check_graph_io(self, input_names: list[str], output_names: list[str]) -> None:
        if input_names != self.input_names or output_names != [QUANTILES]:
            raise ValueError(
                f"graph I/O {input_names} -> {output_names}, the forecast contract says "
                f"{self.input_names} -> {[QUANTILES]}"
            )

    def check_output(self, quantiles: np.ndarray, batch: int) -> None:
        """The graph's answer to example_feed(batch)."""
        rows = batch * (1 + len(self.covariates)) if self.graph.layout == CHRONOS2 else batch
        steps = self.graph.native_horizon if self.graph.layout == CHRONOS_BOLT else self.prediction_length
        expected = (rows, steps, len(self.quantile_levels))
        if quantiles.shape != expected:
            raise ValueError(f"quantiles output has shape {list(quantiles.shape)}, expected {list(expected)}")


@dataclass
class Prediction:
    """Native or ONNX output in one shape: regression values, or class labels + probabilities."""

    values: np.ndarray  # regression: float64 (N,); classification: int64 labels (N,)
    proba: np.ndarray | None = None  # classification: float64 (N, n_classes)


# A benchmark report (reports/benchmark/<model>.json; a version's benchmark.json) holds one cell
# per runtime and batch size: report["runtimes"][runtime]["batches"][str(batch)] -> p50_ms,
# p99_ms, their intervals, speedups. These three are the only readers of that layout.
def timed_runtimes(report: dict) -> dict[str, dict]:
    """runtime -> its entry (load time, memory, sha256, batches); {} when nothing was timed."""
    runtimes = report.get("runtimes") if isinstance(report, dict) else None
    return runtimes if isinstance(runtimes, dict) else {}


def bench_cells(report: dict, runtime: str) -> dict[str, dict]:
    """batch size (a string, as in JSON) -> cell, for one runtime; {} when it was not timed."""
    entry = timed_runtimes(report).get(runtime)
    cells = entry.get("batches") if isinstance(entry, dict) else None
    return cells if isinstance(cells, dict) else {}


def floor_cells(report: dict) -> dict[str, dict]:
    """batch size -> the floor graph's cell (timed in the same rounds); {} when it was not timed."""
    floor = report.get(FLOOR) if isinstance(report, dict) else None
    cells = floor.get("batches") if isinstance(floor, dict) else None
    return cells if isinstance(cells, dict) else {}


def bench_cell(report: dict, runtime: str, batch: int | str, missing_ok: bool = False) -> dict:
    """One runtime's figures at one batch size. A missing cell is a KeyError naming it (a figure
    a decision needs must not default), or {} with `missing_ok` (readers that show what is there)."""
    cell = bench_cells(report, runtime).get(str(batch))
    if cell is None:
        if missing_ok:
            return {}
        raise KeyError(f"the benchmark report has no {runtime} figures at batch size {batch}")
    return cell
