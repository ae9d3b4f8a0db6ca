"""LightGBM: native text model file, ONNX through onnxmltools (ZipMap off)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx

from onnxship.contract import ModelIO
from onnxship.families import Family, float_input, register
from onnxship.graph import snap_thresholds


@register
class LightGBMFamily(Family):
    name = "lightgbm"
    group = "boosting"
    native_file = "model.txt"
    converter = "onnxmltools"
    estimator_types = ("LGBMRegressor", "LGBMClassifier", "Booster")

    tiny_spec: ClassVar[dict[str, Any]] = {
        "params": {"n_estimators": 15, "num_leaves": 7, "verbose": -1, "min_child_samples": 5}
    }

    def estimator(self, params: dict, task: str, seed: int) -> Any:
        import lightgbm

        cls = lightgbm.LGBMRegressor if task == "regression" else lightgbm.LGBMClassifier
        return cls(random_state=seed, **params)

    def save(self, est: Any, path: Path) -> None:
        booster = est.booster_ if hasattr(est, "booster_") else est
        booster.save_model(str(path))

    def load(self, path: Path, task: str) -> Any:
        import lightgbm

        booster = lightgbm.Booster(model_file=str(path))
        return booster

    def predict(self, est: Any, X, task: str):
        from onnxship.contract import Prediction

        if hasattr(est, "booster_"):  # fitted sklearn wrapper (e.g. inside a stacking ensemble)
            return super().predict(est, X, task)
        raw = np.asarray(est.predict(X), dtype=np.float64)
        if task == "regression":
            return Prediction(raw.reshape(-1))
        proba = raw if raw.ndim == 2 else np.column_stack([1 - raw, raw])
        return Prediction(proba.argmax(axis=1).astype(np.int64), proba)

    def to_onnx(self, est: Any, io: ModelIO, opset: int) -> onnx.ModelProto:
        import onnxmltools

        booster = est.booster_ if hasattr(est, "booster_") else est
        model = onnxmltools.convert_lightgbm(
            booster,
            initial_types=float_input(io.n_features, "onnxmltools"),
            target_opset=min(opset, 15),
            zipmap=False,
        )
        # onnxmltools rounds LightGBM's float64 thresholds to nearest float32: snap them so
        # float32 inputs take the same branch as in LightGBM
        snap_thresholds(model, split_thresholds(booster))
        return model


def split_thresholds(booster: Any) -> dict[int, np.ndarray]:
    """Every numeric split threshold (float64) per feature index, from LightGBM's model dump."""
    found: dict[int, list[float]] = defaultdict(list)
    stack = [tree["tree_structure"] for tree in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            if node.get("decision_type") == "<=":
                found[int(node["split_feature"])].append(float(node["threshold"]))
            stack += [node["left_child"], node["right_child"]]
    return {f: np.unique(v) for f, v in found.items()}
