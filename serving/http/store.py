"""The models being served: swapped whole, never edited, so a request sees one consistent model.

A request takes a reference to a LoadedModel and finishes on it even if a newer version is swapped
in meanwhile; the old session is freed when the last request holding it is done.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from onnxship.contract import BENCHMARK_FILE, METADATA_FILE, MODEL_FILE, ForecastSpec, Task
from onnxship.runtime import InferenceSettings, OnnxModel
from onnxship.version.schema import parse_metadata
from serving.http.redact import redact


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    metadata: dict[str, Any]
    model: OnnxModel
    benchmark: dict[str, Any] | None
    loaded_at: float = field(default_factory=time.time)
    forecast: ForecastSpec | None = field(init=False, default=None)

    @property
    def features(self) -> list[str]:
        return self.metadata.get("features", [])

    @property
    def task(self) -> str:
        return self.metadata["task"]

    def __post_init__(self) -> None:
        # parsed once at load, not per /forecast request
        spec = ForecastSpec.from_metadata(self.metadata) if self.task == Task.FORECAST else None
        object.__setattr__(self, "forecast", spec)


def session_settings(metadata: dict[str, Any], max_threads: int) -> InferenceSettings:
    """The version's tuned settings, with thread counts clamped to what this worker may use."""
    settings = InferenceSettings.from_mapping(metadata["inference_settings"])
    return replace(
        settings,
        intra_op_threads=min(settings.intra_op_threads, max_threads),
        inter_op_threads=min(settings.inter_op_threads, max_threads),
    )


def load_verified(name: str, version: str, folder: Path, warmup_calls: int, max_threads: int) -> LoadedModel:
    """Build the session from a folder the watcher verified (its metadata is checked against the
    schema again here), and warm it up before it serves."""
    metadata = parse_metadata((folder / METADATA_FILE).read_bytes())
    bench_path = folder / BENCHMARK_FILE
    benchmark = json.loads(bench_path.read_bytes()) if bench_path.is_file() else None
    settings = session_settings(metadata, max_threads)
    metadata["inference_settings"] = settings.as_dict()  # what /models shows is what runs
    model = OnnxModel(folder / MODEL_FILE, settings, allow_nan=bool(metadata.get("accepts_nan", False)))
    loaded = LoadedModel(name, str(version), metadata, model, benchmark)
    if loaded.forecast is not None:
        feed = loaded.forecast.example_feed()
    else:
        # the graph's own example shape (the probe checked it against the metadata)
        feed = {model.input_name: np.zeros((1, *model.input_shape), dtype=np.float32)}
    for _ in range(warmup_calls):
        model.run_feed(feed)
    return loaded


class ModelStore:
    def __init__(self, names: list[str]) -> None:
        self.names = list(names)
        self._models: dict[str, LoadedModel] = {}
        self._status: dict[str, str] = {n: "waiting for the registry" for n in names}
        self._lock = threading.Lock()
        self.widest_row: int | None = None  # most features of a loaded model (bounds request sizes)

    def get(self, name: str) -> LoadedModel | None:
        return self._models.get(name)

    def swap(self, loaded: LoadedModel) -> LoadedModel | None:
        with self._lock:
            old = self._models.get(loaded.name)
            models = dict(self._models)
            models[loaded.name] = loaded
            self._models = models  # one reference assignment: readers see old or new, never half
            # commas a row of this model can hold: one per feature, and any inside its names
            widths = [
                len(m.features) + sum(f.count(",") for f in m.features)
                for m in models.values()
                if m.forecast is None
            ]
            self.widest_row = max(widths) if widths else None
            self._status[loaded.name] = "serving"
            return old

    def note(self, name: str, status: str) -> None:
        """Why a model is not (or not the newest version) being served (no host paths in it)."""
        with self._lock:
            self._status[name] = redact(status)

    def status(self, name: str) -> str:
        return self._status.get(name, "not configured")

    def ready(self) -> bool:
        return all(n in self._models for n in self.names)

    def not_ready_reasons(self) -> dict[str, str]:
        return {n: self._status[n] for n in self.names if n not in self._models}
