"""Version folders (model.onnx + onnxship.json) small enough to build in milliseconds, for the
fast HTTP tests: a linear regressor, a 3-class classifier with named classes, and the toy
forecaster. Their answers are known in closed form, so tests check values, not only shapes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxship.io import sha256_file
from tests import toy_forecaster

FEATURES = ["a", "b", "c"]
WEIGHTS = np.array([[1.0], [2.0], [3.0]], np.float32)  # prediction = a + 2b + 3c
CLASSES = ["low", "mid", "high"]
SETTINGS = {"providers": ["CPUExecutionProvider"], "intra_op_threads": 1, "inter_op_threads": 1}


def _model(nodes, outputs, inits) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", len(FEATURES)])],
        outputs,
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    return model


def regressor() -> onnx.ModelProto:
    return _model(
        [helper.make_node("MatMul", ["input", "w"], ["prediction"])],
        [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(WEIGHTS, "w")],
    )


def classifier() -> onnx.ModelProto:
    """probabilities = softmax(input @ I): the class of the largest feature wins."""
    return _model(
        [
            helper.make_node("MatMul", ["input", "eye"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
        ],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", len(CLASSES)]),
        ],
        [numpy_helper.from_array(np.eye(3, dtype=np.float32), "eye")],
    )


def gatherer() -> onnx.ModelProto:
    """prediction = [10, 20, 30][int(a)]: answers for a in {0, 1, 2}; any other `a` makes ONNX
    Runtime fail inside session.run (index out of bounds), the way a real graph can at run time."""
    return _model(
        [
            helper.make_node("Slice", ["input", "zero", "one", "one"], ["first"]),
            helper.make_node("Cast", ["first"], ["index"], to=TensorProto.INT64),
            helper.make_node("Gather", ["table", "index"], ["prediction"], axis=0),
        ],
        [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, ["batch", 1])],
        [
            numpy_helper.from_array(np.array([10.0, 20.0, 30.0], np.float32), "table"),
            numpy_helper.from_array(np.array([0], np.int64), "zero"),
            numpy_helper.from_array(np.array([1], np.int64), "one"),
        ],
    )


def _costly(extra_nodes, extra_inits) -> onnx.ModelProto:
    """The regressor (a + 2b + 3c) plus work that depends on the input (so never constant-folded)
    whose result is multiplied by 0: answers like regressor(), costs what `extra_nodes` cost.
    `extra_nodes` turn the scalar `unit` (always 1) into a tensor `work`."""
    nodes = [
        helper.make_node("MatMul", ["input", "w"], ["linear"]),
        helper.make_node("ReduceSum", ["input"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["nothing", "one"], ["unit"]),
        *extra_nodes,
        helper.make_node("ReduceMax", ["work"], ["peak"], keepdims=0),
        helper.make_node("Mul", ["peak", "zero"], ["none"]),
        helper.make_node("Add", ["linear", "none"], ["prediction"]),
    ]
    inits = [
        numpy_helper.from_array(WEIGHTS, "w"),
        numpy_helper.from_array(np.array(0, np.float32), "zero"),
        numpy_helper.from_array(np.array(1, np.float32), "one"),
        *extra_inits,
    ]
    return _model(
        nodes, [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, ["batch", 1])], inits
    )


def slow(n: int = 2000) -> onnx.ModelProto:
    """A valid regressor whose every call squares an [n, n] matrix: n=2000 takes about 0.25 s on one
    thread of this machine, a file of a few hundred bytes."""
    return _costly(
        [
            helper.make_node("Expand", ["unit", "square"], ["big"]),
            helper.make_node("MatMul", ["big", "big"], ["work"]),
        ],
        [numpy_helper.from_array(np.array([n, n], np.int64), "square")],
    )


def hungry(floats: int = 200_000_000) -> onnx.ModelProto:
    """A valid regressor whose every call fills `floats` float32s (800 MB by default): a few hundred
    bytes of graph that a server would load without a memory budget."""
    return _costly(
        [helper.make_node("Expand", ["unit", "count"], ["work"])],
        [numpy_helper.from_array(np.array([floats], np.int64), "count")],
    )


def write_version(folder: Path, model: onnx.ModelProto, task: str, **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")
    metadata = {
        "model": folder.parent.name,
        "variant": "base",
        "task": task,
        "features": FEATURES,
        "classes": CLASSES if task == "classification" else None,
        "inference_settings": SETTINGS,
        "accepts_nan": False,
        "gates": {"export": True, "parity": True, "benchmark": True},
        "sha256": sha256_file(folder / "model.onnx"),
        **extra,
    }
    (folder / "onnxship.json").write_text(json.dumps(metadata))
    (folder / "benchmark.json").write_text(json.dumps({"runtimes": {"native": {}, "base": {}}}))
    return folder


FORECAST = toy_forecaster.metadata(
    context_length=16, horizon=4, levels=[0.1, 0.5, 0.9], covariates=[{"name": "temperature", "future": True}]
)


def build_all(root: Path) -> dict[str, Path]:
    """name -> version folder for each tiny model."""
    forecaster = root / "toy_forecaster" / "v1"
    toy_forecaster.export_version(forecaster, {**FORECAST, "inference_settings": SETTINGS})
    return {
        "tiny_reg": write_version(root / "tiny_reg" / "v1", regressor(), "regression"),
        "tiny_clf": write_version(root / "tiny_clf" / "v1", classifier(), "classification"),
        "toy_forecaster": forecaster,
    }
