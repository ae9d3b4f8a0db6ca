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

from onnxship.contract import CONTEXT, FUTURE, PAST, QUANTILES, ForecastSpec, ModelIO, Task
from onnxship.errors import ConfigError, ModelLoadError
from onnxship.families import Family, register


class ChronosFamily(Family):
    native_file = "checkpoint"  # a folder: config.json + model.safetensors
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

    def forecast(self, est: Any, feed: dict[str, np.ndarray], spec: ForecastSpec) -> np.ndarray:
        """Native quantiles [batch, H, n_levels] for a feed of the forecast contract, through the
        library's own predict (NaN = missing, as in the graph)."""
        raise NotImplementedError

    def graph(self, est: Any, spec: ForecastSpec) -> Any:
        raise NotImplementedError

    def native_call(self, est: Any, meta: dict) -> Any:
        """PyTorch eager on exactly what the graph computes (the same wrapper module), under
        torch.inference_mode: the library's predict adds Python preprocessing the graph has not."""
        import torch

        module = self.graph(est, ForecastSpec.from_metadata(meta)).eval()
        names = ForecastSpec.from_metadata(meta).input_names

        def call(feed: dict[str, np.ndarray]) -> np.ndarray:
            with torch.inference_mode():
                return module(*(torch.from_numpy(feed[n]) for n in names)).numpy()

        return call

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
        feed = {k: torch.from_numpy(v) for k, v in spec.example_feed(batch=2).items()}
        names = spec.input_names
        dynamic = {CONTEXT: {0: "batch", 1: "context_length"}, QUANTILES: {0: "batch"}}
        if spec.covariates:
            dynamic |= {PAST: {0: "batch", 1: "context_length"}, FUTURE: {0: "batch"}}
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
        return onnx.load_from_string(buffer.getvalue())


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

        return Chronos2Graph(est.model, spec.prediction_length, len(spec.covariates))

    def forecast(self, est: Any, feed: dict[str, np.ndarray], spec: ForecastSpec) -> np.ndarray:
        inputs = []
        for b, context in enumerate(feed[CONTEXT]):
            item: dict[str, Any] = {"target": context}
            if spec.covariates:
                item["past_covariates"] = {c: feed[PAST][b, :, i] for i, c in enumerate(spec.covariates)}
                known = {c: feed[FUTURE][b, :, i] for i, c in enumerate(spec.covariates)}
                item["future_covariates"] = {c: v for c, v in known.items() if not np.isnan(v).all()}
            inputs.append(item)
        out = est.predict(inputs, prediction_length=spec.prediction_length, batch_size=len(inputs) * 64)
        return np.stack([o[0].numpy() for o in out]).transpose(0, 2, 1).astype(np.float32)


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
        return BoltGraph(est.model, spec.prediction_length)

    def forecast(self, est: Any, feed: dict[str, np.ndarray], spec: ForecastSpec) -> np.ndarray:
        import torch

        out = est.predict(torch.from_numpy(feed[CONTEXT]), prediction_length=spec.prediction_length)
        return out.numpy().transpose(0, 2, 1).astype(np.float32)
