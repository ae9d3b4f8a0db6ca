"""scikit-learn estimators (joblib files), ONNX through skl2onnx.

`linear` builds Ridge (regression) / LogisticRegression (classification) from zoo params;
`sklearn` takes any skl2onnx-convertible estimator: an already-trained one saved with joblib
(`path:`), or one trained here, named by class (`params: {estimator: sklearn.ensemble.RandomForestRegressor,
...}`, or a mapping task -> class).
joblib unpickles: load only files you trust. Serving never does (it reads ONNX only).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import onnx

from onnxship.contract import ModelIO
from onnxship.errors import ConfigError, ModelLoadError
from onnxship.families import Family, float_input, register


class _SklearnBase(Family):
    native_file = "model.joblib"
    loader_imports = ("sklearn", "joblib")
    converter = "skl2onnx"

    def save(self, est: Any, path: Path) -> None:
        import joblib

        joblib.dump(est, path)

    def load(self, path: Path, task: str) -> Any:
        if path.suffix == ".skops":
            est = load_skops(path)
        else:
            import joblib

            est = joblib.load(path)
        if not hasattr(est, "predict"):
            raise TypeError(f"{type(est).__name__} has no predict()")
        return est

    def store_brought(self, source: Path, est: Any, native: Path) -> None:
        """A .skops file is loaded without pickle; the model folder keeps it in this family's own
        format (joblib, written here from the object skops built)."""
        if source.suffix == ".skops":
            self.save(est, native)
        else:
            super().store_brought(source, est, native)

    def to_onnx(self, est: Any, io: ModelIO, opset: int) -> onnx.ModelProto:
        from skl2onnx import convert_sklearn

        options = {id(est): {"zipmap": False}} if io.task == "classification" else None
        return convert_sklearn(
            est, initial_types=float_input(io.n_features), target_opset=opset, options=options
        )


@register
class LinearFamily(_SklearnBase):
    name = "linear"
    group = "classical"
    estimator_types = ("Ridge", "LogisticRegression")
    accepts_nan = False

    tiny_spec: ClassVar[dict[str, Any]] = {"params": {}}

    def estimator(self, params: dict, task: str, seed: int) -> Any:
        from sklearn.linear_model import LogisticRegression, Ridge

        if task == "regression":
            return Ridge(**params)
        return LogisticRegression(max_iter=1000, random_state=seed, **params)


@register
class SklearnFamily(_SklearnBase):
    name = "sklearn"
    group = "classical"
    accepts_nan = False
    tiny_spec: ClassVar[dict[str, Any]] = {
        "params": {
            "estimator": {
                "regression": "sklearn.ensemble.RandomForestRegressor",
                "classification": "sklearn.ensemble.RandomForestClassifier",
            },
            "n_estimators": 5,
            "max_depth": 4,
        }
    }

    def estimator(self, params: dict, task: str, seed: int) -> Any:
        import importlib

        params = dict(params)
        named = params.pop("estimator", None)
        if isinstance(named, Mapping):
            named = named.get(task)
        if not isinstance(named, str) or not named.startswith("sklearn.") or "." not in named[8:]:
            raise ConfigError(
                "family 'sklearn' trains an estimator named by class: params.estimator = "
                "'sklearn.<module>.<Class>' (or a mapping task -> class), or give a model file (path:)"
            )
        module, _, cls_name = named.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), cls_name)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"params.estimator: scikit-learn has no {named}") from err
        if "random_state" in cls().get_params():
            params.setdefault("random_state", seed)
        return cls(**params)


# the libraries whose types a .skops file may hold: skops builds them without running the file's code
SKOPS_TRUSTED = ("sklearn.", "numpy.", "scipy.", "xgboost.", "lightgbm.", "builtins.", "collections.")


def load_skops(path: Path) -> Any:
    """A scikit-learn object from a .skops file (skops' format: no pickle). Types from outside the
    libraries above are refused, named: trusting them is the file owner's call, not ours."""
    import skops.io

    other = [t for t in skops.io.get_untrusted_types(file=path) if not t.startswith(SKOPS_TRUSTED)]
    if other:
        raise ModelLoadError(
            f"{path.name} holds types from outside scikit-learn, NumPy, SciPy, XGBoost and LightGBM "
            f"({', '.join(other[:5])}): skops will not build them"
        )
    return skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
