"""XGBoost: native JSON model file, ONNX through onnxmltools."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import onnx

from onnxship.contract import ModelIO
from onnxship.families import Family, float_input, register


@register
class XGBoostFamily(Family):
    name = "xgboost"
    group = "boosting"
    native_file = "model.json"
    converter = "onnxmltools"
    estimator_types = ("XGBRegressor", "XGBClassifier")

    tiny_spec: ClassVar[dict[str, Any]] = {"params": {"n_estimators": 15, "max_depth": 3}}

    def estimator(self, params: dict, task: str, seed: int) -> Any:
        import xgboost

        cls = xgboost.XGBRegressor if task == "regression" else xgboost.XGBClassifier
        return cls(random_state=seed, **params)

    def load(self, path: Path, task: str) -> Any:
        import xgboost

        est = (xgboost.XGBRegressor if task == "regression" else xgboost.XGBClassifier)()
        est.load_model(str(path))
        return est

    def to_onnx(self, est: Any, io: ModelIO, opset: int) -> onnx.ModelProto:
        import onnxmltools

        # onnxmltools reads feature indices from names f0..fN; models trained on numpy have them
        return onnxmltools.convert_xgboost(
            est, initial_types=float_input(io.n_features, "onnxmltools"), target_opset=min(opset, 15)
        )
