"""CatBoost: native .cbm file, ONNX through CatBoost's own exporter."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import onnx

from onnxship.contract import ModelIO
from onnxship.families import Family, register


@register
class CatBoostFamily(Family):
    name = "catboost"
    group = "boosting"
    native_file = "model.cbm"
    converter = "catboost"
    estimator_types = ("CatBoostRegressor", "CatBoostClassifier")

    tiny_spec: ClassVar[dict[str, Any]] = {"params": {"iterations": 15, "depth": 3, "verbose": 0}}

    def estimator(self, params: dict, task: str, seed: int) -> Any:
        import catboost

        cls = catboost.CatBoostRegressor if task == "regression" else catboost.CatBoostClassifier
        # allow_writing_files=False: no catboost_info/ litter in the working tree
        return cls(random_seed=seed, allow_writing_files=False, **params)

    def make_reproducible(self, est: Any) -> None:
        # CatBoost stamps a random model_guid and the finish time into every model; the guid
        # becomes a digest of the model itself, so it stays unique per model and reproducible
        meta = est.get_metadata()
        if meta.get("train_finish_time") is not None:
            del meta["train_finish_time"]
        meta["model_guid"] = "0"
        with tempfile.TemporaryDirectory() as tmp:
            est.save_model(str(Path(tmp) / "model.cbm"))
            digest = hashlib.sha256((Path(tmp) / "model.cbm").read_bytes()).hexdigest()
        meta["model_guid"] = "-".join(digest[i : i + 8] for i in range(0, 32, 8))

    def load(self, path: Path, task: str) -> Any:
        import catboost

        est = (catboost.CatBoostRegressor if task == "regression" else catboost.CatBoostClassifier)()
        est.load_model(str(path))
        return est

    def predict(self, est: Any, X, task: str):
        import numpy as np

        from onnxship.contract import Prediction

        if task == "regression":
            return Prediction(np.asarray(est.predict(X), dtype=np.float64).reshape(-1))
        proba = np.asarray(est.predict_proba(X), dtype=np.float64)
        return Prediction(proba.argmax(axis=1).astype(np.int64), proba)

    def to_onnx(self, est: Any, io: ModelIO, opset: int) -> onnx.ModelProto:
        if est.get_cat_feature_indices():
            raise NotImplementedError("CatBoost's ONNX export does not support categorical features")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            est.save_model(
                str(path),
                format="onnx",
                export_parameters={"onnx_domain": "ai.catboost", "onnx_model_version": 1},
            )
            model = onnx.load(str(path))
        if io.task == "regression":
            # CatBoost declares its regression output as [N] but returns [N, 1]
            dims = model.graph.output[0].type.tensor_type.shape.dim
            if len(dims) == 1:
                dims.add().dim_value = 1
        return model
