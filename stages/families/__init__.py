"""Model families, registered by decorator: adding one = one module with one @register class.

A family knows how to build/fit an estimator from zoo params, save and load it in its native
format, predict natively, and convert to ONNX (graph standardized to stages.onnx_graph's contract).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx

from stages.common.errors import ModelLoadError, UnknownEntryError
from stages.common.registry import Registry


@dataclass
class Prediction:
    """Native or ONNX output in one shape: regression values, or class labels + probabilities."""

    values: np.ndarray  # regression: float64 (N,); classification: int64 labels (N,)
    proba: np.ndarray | None = None  # classification: float64 (N, n_classes)


class Family:
    name: ClassVar[str]
    native_file: ClassVar[str]  # file name inside models/native/<model>/
    converter: ClassVar[str]  # library that writes the ONNX graph
    estimator_types: ClassVar[tuple[str, ...]] = ()  # class names this family recognises
    accepts_nan: ClassVar[bool] = True  # native model takes NaN features (missing values)

    def build(self, params: dict, task: str, seed: int) -> Any:
        raise NotImplementedError(f"family '{self.name}' cannot be trained here; give a model file (path:)")

    def fit(self, est: Any, X: np.ndarray, y: np.ndarray) -> Any:
        return est.fit(X, y)

    def make_reproducible(self, est: Any) -> None:
        """Drop what makes two identical trainings save to different bytes (run ids, timestamps):
        DVC compares outputs by content, and a changed file re-runs the model's whole chain."""

    def save(self, est: Any, path: Path) -> None:
        est.save_model(str(path))

    def load(self, path: Path, task: str) -> Any:
        raise NotImplementedError

    def predict(self, est: Any, X: np.ndarray, task: str) -> Prediction:
        if task == "regression":
            return Prediction(np.asarray(est.predict(X), dtype=np.float64).reshape(-1))
        proba = np.asarray(est.predict_proba(X), dtype=np.float64)
        return Prediction(np.asarray(est.predict(X)).reshape(-1).astype(np.int64), proba)

    def to_onnx(self, est: Any, n_features: int, task: str, opset: int) -> onnx.ModelProto:
        raise NotImplementedError

    def load_checked(self, path: Path, task: str) -> Any:
        """load(), turning library errors on a missing or corrupt file into ModelLoadError."""
        if not path.is_file():
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
    import json

    meta_path = Path(native_dir) / "meta.json"
    if not meta_path.is_file():
        raise ModelLoadError(f"no meta.json in {native_dir}: run the train stage first")
    meta = json.loads(meta_path.read_text())
    family = get(meta["family"])
    return family, family.load_checked(Path(native_dir) / meta["native_file"], meta["task"]), meta


def accepts_nan(family: Family, est: Any) -> bool:
    """Stacking accepts NaN when every base does (its meta-model only sees base outputs)."""
    if type(est).__name__ in ("StackingRegressor", "StackingClassifier"):
        return all(family_of(b).accepts_nan for b in est.estimators_)
    return family.accepts_nan
