"""Chronos forecasters (`chronos2`, `chronos_bolt`), through chronos-forecasting's own pipeline
classes; ONNX through the legacy (TorchScript) exporter with the export-time patches of
onnxship/chronos/patches.py.

Why the legacy exporter: the dynamo exporter needs two more patches for these models (a
data-dependent NaN `raise`, and the boolean group/time-mask einsum, whose graph ONNX Runtime
refuses to load) and decomposes Chronos-Bolt's T5 stack less cleanly; the legacy exporter with
the four patches gives graphs that match PyTorch to ~1e-5 relative, at every context length.

The native "file" is a checkpoint folder written by `save_pretrained`; `checkpoint:` in a zoo entry
is a local folder or a hub id, so a user with the real `amazon/chronos-2` weights changes config
only. The native answer is the library's own `pipeline.predict` (covariates as its dict inputs).
"""

from __future__ import annotations

from collections.abc import Mapping
from io import BytesIO
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx

from onnxship.contract import (
    CHRONOS2,
    CHRONOS_BOLT,
    CONTEXT,
    FUTURE,
    GROUP_IDS,
    LIBRARY_UNROLLED_QUANTILES,
    QUANTILES,
    ForecastGraph,
    ForecastSpec,
    ModelIO,
    Task,
)
from onnxship.errors import ConfigError, ModelLoadError
from onnxship.families import Family, register


