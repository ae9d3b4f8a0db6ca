"""PyTorch networks (`torch`): any nn.Module over feature rows or image tensors; ONNX through
torch.onnx's current (dynamo) exporter.

The native file is `model.safetensors`: the state_dict, with the module's class path and its
constructor arguments as JSON in the file's metadata (key `onnxship`). Loading imports that class,
builds it from the arguments and loads the weights. No pickle is read anywhere: safetensors holds
tensors only.

Trained here (the default zoo): `params.module` names a class (default onnxship.torch_nets.MLP;
SmallCNN for images), `params.kwargs` its arguments beyond input_shape/n_outputs, and
epochs/batch_size/lr/weight_decay the training. Brought by a user (`path:`): a state_dict
(`.safetensors`, or a `.pt` file read with `torch.load(weights_only=True)`) plus `params.module`
and `params.kwargs`. Why a class path + state_dict and not a `torch.export` program (`.pt2`):
the native benchmark must time the user's own eager module (a .pt2 replays the traced graph
instead), and a .pt2 embeds the exporting machine's source paths and stack traces, so the same
model would give other bytes in every checkout. Importing the class runs its module's code: name
only classes you trust, as with any Python in the config.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx

from onnxship.contract import ModelIO, Prediction, Task
from onnxship.errors import ConfigError, ModelLoadError
from onnxship.families import Family, register

DEFAULT_MODULE = "onnxship.torch_nets.MLP"
IMAGE_MODULE = "onnxship.torch_nets.SmallCNN"
METADATA_KEY = "onnxship"  # {"module": class path, "kwargs": constructor arguments}
TORCH_OPSET = 18  # the dynamo exporter's own; it converts down only with a version-converter pass


@dataclass
class Recipe:
    """An unfitted network: which class, its arguments, and how to train it."""

    module: str
    kwargs: dict[str, Any]
    task: str
    seed: int
    epochs: int = 60
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0


def plain_params(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's params as plain JSON values (the stages hand over OmegaConf nodes)."""
    from omegaconf import OmegaConf

    params = spec.get("params") or {}
    return dict(OmegaConf.to_container(params, resolve=True) if OmegaConf.is_config(params) else params)


def module_class(path: str) -> type:
    import torch

    module, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name) if module else None
    except (ImportError, AttributeError):
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ConfigError(f"params.module: '{path[:120]}' is not an importable torch.nn.Module class")
    return cls


def build_module(path: str, kwargs: Mapping[str, Any]) -> Any:
    module = module_class(path)(**kwargs)
    module.onnxship_init = {"module": path, "kwargs": dict(kwargs)}  # what save() writes beside the weights
    return module.eval()


def _fit_scaling(net: Any, X: np.ndarray, y: np.ndarray | None) -> None:
    """Set the input (and regression target) statistics buffers of an onnxship.torch_nets network."""
    import torch

    if not hasattr(net, "x_mean"):
        return
    stats = tuple(net.x_mean.shape)
    axes = (0, *(i + 1 for i, d in enumerate(stats) if d == 1 and X.shape[i + 1] != 1))
    mean, std = X.mean(axis=axes, keepdims=True)[0], X.std(axis=axes, keepdims=True)[0]
    net.x_mean.copy_(torch.as_tensor(mean.reshape(stats), dtype=torch.float32))
    net.x_scale.copy_(torch.as_tensor(np.where(std > 1e-6, std, 1.0).reshape(stats), dtype=torch.float32))
    if y is not None:
        net.y_mean.fill_(float(y.mean()))
        net.y_scale.fill_(float(y.std()) or 1.0)


