"""scikit-learn estimators (joblib files), ONNX through skl2onnx.

`linear` builds Ridge (regression) / LogisticRegression (classification) from zoo params;
`sklearn` takes any already-trained, skl2onnx-convertible estimator saved with joblib.
joblib unpickles: load only files you trust. Serving never does (it reads ONNX only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from stages.families import Family, float_input, register


class _SklearnBase(Family):
    native_file = "model.joblib"
    converter = "skl2onnx"

    def save(self, est: Any, path: Path) -> None:
        import joblib

        joblib.dump(est, path)

    def load(self, path: Path, task: str) -> Any:
        import joblib

        est = joblib.load(path)
        if not hasattr(est, "predict"):
            raise TypeError(f"{type(est).__name__} has no predict()")
        return est

    def to_onnx(self, est: Any, n_features: int, task: str, opset: int) -> onnx.ModelProto:
        from skl2onnx import convert_sklearn

        options = {id(est): {"zipmap": False}} if task == "classification" else None
        return convert_sklearn(
            est, initial_types=float_input(n_features), target_opset=opset, options=options
        )


@register
class LinearFamily(_SklearnBase):
    name = "linear"
    estimator_types = ("Ridge", "LogisticRegression")
    accepts_nan = False

    def build(self, params: dict, task: str, seed: int) -> Any:
        from sklearn.linear_model import LogisticRegression, Ridge

        if task == "regression":
            return Ridge(**params)
        return LogisticRegression(max_iter=1000, random_state=seed, **params)


@register
class SklearnFamily(_SklearnBase):
    name = "sklearn"
    accepts_nan = False
