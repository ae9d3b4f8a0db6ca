"""The models being served: swapped whole, never edited, so a request sees one consistent model.

A request takes a reference to a LoadedModel and finishes on it even if a newer version is swapped
in meanwhile; the old session is freed when the last request holding it is done.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from onnxship.contract import BENCHMARK_FILE, METADATA_FILE, MODEL_FILE, ForecastSpec, Task
from onnxship.runtime import InferenceSettings, OnnxModel
from onnxship.version.files import read_vouched
from onnxship.version.schema import parse_metadata
from serving.http.columns import is_columns, warmup_feed
from serving.redact import redact

SLOW_CALL_S = 0.002  # above this a call runs in the thread pool, not on the event loop
COMMAS_PER_CATEGORY = 256  # commas one category value may hold in a /predict body


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    metadata: dict[str, Any]
    model: OnnxModel
    benchmark: dict[str, Any] | None
    loaded_at: float = field(default_factory=time.time)
    call_s: float = 0.0  # median warm-up call: a slow model's requests leave the event loop
    sha256: str = ""  # of the model.onnx bytes this server loaded (hashed here, not taken from metadata)
    native: Any = None  # a NativeSidecar (serving/http/native.py) for a version served natively; model None
    source: dict[str, Any] | None = None  # a shadow candidate: where the shadow replayer loads it from
    forecast: ForecastSpec | None = field(init=False, default=None)

    @property
    def features(self) -> list[str]:
        return self.metadata.get("features", [])

    @property
    def task(self) -> str:
        return self.metadata["task"]

    @property
    def slow(self) -> bool:
        """A call long enough to hold other requests up if it ran on the event loop."""
        return self.call_s > SLOW_CALL_S

    def __post_init__(self) -> None:
        # parsed once at load, not per /forecast request
        spec = ForecastSpec.from_metadata(self.metadata) if self.task == Task.FORECAST else None
        object.__setattr__(self, "forecast", spec)


def session_settings(metadata: dict[str, Any], max_threads: int, quiet: bool = False) -> InferenceSettings:
    """The version's tuned settings, with thread counts clamped to what this worker may use;
    `quiet` (a shadow candidate): its threads never spin, so idle it takes no CPU from the champion."""
    settings = InferenceSettings.from_mapping(metadata["inference_settings"])
    return replace(
        settings,
        intra_op_threads=min(settings.intra_op_threads, max_threads),
        inter_op_threads=min(settings.inter_op_threads, max_threads),
        allow_spinning=settings.allow_spinning and not quiet,
    )


def load_verified(
    name: str,
    version: str,
    folder: Path,
    manifest: dict[str, str],
    warmup_calls: int,
    max_threads: int,
    quiet: bool = False,
) -> LoadedModel:
    """Build the session from the bytes of a folder the watcher verified, hashed again here against
    the manifest it announced (the metadata is checked against the schema again too), and warm
    it up before it serves."""
    files = read_vouched(folder, manifest)
    metadata = parse_metadata(files[METADATA_FILE])
    benchmark = json.loads(files[BENCHMARK_FILE]) if BENCHMARK_FILE in files else None
    settings = session_settings(metadata, max_threads, quiet)
    metadata["inference_settings"] = settings.as_dict()  # what /models shows is what runs
    model = OnnxModel(files[MODEL_FILE], settings, allow_nan=bool(metadata.get("accepts_nan", False)))
    if loaded_forecast := metadata["task"] == Task.FORECAST:
        feed = ForecastSpec.from_metadata(metadata).example_feed()
    elif is_columns(metadata):
        feed = warmup_feed(metadata)
    else:
        # the graph's own example shape (the probe checked it against the metadata)
        feed = {model.input_name: np.zeros((1, *model.input_shape), dtype=np.float32)}
    seconds = []
    for _ in range(max(warmup_calls, 1 if loaded_forecast else 0)):
        started = time.perf_counter()
        model.run_feed(feed)
        seconds.append(time.perf_counter() - started)
    call_s = statistics.median(seconds[len(seconds) // 2 :]) if seconds else 0.0
    return LoadedModel(
        name, str(version), metadata, model, benchmark, call_s=call_s, sha256=manifest[MODEL_FILE]
    )


def describe_verified(name: str, version: str, folder: Path, manifest: dict[str, str]) -> LoadedModel:
    """A shadow candidate as the server holds it: its verified metadata and where its bytes are.
    Its session is built by the shadow replayer (serving/http/shadow_replayer.py) from the same
    folder, hashed again there; the server itself never runs a candidate."""
    files = read_vouched(folder, manifest)
    metadata = parse_metadata(files[METADATA_FILE])
    source = {"folder": str(folder), "manifest": manifest}
    return LoadedModel(name, str(version), metadata, None, None, sha256=manifest[MODEL_FILE], source=source)


class ModelStore:
    def __init__(self, names: list[str]) -> None:
        self.names = list(names)
        self._models: dict[str, LoadedModel] = {}
        self._status: dict[str, str] = {n: "waiting for the registry" for n in names}
        self._pending: dict[str, str] = {}
        self._lock = threading.Lock()
        self.widest_row: int | None = None  # most features of a loaded model (bounds request sizes)

    def get(self, name: str) -> LoadedModel | None:
        return self._models.get(name)

    def swap(self, loaded: LoadedModel) -> LoadedModel | None:
        with self._lock:
            old = self._models.get(loaded.name)
            self._publish({**self._models, loaded.name: loaded})
            self._status[loaded.name] = "serving"
            self._pending.pop(loaded.name, None)
            return old

    def _publish(self, models: dict[str, LoadedModel]) -> None:
        self._models = models  # one reference assignment: readers see old or new, never half
        # commas a row of this model can hold: one per feature, any inside its names, and for a
        # category column those inside its value (up to COMMAS_PER_CATEGORY: a longer list of
        # commas in one category is refused as an oversized body)
        widths = [
            len(m.features)
            + sum(f.count(",") for f in m.features)
            + COMMAS_PER_CATEGORY * sum(c["type"] == "string" for c in m.metadata.get("columns") or [])
            for m in models.values()
            if m.forecast is None
        ]
        self.widest_row = max(widths) if widths else None

    def withdraw(self, name: str, status: str) -> LoadedModel | None:
        """Stop serving `name` (its copy is not what the registry vouches for)."""
        with self._lock:
            models = dict(self._models)
            old = models.pop(name, None)
            self._publish(models)
            self._status[name] = redact(status)
            self._pending.pop(name, None)
            return old

    def pending(self, name: str, text: str | None) -> None:
        """An alias move that is not served yet and why (None: nothing waiting)."""
        with self._lock:
            if text is None:
                self._pending.pop(name, None)
            else:
                self._pending[name] = redact(text)

    def waiting(self, name: str) -> str | None:
        return self._pending.get(name)

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