@register
class TorchFamily(Family):
    name = "torch"
    group = "neural"
    native_file = "model.safetensors"
    loader_imports = ("torch", "safetensors")
    converter = "torch.onnx (dynamo)"
    accepts_nan = False

    tiny_spec: ClassVar[dict[str, Any]] = {"params": {"kwargs": {"hidden": [16]}, "epochs": 30}}

    def build(self, spec: Mapping[str, Any], zoo: Mapping[str, Any], task: str, seed: int) -> Recipe:
        params = plain_params(spec)
        known = {"module", "kwargs", "epochs", "batch_size", "lr", "weight_decay"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(f"family 'torch': unknown params {unknown} (known: {sorted(known)})")
        module = params.pop("module", None) or DEFAULT_MODULE
        module_class(module)  # fail at build, before any training, on a wrong class path
        kwargs = dict(params.pop("kwargs", None) or {})
        return Recipe(module=module, kwargs=kwargs, task=task, seed=seed, **params)

    def fit(self, est: Recipe, X: np.ndarray, y: np.ndarray) -> Any:
        import torch

        # one thread: a multi-threaded reduction order depends on the machine's core count, and
        # DVC needs the same weights (bytes) from every machine
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._train(est, X, y)
        finally:
            torch.set_num_threads(threads)

    def _train(self, recipe: Recipe, X: np.ndarray, y: np.ndarray) -> Any:
        import torch

        torch.manual_seed(recipe.seed)
        classification = recipe.task == Task.CLASSIFICATION
        n_outputs = int(y.max()) + 1 if classification else 1
        kwargs = {"input_shape": list(X.shape[1:]), "n_outputs": n_outputs, **recipe.kwargs}
        net = build_module(recipe.module, kwargs)
        _fit_scaling(net, X, None if classification else y)
        inputs = torch.as_tensor(np.array(X, dtype=np.float32))
        if classification:
            targets, loss_fn = torch.as_tensor(y, dtype=torch.int64), torch.nn.CrossEntropyLoss()
        else:
            targets, loss_fn = torch.as_tensor(y, dtype=torch.float32).reshape(-1, 1), torch.nn.MSELoss()
        # a regressor's loss is taken in standard units (its y buffers), so the learning rate
        # does not depend on the target's scale (here, megawatts)
        y_mean, y_scale = (net.y_mean, net.y_scale) if hasattr(net, "y_mean") else (0.0, 1.0)
        optimizer = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        order = torch.Generator().manual_seed(recipe.seed)
        net.train()
        for _ in range(recipe.epochs):
            for batch in torch.randperm(len(inputs), generator=order).split(recipe.batch_size):
                optimizer.zero_grad()
                out = net(inputs[batch])
                if classification:
                    loss = loss_fn(out, targets[batch])
                else:
                    loss = loss_fn((out - y_mean) / y_scale, (targets[batch] - y_mean) / y_scale)
                loss.backward()
                optimizer.step()
        return net.eval()

    def save(self, est: Any, path: Path) -> None:
        from safetensors.torch import save_file

        init = getattr(est, "onnxship_init", None)
        if init is None:
            raise ModelLoadError("torch: module has no recorded class path and arguments (build it here)")
        state = {k: v.detach().contiguous() for k, v in est.state_dict().items()}
        # one metadata key: safetensors keeps metadata in a Rust HashMap, whose order (so the
        # file's bytes) changes from process to process when there are several
        save_file(state, str(path), metadata={METADATA_KEY: json.dumps(init, sort_keys=True)})

    def load(self, path: Path, task: str) -> Any:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no iterator)
        if METADATA_KEY not in metadata:
            raise ModelLoadError(f"torch: {path.name} has no '{METADATA_KEY}' metadata (not saved here)")
        init = json.loads(metadata[METADATA_KEY])
        net = build_module(init["module"], init["kwargs"])
        net.load_state_dict(state)
        return net

    def bring(self, source: Path, spec: Mapping[str, Any], task: str) -> Any:
        """A user's state_dict: the class and its arguments come from params.module / params.kwargs."""
        import torch

        params = plain_params(spec)
        if source.suffix == ".safetensors" and not params.get("module"):
            return self.load_checked(source, task)
        if not params.get("module"):
            raise ConfigError("family 'torch' with path: needs params.module (the nn.Module class path)")
        net = build_module(params["module"], dict(params.get("kwargs") or {}))
        try:
            if source.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(source))
            else:  # weights_only: tensors and plain containers, never arbitrary pickled objects
                state = torch.load(source, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except Exception as err:
            raise ModelLoadError(
                f"torch: cannot load a state_dict for {params['module']} from {source.name}: "
                f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
            ) from err
        return net

    def store_brought(self, source: Path, est: Any, native: Path) -> None:
        self.save(est, native)  # the class path goes into the file, so later stages need no config

    def set_threads(self, threads: int) -> None:
        import torch

        if threads > 0:  # 0 = the library's default (ONNX Runtime's too): one per core
            torch.set_num_threads(threads)

    def predict(self, est: Any, X: np.ndarray, task: str) -> Prediction:
        import torch

        with torch.inference_mode():
            out = est(torch.as_tensor(np.asarray(X, dtype=np.float32))).numpy().astype(np.float64)
        if task == Task.REGRESSION:
            return Prediction(out.reshape(-1))
        proba = np.exp(out - out.max(axis=1, keepdims=True))
        return Prediction(out.argmax(axis=1).astype(np.int64), proba / proba.sum(axis=1, keepdims=True))

    def library_call(self, est: Any, task: str) -> Any:
        import torch

        def call(X: np.ndarray) -> Any:  # the net, and a classifier's softmax (its argmax: ours)
            with torch.inference_mode():
                out = est(torch.from_numpy(X))
                return out if task == Task.REGRESSION else torch.softmax(out, dim=1)

        return call

    def to_onnx(self, est: Any, io: ModelIO, opset: int) -> onnx.ModelProto:
        import torch

        from onnxship.torch_nets import Classifier

        net = Classifier(est) if io.task == Task.CLASSIFICATION else est
        example = torch.zeros((2, *io.inputs[0].shape[1:]))  # batch 2: a batch of 1 would be specialised
        program = torch.onnx.export(
            net.eval(),
            (example,),
            input_names=[io.inputs[0].name],
            output_names=[o.name for o in io.outputs],
            dynamic_shapes=({0: "batch"},),
            opset_version=max(opset, TORCH_OPSET),
            dynamo=True,
            verbose=False,
        )
        return strip_trace(program.model_proto)


def strip_trace(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop the exporter's per-node stack traces and source paths: they name the checkout's
    directory, so the same model would give other bytes on another machine."""
    for graph in [model.graph, *(a.g for n in model.graph.node for a in n.attribute if a.HasField("g"))]:
        for node in graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
    del model.metadata_props[:]
    model.doc_string = ""
    return model