class ChronosFamily(Family):
    native_file = "checkpoint"  # a folder: config.json + model.safetensors
    loader_imports = ("torch", "chronos")
    converter = "torch.onnx (legacy, patched)"
    tasks = (Task.FORECAST,)
    pipeline_class: ClassVar[str]

    def build(self, spec: Mapping[str, Any], zoo: Mapping[str, Any], task: str, seed: int) -> Any:
        """`checkpoint:` a local folder or hub id (loaded), or {size: release|small|tiny, ...}
        (built here with random weights, seeded: onnxship/chronos/checkpoints.py)."""
        from onnxship.chronos import checkpoints

        checkpoint = spec.get("checkpoint")
        if isinstance(checkpoint, str):  # a folder, or a hub id (needs the network or the HF cache)
            return self.load(Path(checkpoint), task)
        if not isinstance(checkpoint, Mapping) or checkpoint.get("size") not in checkpoints.CHRONOS2_SIZES:
            raise ConfigError(
                f"{self.name}: checkpoint must be a folder, a hub id, or {{size: release|small|tiny}}"
            )
        options = {k: v for k, v in checkpoint.items() if k != "size"}
        return getattr(checkpoints, self.name)(checkpoint["size"], seed=seed, **options)

    def fit(self, est: Any, X: Any, y: Any) -> Any:
        return est  # zero-shot: the checkpoint as it is (fine-tuning: finetune())

    def finetune(self, est: Any, inputs: list[dict], spec: ForecastSpec, options: Any, seed: int) -> Any:
        raise ConfigError(f"{self.name} cannot be fine-tuned here (Chronos-2 can: family chronos2)")

    def save(self, est: Any, path: Path) -> None:
        # the model's own save_pretrained (ChronosBoltPipeline has none); with the config written
        # by onnxship.chronos.checkpoints, from_pretrained finds the pipeline class again
        est.model.save_pretrained(str(path))

    def load(self, path: Path, task: str) -> Any:
        from onnxship.chronos.checkpoints import load

        pipeline = load(path)
        if type(pipeline).__name__ != self.pipeline_class:
            found = type(pipeline).__name__
            raise ModelLoadError(f"{self.name}: {path.name} holds a {found}, not a {self.pipeline_class}")
        return pipeline

    def quantile_levels(self, est: Any) -> list[float]:
        return [float(q) for q in est.quantiles]

    def forecast_graph(self, est: Any) -> ForecastGraph:
        """How this checkpoint's graph is called and rolled forward (onnxship.contract)."""
        raise NotImplementedError

    def predict_tasks(
        self, est: Any, tasks: list, horizon: int, cross_learning: bool = False
    ) -> list[np.ndarray]:
        """The library's own predict on forecasting tasks (onnxship.forecasting.tasks.SeriesTask):
        per task [n_variates, horizon, n_levels]."""
        raise NotImplementedError

    def forecast(self, est: Any, feed: dict[str, np.ndarray], spec: ForecastSpec) -> np.ndarray:
        """Native quantiles [batch, H, n_levels] for windows in the series layout, through the
        library's own predict (NaN = missing, as in the graph)."""
        out = self.predict_tasks(est, spec.window_tasks(feed), spec.prediction_length)
        return np.stack([o[0] for o in out]).astype(np.float32)

    def graph(self, est: Any, spec: ForecastSpec) -> Any:
        raise NotImplementedError

    def native_call(self, est: Any, meta: dict) -> Any:
        """PyTorch eager on exactly what the graph computes (the same wrapper module, fed the
        same rows), under torch.inference_mode: the library's predict adds Python preprocessing
        the graph has not. Takes windows in the series layout, as the benchmark's ONNX call does."""
        import torch

        from onnxship.measure.calls import TimedCall

        spec = ForecastSpec.from_metadata(meta)
        module = self.graph(est, spec).eval()

        def call(windows: dict[str, np.ndarray]) -> np.ndarray:
            feed = spec.graph_feed(windows)  # on the clock: the ONNX call lays out the same rows
            with torch.inference_mode():
                return module(*(torch.from_numpy(feed[n]) for n in spec.input_names)).numpy()

        return TimedCall(call)

    def set_threads(self, threads: int) -> None:
        import torch

        if threads > 0:
            torch.set_num_threads(threads)

    def to_onnx(self, est: Any, io: ModelIO, opset: int) -> onnx.ModelProto:
        import torch

        from onnxship.chronos.patches import OPSET, export_patches

        spec = io.forecast_spec
        if spec is None:
            raise ConfigError(f"{self.name}: export needs the forecast spec (horizon, covariates)")
        wrapper = self.graph(est, spec).eval()
        feed = {k: torch.from_numpy(v) for k, v in self.trace_feed(spec).items()}
        names = spec.input_names
        dynamic = {CONTEXT: {0: "batch", 1: "context_length"}, QUANTILES: {0: "batch"}}
        if spec.graph.layout == CHRONOS2:
            dynamic = {
                CONTEXT: {0: "rows", 1: "context_length"},
                GROUP_IDS: {0: "rows"},
                FUTURE: {0: "rows", 1: "steps"},
                QUANTILES: {0: "rows", 1: "steps"},
            }
        buffer = BytesIO()
        with export_patches(est.model), torch.no_grad():
            torch.onnx.export(
                wrapper,
                tuple(feed[n] for n in names),
                buffer,
                dynamo=False,
                opset_version=max(opset, OPSET),
                input_names=names,
                output_names=[QUANTILES],
                dynamic_axes=dynamic,
            )
        model = onnx.load_from_string(buffer.getvalue())
        # the tracer leaves some fixed dims symbolic (Chronos-2's level count): the contract's own
        for value, wanted in zip(model.graph.output, io.outputs, strict=True):
            for dim, size in zip(value.type.tensor_type.shape.dim, wanted.shape, strict=True):
                if isinstance(size, int):
                    dim.Clear()
                    dim.dim_value = size
        return model

    def trace_feed(self, spec: ForecastSpec) -> dict[str, np.ndarray]:
        """The example the exporter traces with: two windows."""
        return spec.example_feed(batch=2)


