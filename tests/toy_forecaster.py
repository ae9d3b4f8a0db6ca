"""A small forecaster exported to ONNX by the tests, under the serving forecast contract
(serving/forecasting.py), with a NumPy twin to check what the server answers.

Forecast: the mean of the last `window` observed values (missing ones skipped), plus GAMMA times
the sum of the past covariates over that window, plus `beta` times each future covariate
(missing -> 0), plus a spread per quantile level that widens with the step.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxship.contract import ForecastSpec
from onnxship.io import sha256_file
from onnxship.runtime import OnnxModel

GAMMA = 0.001
Z = {0.1: -1.2816, 0.2: -0.8416, 0.5: 0.0, 0.8: 0.8416, 0.9: 1.2816}


def metadata(context_length: int, horizon: int, levels: list[float], covariates: list[dict]) -> dict:
    return {
        "model": "toy_forecaster",
        "variant": "base",
        "family": "toy",
        "task": "forecast",
        "features": [],
        "forecast": {
            "context_length": context_length,
            "prediction_length": horizon,
            "quantile_levels": levels,
            "covariates": covariates,
        },
        "inference_settings": {
            "providers": ["CPUExecutionProvider"],
            "intra_op_threads": 1,
            "inter_op_threads": 1,
        },
    }


def spread(spec: ForecastSpec) -> np.ndarray:
    steps = np.sqrt(np.arange(1, spec.prediction_length + 1, dtype=np.float32))
    z = np.array([Z[q] for q in spec.quantile_levels], dtype=np.float32)
    return (steps[:, None] * z[None, :])[None].astype(np.float32)  # [1, H, Q]


def beta(spec: ForecastSpec) -> np.ndarray:
    return np.linspace(0.5, 0.1, max(len(spec.covariates), 1), dtype=np.float32)[: len(spec.covariates)]


def build(spec: ForecastSpec, window: int = 8, opset: int = 17) -> onnx.ModelProto:
    T, H, C = spec.context_length, spec.prediction_length, len(spec.covariates)
    f32 = TensorProto.FLOAT
    init = [
        numpy_helper.from_array(np.array([T - window], dtype=np.int64), "start"),
        numpy_helper.from_array(np.array([T], dtype=np.int64), "end"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array([0.0], dtype=np.float32), "zero"),
        numpy_helper.from_array(np.array([1.0], dtype=np.float32), "one"),
        numpy_helper.from_array(spread(spec), "spread"),
    ]
    nodes = [
        helper.make_node("Slice", ["context", "start", "end", "axis1"], ["recent"]),
        helper.make_node("IsNaN", ["recent"], ["missing"]),
        helper.make_node("Where", ["missing", "zero", "recent"], ["observed"]),
        helper.make_node("Where", ["missing", "zero", "one"], ["seen"]),
        helper.make_node("ReduceSum", ["observed", "axis1"], ["total"], keepdims=1),
        helper.make_node("ReduceSum", ["seen", "axis1"], ["count"], keepdims=1),
        helper.make_node("Max", ["count", "one"], ["count1"]),
        helper.make_node("Div", ["total", "count1"], ["level2d"]),  # [B, 1]
        helper.make_node("Unsqueeze", ["level2d", "axis1"], ["level"]),  # [B, 1, 1]
    ]
    inputs = [helper.make_tensor_value_info("context", f32, ["batch", T])]
    last = "level"
    if C:
        init += [
            numpy_helper.from_array(beta(spec).reshape(C, 1), "beta"),
            numpy_helper.from_array(np.array([GAMMA], dtype=np.float32), "gamma"),
            numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "axes12"),
        ]
        nodes += [
            helper.make_node("IsNaN", ["past_covariates"], ["pmissing"]),
            helper.make_node("Where", ["pmissing", "zero", "past_covariates"], ["past0"]),
            helper.make_node("Slice", ["past0", "start", "end", "axis1"], ["past_recent"]),
            helper.make_node("ReduceSum", ["past_recent", "axes12"], ["past_sum"], keepdims=1),
            helper.make_node("Mul", ["past_sum", "gamma"], ["past_effect"]),  # [B, 1, 1]
            helper.make_node("IsNaN", ["future_covariates"], ["fmissing"]),
            helper.make_node("Where", ["fmissing", "zero", "future_covariates"], ["future0"]),
            helper.make_node("MatMul", ["future0", "beta"], ["effect"]),  # [B, H, 1]
            helper.make_node("Add", ["level", "past_effect"], ["level_past"]),
            helper.make_node("Add", ["level_past", "effect"], ["centre"]),
        ]
        inputs += [
            helper.make_tensor_value_info("past_covariates", f32, ["batch", T, C]),
            helper.make_tensor_value_info("future_covariates", f32, ["batch", H, C]),
        ]
        last = "centre"
    nodes.append(helper.make_node("Add", [last, "spread"], ["quantiles"]))
    graph = helper.make_graph(
        nodes,
        "toy_forecaster",
        inputs,
        [helper.make_tensor_value_info("quantiles", f32, ["batch", H, len(spec.quantile_levels)])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def reference(spec: ForecastSpec, feed: dict[str, np.ndarray], window: int = 8) -> np.ndarray:
    """What the graph computes, in NumPy (float64)."""
    recent = feed["context"][:, -window:].astype(np.float64)
    count = np.maximum((~np.isnan(recent)).sum(axis=1), 1)
    level = (np.nansum(recent, axis=1) / count)[:, None, None]
    out = level + spread(spec).astype(np.float64)
    if spec.covariates:
        past = np.nansum(feed["past_covariates"][:, -window:, :].astype(np.float64), axis=(1, 2))
        out = out + GAMMA * past[:, None, None]
        out = out + np.nan_to_num(feed["future_covariates"].astype(np.float64)) @ beta(spec)[:, None]
    return out


def export_version(folder: Path, meta: dict, window: int = 8, graph=None, native=None) -> dict:
    """model.onnx + onnxship.json, with a parity gate actually measured against the NumPy twin,
    or against `native(spec, feed)` for a given `graph` (e.g. a real Chronos export)."""
    from onnxship.forecasting.rollout import forecast_windows

    spec = ForecastSpec.from_metadata(meta)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(build(spec, window) if graph is None else graph, folder / "model.onnx")
    feed = spec.example_windows(batch=3)
    feed["context"][1, -3:] = np.nan  # missing values inside the window
    if spec.covariates:
        feed["past_covariates"][2, -2:, 0] = np.nan
        feed["future_covariates"][0, 1, -1] = np.nan
    session = OnnxModel(folder / "model.onnx")
    got = forecast_windows(lambda f: session.run_feed(f)[0], spec, feed)
    expected = reference(spec, feed, window) if native is None else native(spec, feed)
    diff = float(np.abs(got - expected).max())
    meta = {
        **meta,
        # benchmark: a hand-built graph is not timed, but serving takes only versions recording
        # every gate (onnxship.version.manifest.GATES), as the package stage writes them
        "gates": {"export": True, "parity": diff < 1e-4, "benchmark": True},
        "parity": {"test_max_abs_diff": diff},
        "sha256": sha256_file(folder / "model.onnx"),
    }
    (folder / "onnxship.json").write_text(json.dumps(meta, indent=2))
    return meta


def register(uri: str, name: str, meta: dict, graph=None, native=None) -> str:
    """Export, log and register one version under `name`; alias `candidate` as the pipeline does."""
    from mlflow.tracking import MlflowClient

    from tests.registry_helpers import register_folder, scratch_dir

    folder = scratch_dir(uri, "forecaster-") / "model"
    export_version(folder, meta, graph=graph, native=native)
    version = register_folder(uri, name, folder)
    MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias(name, "candidate", version)
    return version
