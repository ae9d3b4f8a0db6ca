"""Load a downloaded model and run one smoke inference: `python -m serving.registry.probe <folder>`.

Run as a child process by the watcher, so a graph that crashes ONNX Runtime only kills this
process. Prints a JSON line with the outputs' shapes; exits non-zero on any failure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from onnxship.contract import METADATA_FILE, MODEL_FILE, OUTPUTS, ForecastSpec, Task
from onnxship.runtime import InferenceSettings, OnnxModel
from onnxship.version.schema import parse_metadata


def main(folder: Path) -> dict:
    metadata = parse_metadata((folder / METADATA_FILE).read_bytes())
    model = OnnxModel(folder / MODEL_FILE, InferenceSettings.from_mapping(metadata["inference_settings"]))
    if metadata["task"] == Task.FORECAST:
        return probe_forecaster(model, metadata)
    # one example's shape: [n_features] for rows, e.g. [1, 8, 8] for images
    shape = metadata.get("input_shape") or [len(metadata["features"])]
    if model.input_shape != shape or int(np.prod(shape)) != len(metadata["features"]):
        raise ValueError(
            f"graph takes examples of shape {model.input_shape}, metadata says {shape} "
            f"({len(metadata['features'])} features)"
        )
    expected = OUTPUTS[metadata["task"]]
    if model.output_names != expected:
        raise ValueError(f"graph outputs {model.output_names}, expected {expected}")
    outputs = model.run(np.zeros((2, *shape), dtype=np.float32))
    shapes = {name: list(value.shape) for name, value in outputs.items()}
    if any(shape[0] != 2 for shape in shapes.values()):
        raise ValueError(f"batch of 2 gave output shapes {shapes}")
    if metadata["task"] == Task.CLASSIFICATION and shapes["probabilities"] != [2, len(metadata["classes"])]:
        raise ValueError(
            f"{len(metadata['classes'])} classes, the graph gives probabilities {shapes['probabilities']}"
        )
    return {"ok": True, "shapes": shapes}


def probe_forecaster(model: OnnxModel, metadata: dict) -> dict:
    spec = ForecastSpec.from_metadata(metadata)
    spec.check_graph_io([i.name for i in model.session.get_inputs()], model.output_names)
    (quantiles,) = model.run_feed(spec.example_feed(batch=2))
    spec.check_output(quantiles, batch=2)
    if not np.isfinite(quantiles).all():
        raise ValueError("a plain sine-wave context gave non-finite quantiles")
    return {"ok": True, "shapes": {"quantiles": list(quantiles.shape)}}


if __name__ == "__main__":
    try:
        print(json.dumps(main(Path(sys.argv[1]))))
    except Exception as err:
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        raise SystemExit(1) from None
