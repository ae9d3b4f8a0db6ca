"""XGBoost: native JSON model file, ONNX through onnxmltools."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

import onnx

from onnxship.contract import ModelIO
from onnxship.families import Family, float_input, register
from onnxship.graph import columns_front


@register
class XGBoostFamily(Family):
    name = "xgboost"
    group = "boosting"
    loader_imports = ("xgboost",)
    native_file = "model.json"
    converter = "onnxmltools"
    estimator_types = ("XGBRegressor", "XGBClassifier")
    native_faster_why = (
        "XGBoost's own predictor walks each tree for blocks of rows at a time; at this size even "
        "compiled trees (TL2cgen) do not beat it (reports/peers/trees.json)"
    )
    layouts = ("rows", "columns")
    codes_categories_per_call = True  # categorical_frame, as the graph's LabelEncoders do

    tiny_spec: ClassVar[dict[str, Any]] = {"params": {"n_estimators": 15, "max_depth": 3}}

    def estimator(self, params: dict, task: str, seed: int) -> Any:
        import xgboost

        cls = xgboost.XGBRegressor if task == "regression" else xgboost.XGBClassifier
        return cls(random_state=seed, **params)

    def build_columns(self, spec, zoo, task: str, seed: int, columns: list[dict]) -> Any:
        est = self.build(spec, zoo, task, seed)
        est.set_params(enable_categorical=True, tree_method="hist")  # category columns, natively
        return est

    def native_frame(self, est: Any, frame: Any, columns: list[dict]) -> Any:
        """Categories as pandas `category` columns of the schema's values: XGBoost codes them by
        position, so training and prediction must share one list (an unknown value is missing)."""
        from onnxship.families.lightgbm import categorical_frame

        return categorical_frame(frame, columns)

    def library_call(self, est: Any, task: str) -> Any:
        predict = super().library_call(est, task)

        def call(X: Any) -> Any:
            if self.threads and est.n_jobs != self.threads:  # an attribute read: get_params() costs µs
                est.set_params(n_jobs=self.threads)  # XGBoost's own count, applied at each call
            return predict(X)

        return call

    def load(self, path: Path, task: str) -> Any:
        import xgboost

        est = (xgboost.XGBRegressor if task == "regression" else xgboost.XGBClassifier)()
        est.load_model(str(path))
        return est

    def to_onnx(self, est: Any, io: ModelIO, opset: int) -> onnx.ModelProto:
        import onnxmltools

        # onnxmltools reads feature indices from names f0..fN: a model trained on a DataFrame names
        # its features after the columns, so a copy without names is converted (same trees)
        if est.get_booster().feature_names is not None:
            est = copy.deepcopy(est)
            est.get_booster().feature_names = None
        width = len(io.inputs) if io.takes_columns else io.n_features
        model = onnxmltools.convert_xgboost(
            est, initial_types=float_input(width, "onnxmltools"), target_opset=min(opset, 15)
        )
        if io.takes_columns:  # categories coded as XGBoost coded them: by position in the schema's list
            model = columns_front(model, [(c["name"], c.get("categories")) for c in io.columns])
        return model
