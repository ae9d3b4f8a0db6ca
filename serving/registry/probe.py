"""Load a downloaded model and run smoke inferences within budgets:
`python -m serving.registry.probe <folder> [--max-call-s S] [--max-call-bytes B]`.

Run as a child process by the watcher, so a graph that crashes ONNX Runtime only kills this
process. Each call is timed and its memory measured here (the peak resident size is reset before
the calls, /proc/self/clear_refs, and read after): a model slower or hungrier per call than the
budget is refused before the server ever loads it. Prints a JSON line with the outputs' shapes
and the costs; exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from onnxship.contract import METADATA_FILE, MODEL_FILE, OUTPUTS, ForecastSpec, Task
from onnxship.runtime import InferenceSettings, OnnxModel
from onnxship.version.files import read_vouched
from onnxship.version.schema import parse_metadata
from serving.http.columns import warmup_feed
from serving.registry.fetch import ProbeBudget, die_with_parent

CALLS = 3  # timed after the smoke call (lazy allocations, kernel selection)


def resident_bytes(field: str) -> int:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


class CallCosts:
    """Time and memory of the model's calls. Started right after the session is built: the peak
    resident size is reset then (/proc/self/clear_refs) and compared after the calls with the
    size before them, so what a call allocates counts even when ONNX Runtime's arena keeps it."""

    def __init__(self, max_call_s: float, max_call_bytes: int) -> None:
        self.max_call_s, self.max_call_bytes = max_call_s, max_call_bytes
        self.before = resident_bytes("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # peak := now

    def check_memory(self) -> int:
        peak = max(0, resident_bytes("VmHWM") - self.before)
        if peak > self.max_call_bytes:
            budget = f"the budget of {self.max_call_bytes >> 20} MiB"
            raise ValueError(f"one call takes {peak >> 20} MiB of memory, over {budget}")
        return peak

    def measure(self, call: Callable[[], object]) -> dict:
        """After the smoke call: CALLS timed calls; refuse a median over `max_call_s`, or a peak
        over `max_call_bytes`."""
        self.check_memory()  # the smoke call alone may be over the budget: spare the timed calls
        seconds = []
        for _ in range(CALLS):
            started = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - started)
            if seconds[0] > 2 * self.max_call_s:
                break  # already hopeless
        median = statistics.median(seconds)
        if median > self.max_call_s:
            raise ValueError(f"one call takes {median:.2f} s, over the budget of {self.max_call_s:g} s")
        return {"call_s": round(median, 6), "call_bytes": self.check_memory()}


def main(
    folder: Path,
    max_call_s: float = ProbeBudget.max_call_s,
    max_call_bytes: int = ProbeBudget.max_call_bytes,
    manifest: dict[str, str] | None = None,
) -> dict:
    """`manifest`: the sha256 each file must have; the bytes are read once, checked, and loaded."""
    if manifest:
        files = read_vouched(folder, manifest)
    else:
        files = {name: (folder / name).read_bytes() for name in (METADATA_FILE, MODEL_FILE)}
    metadata = parse_metadata(files[METADATA_FILE])
    model = OnnxModel(files[MODEL_FILE], InferenceSettings.from_mapping(metadata["inference_settings"]))
    costs = CallCosts(max_call_s, max_call_bytes)
    if metadata["task"] == Task.FORECAST:
        result = probe_forecaster(model, metadata)
        feed = ForecastSpec.from_metadata(metadata).example_feed(batch=2)
        return result | costs.measure(lambda: model.run_feed(feed))
    feed = example_rows(model, metadata)
    expected = OUTPUTS[metadata["task"]]
    if model.output_names != expected:
        raise ValueError(f"graph outputs {model.output_names}, expected {expected}")
    shapes = {name: list(value.shape) for name, value in zip(expected, model.run_feed(feed), strict=True)}
    if any(shape[0] != 2 for shape in shapes.values()):
        raise ValueError(f"batch of 2 gave output shapes {shapes}")
    if metadata["task"] == Task.CLASSIFICATION and shapes["probabilities"] != [2, len(metadata["classes"])]:
        raise ValueError(
            f"{len(metadata['classes'])} classes, the graph gives probabilities {shapes['probabilities']}"
        )
    return {"ok": True, "shapes": shapes} | costs.measure(lambda: model.run_feed(feed))


# the session's input types a column type must have
COLUMN_TYPES = {"float32": "tensor(float)", "string": "tensor(string)"}


def example_rows(model: OnnxModel, metadata: dict) -> dict[str, np.ndarray]:
    """Two rows of zeros (missing categories) in the graph's inputs, after checking that the graph
    takes what the metadata says: its feature matrix of that shape, or its typed columns."""
    if metadata.get("layout") == "columns":
        taken = [(i.name, i.type) for i in model.session.get_inputs()]
        declared = [(c["name"], COLUMN_TYPES[c["type"]]) for c in metadata["columns"]]
        if taken != declared:
            raise ValueError(
                f"graph takes {len(taken)} inputs that are not the metadata's {len(declared)} columns"
            )
        return {k: np.repeat(v, 2, axis=0) for k, v in warmup_feed(metadata).items()}
    # one example's shape: [n_features] for rows, e.g. [1, 8, 8] for images
    shape = metadata.get("input_shape") or [len(metadata["features"])]
    if model.input_shape != shape or int(np.prod(shape)) != len(metadata["features"]):
        raise ValueError(
            f"graph takes examples of shape {model.input_shape}, metadata says {shape} "
            f"({len(metadata['features'])} features)"
        )
    return {model.input_name: np.zeros((2, *shape), dtype=np.float32)}


def probe_forecaster(model: OnnxModel, metadata: dict) -> dict:
    spec = ForecastSpec.from_metadata(metadata)
    spec.check_graph_io([i.name for i in model.session.get_inputs()], model.output_names)
    (quantiles,) = model.run_feed(spec.example_feed(batch=2))
    spec.check_output(quantiles, batch=2)
    if not np.isfinite(quantiles).all():
        raise ValueError("a plain sine-wave context gave non-finite quantiles")
    return {"ok": True, "shapes": {"quantiles": list(quantiles.shape)}}


if __name__ == "__main__":
    die_with_parent()
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--max-call-s", type=float, default=ProbeBudget.max_call_s)
    parser.add_argument("--max-call-bytes", type=int, default=ProbeBudget.max_call_bytes)
    parser.add_argument("--manifest", type=json.loads, default=None, help="JSON {file: sha256}")
    args = parser.parse_args()
    try:
        print(json.dumps(main(args.folder, args.max_call_s, args.max_call_bytes, args.manifest)))
    except Exception as err:
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        raise SystemExit(1) from None