@register
class Chronos2Family(ChronosFamily):
    name = "chronos2"
    group = "foundation"
    pipeline_class = "Chronos2Pipeline"
    tiny_spec: ClassVar[dict[str, Any]] = {"checkpoint": {"size": "tiny", "context_length": 256}}

    def finetune(self, est: Any, inputs: list[dict], spec: ForecastSpec, options: Any, seed: int) -> Any:
        """The library's own Chronos2Pipeline.fit on the series (covariates included)."""
        import tempfile

        from onnxship.chronos.training import finetune_chronos2

        options = dict(options) | {"context_length": spec.context_length}
        with tempfile.TemporaryDirectory(prefix="chronos2-finetune-") as workdir:
            return finetune_chronos2(est, inputs, spec.prediction_length, options, seed, workdir)

    def graph(self, est: Any, spec: ForecastSpec) -> Any:
        from onnxship.chronos.graphs import Chronos2Graph

        return Chronos2Graph(est.model)

    def forecast_graph(self, est: Any) -> ForecastGraph:
        import torch

        config = est.model.chronos_config
        # the probability mass of each (path, level) sample pooled in the long-horizon rollout,
        # by the library's own code, normalized as its weighted_quantile normalizes them
        mass = est._get_prob_mass_per_quantile_level
        weights = torch.outer(
            mass(torch.tensor(LIBRARY_UNROLLED_QUANTILES)), mass(torch.tensor(est.quantiles))
        )
        weights = weights.reshape(-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        return ForecastGraph(
            layout=CHRONOS2,
            native_horizon=config.max_output_patches * config.output_patch_size,
            patch_size=config.output_patch_size,
            model_context_length=config.context_length,
            unrolled_quantiles=LIBRARY_UNROLLED_QUANTILES,
            unroll_weights=tuple(float(w) for w in weights),
        )

    def trace_feed(self, spec: ForecastSpec) -> dict[str, np.ndarray]:
        """Two windows, a future that is not whole patches long (the graph pads it in-graph)."""
        feed = spec.example_feed(batch=2)
        steps = min(spec.graph.native_horizon, spec.graph.patch_size + spec.graph.patch_size // 2)
        pad = np.full((len(feed[FUTURE]), steps), np.nan, dtype=np.float32)
        pad[:, : min(steps, feed[FUTURE].shape[1])] = feed[FUTURE][:, :steps]
        return feed | {FUTURE: pad}

    def predict_tasks(
        self, est: Any, tasks: list, horizon: int, cross_learning: bool = False
    ) -> list[np.ndarray]:
        inputs = []
        for task in tasks:
            item: dict[str, Any] = {"target": task.target[0] if len(task.target) == 1 else task.target}
            if task.past:
                item["past_covariates"] = dict(task.past)
                item["future_covariates"] = dict(task.future)
            inputs.append(item)
        out = est.predict(inputs, prediction_length=horizon, cross_learning=cross_learning)
        shaped = zip(out, tasks, strict=True)  # [n_variates, levels, h] each -> [n_variates, h, levels]
        return [o.numpy().reshape(len(t.target), -1, horizon).transpose(0, 2, 1) for o, t in shaped]


@register
class ChronosBoltFamily(ChronosFamily):
    name = "chronos_bolt"
    group = "foundation"
    pipeline_class = "ChronosBoltPipeline"
    tiny_spec: ClassVar[dict[str, Any]] = {"checkpoint": {"size": "tiny", "context_length": 256}}

    def graph(self, est: Any, spec: ForecastSpec) -> Any:
        from onnxship.chronos.graphs import BoltGraph

        if spec.covariates:
            raise ConfigError("chronos_bolt takes no covariates (Chronos-2 does)")
        return BoltGraph(est.model)

    def forecast_graph(self, est: Any) -> ForecastGraph:
        config = est.model.chronos_config
        return ForecastGraph(
            layout=CHRONOS_BOLT,
            native_horizon=config.prediction_length,
            model_context_length=config.context_length,
        )

    def predict_tasks(
        self, est: Any, tasks: list, horizon: int, cross_learning: bool = False
    ) -> list[np.ndarray]:
        import torch

        if cross_learning or any(len(t.target) != 1 or t.past for t in tasks):
            raise ConfigError("chronos_bolt forecasts one series at a time, without covariates")
        out = est.predict([torch.from_numpy(t.target[0]) for t in tasks], prediction_length=horizon)
        return [o.numpy().T[None].astype(np.float32) for o in out]
