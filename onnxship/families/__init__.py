"""Model families, registered by decorator: adding one = one module with one @register class.

A family knows how to build/fit an estimator from zoo params, save and load it in its native
format, predict natively, and convert to ONNX (onnxship.graph.standardize brings the graph to
onnxship.contract).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx

from onnxship.contract import NATIVE_META, ModelIO, Prediction, Task
from onnxship.errors import ModelLoadError, UnknownEntryError
from onnxship.plugins import Registry


class Family:
    """One model family. Callers never name a family: whatever a family needs (other zoo entries
    for ensembles, a verdict on missing values) goes through these methods."""

    name: ClassVar[str]
    group: ClassVar[str] = "other"  # the family group the summary ranks it in
    native_file: ClassVar[str]  # file name inside models/native/<model>/
    converter: ClassVar[str]  # library that writes the ONNX graph
    estimator_types: ClassVar[tuple[str, ...]] = ()  # class names this family recognises
    accepts_nan: ClassVar[bool] = True  # native model takes NaN features (missing values)
    tasks: ClassVar[tuple[str, ...]] = (Task.REGRESSION, Task.CLASSIFICATION)
    # a zoo entry (without `family`) that trains in well under a second: the completeness test
    # (tests/test_families.py) runs every registered family through every step with it
    tiny_spec: ClassVar[dict[str, Any]] = {}

    def build(self, spec: Mapping[str, Any], zoo: Mapping[str, Any], task: str, seed: int) -> Any:
        """An unfitted estimator from its zoo entry; `zoo` is every entry (ensembles build their
        parts from it)."""
        return self.estimator(dict(spec.get("params") or {}), task, seed)

    def estimator(self, params: dict, task: str, seed: int) -> Any:
        raise NotImplementedError(f"family '{self.name}' cannot be trained here; give a model file (path:)")

    def takes_missing_values(self, est: Any) -> bool:
        """Whether this fitted model takes NaN features (validate tests missing values only then)."""
        return self.accepts_nan

    def fit(self, est: Any, X: np.ndarray, y: np.ndarray) -> Any:
        return est.fit(X, y)

    def make_reproducible(self, est: Any) -> None:
        """Drop what makes two identical trainings save to different bytes (run ids, timestamps):
        DVC compares outputs by content, and a changed file re-runs the model's whole chain."""

    def save(self, est: Any, path: Path) -> None:
        est.save_model(str(path))

    def bring(self, source: Path, spec: Mapping[str, Any], task: str) -> Any:
        """A model file a user brings (`path:`), loaded and so proven sound."""
        return self.load_checked(source, task)

    def store_brought(self, source: Path, est: Any, native: Path) -> None:
        """Put a brought model into the model folder: its own bytes, unless the family must add
        what later stages need to load it."""
        shutil.copyfile(source, native)

    def native_call(self, est: Any, meta: dict) -> Any:
        """What the benchmark times natively: feed (the graph's inputs by name) -> answer."""
        task = meta["task"]
        return lambda feed: self.predict(est, feed["input"], task)

    def set_threads(self, threads: int) -> None:
        """Make native prediction use this many threads, where the library has one global setting
        (the benchmark gives native the threads ONNX Runtime gets)."""

    def load(self, path: Path, task: str) -> Any:
        raise NotImplementedError

    def predict(self, est: Any, X: np.ndarray, task: str) -> Prediction:
        if task == "regression":
            return Prediction(np.asarray(est.predict(X), dtype=np.float64).reshape(-1))
        proba = np.asarray(est.predict_proba(X), dtype=np.float64)
        return Prediction(np.asarray(est.predict(X)).reshape(-1).astype(np.int64), proba)

    def to_onnx(self, est: Any, io: ModelIO, opset: int) -> onnx.ModelProto:
        """The ONNX graph of a fitted estimator, for the I/O contract `io` (names may still be the
        converter's: onnxship.graph.standardize renames them)."""
        raise NotImplementedError

    def load_checked(self, path: Path, task: str) -> Any:
        """load(), turning library errors on a missing or corrupt file into ModelLoadError."""
        if not path.exists():  # a file, or a folder (checkpoints saved with save_pretrained)
            raise ModelLoadError(f"{self.name}: model file not found: {path}")
        try:
            return self.load(path, task)
        except ModelLoadError:
            raise
        except Exception as err:
            raise ModelLoadError(
                f"{self.name}: cannot load {path} (corrupt or not a {self.name} model): "
                f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            ) from err


FAMILIES: Registry[Family] = Registry("model family", __name__)
register, get, names = FAMILIES.register, FAMILIES.get, FAMILIES.names


def family_of(est: Any) -> Family:
    """The registered family whose estimator types include this fitted estimator's class."""
    kind = type(est).__name__
    for cls in FAMILIES.classes().values():
        if kind in cls.estimator_types:
            return cls()
    raise UnknownEntryError(f"no registered family handles estimator type {kind}")


def float_input(n_features: int, library: str = "skl2onnx") -> list:
    """initial_types for a converter: onnxmltools checks for its own FloatTensorType class."""
    if library == "onnxmltools":
        from onnxmltools.convert.common.data_types import FloatTensorType
    else:
        from skl2onnx.common.data_types import FloatTensorType

    return [("input", FloatTensorType([None, n_features]))]


def load_native(native_dir: Path) -> tuple[Family, Any, dict]:
    """(family, estimator, meta) of a trained model folder written by the train stage."""
    meta_path = Path(native_dir) / NATIVE_META
    if not meta_path.is_file():
        raise ModelLoadError(f"no {NATIVE_META} in {native_dir}: run the train stage first")
    meta = json.loads(meta_path.read_text())
    family = get(meta["family"])
    return family, family.load_checked(Path(native_dir) / meta["native_file"], meta["task"]), meta
