"""PyTorch programs (`torch_export`): a `torch.export` program saved as `.pt2`, the format people
ship a network in without its Python class; ONNX through torch.onnx's dynamo exporter.

For a model brought as a file (`onnxship ship model.pt2`, or a zoo entry's `path:`). Two limits
the `torch` family avoids (its module docstring): the native side times the program's traced
graph, not an eager module, and a `.pt2` carries the exporting machine's source paths, so the same
network exported twice gives other bytes (trained here, the zoo keeps `torch`'s safetensors).
Loading a `.pt2` unpickles its tensors (torch.export.load reads them with weights_only=False):
load only files you trust (`onnxship ship` asks for --trust-pickle).

Trained here (the completeness test): the `torch` family's network, trained, then exported with a
dynamic batch axis.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import onnx

from onnxship.contract import ModelIO, Task
from onnxship.families import register
from onnxship.families.pytorch import TORCH_OPSET, TorchFamily, strip_trace


class Program:
    """A loaded program and its callable module (built once: module() builds a new one each time)."""

    def __init__(self, program: Any) -> None:
        self.program = program
        self.module = program.module()

    def __call__(self, x: Any) -> Any:
        return self.module(x)


@register
class TorchExportFamily(TorchFamily):
    name = "torch_export"
    native_file = "model.pt2"
    converter = "torch.export + torch.onnx (dynamo)"
    reproducible_bytes = False  # a .pt2 embeds source paths: see the module docstring

    tiny_spec: ClassVar[dict[str, Any]] = TorchFamily.tiny_spec

    def fit(self, est: Any, X: Any, y: Any) -> Any:
        import torch

        net = super().fit(est, X, y)
        example = torch.zeros((2, *X.shape[1:]), dtype=torch.float32)  # batch 2: 1 would be specialised
        batch = torch.export.Dim("batch")
        return Program(torch.export.export(net.eval(), (example,), dynamic_shapes=({0: batch},)))

    def save(self, est: Any, path: Path) -> None:
        import torch

        torch.export.save(est.program, str(path))

    def load(self, path: Path, task: str) -> Any:
        import torch

        return Program(torch.export.load(str(path)))

    def bring(self, source: Path, spec: Mapping[str, Any], task: str) -> Any:
        return self.load_checked(source, task)  # the program holds its own graph: no class path

    def store_brought(self, source: Path, est: Any, native: Path) -> None:
        shutil.copyfile(source, native)

    def to_onnx(self, est: Any, io: ModelIO, opset: int) -> onnx.ModelProto:
        import torch

        from onnxship.torch_nets import Classifier

        # no .eval(): an exported program's module refuses it (it is traced in eval already)
        net = Classifier(est.module) if io.task == Task.CLASSIFICATION else est.module
        example = torch.zeros((2, *io.inputs[0].shape[1:]))
        program = torch.onnx.export(
            net,
            (example,),
            input_names=[io.inputs[0].name],
            output_names=[o.name for o in io.outputs],
            dynamic_shapes=({0: "batch"},),
            opset_version=max(opset, TORCH_OPSET),
            dynamo=True,
            verbose=False,
        )
        return strip_trace(program.model_proto)
