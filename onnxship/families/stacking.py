"""Stacking ensembles (scikit-learn StackingRegressor/Classifier) exported as ONE ONNX graph:
input -> each base model -> concat -> meta-model. Bases and meta may be of any registered family."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import onnx

from onnxship.contract import ModelIO
from onnxship.errors import ConfigError
from onnxship.families import family_of, get, register
from onnxship.families.sklearn import _SklearnBase
from onnxship.graph import merge_stack, standardize


@register
class StackingFamily(_SklearnBase):
    name = "stacking"
    group = "ensembles"
    converter = "onnxship-stacking (per-base converters + onnx.compose)"
    estimator_types = ("StackingRegressor", "StackingClassifier")
    # its bases may be of any family: the tree libraries are imported with it, as a stack of them
    # needs (a stack of scikit-learn models alone overstates its import time by theirs)
    loader_imports = ("sklearn", "joblib", "xgboost", "lightgbm", "catboost")

    tiny_spec: ClassVar[dict[str, Any]] = {
        # the tests fill each base in with its own family's tiny spec
        "base": {name: {"family": name} for name in ("xgboost", "lightgbm", "catboost")},
        "meta": {"family": "linear"},
        "cv": 2,
    }

    def build(self, spec: Mapping[str, Any], zoo: Mapping[str, Any], task: str, seed: int) -> Any:
        """`base` maps each base's name to its entry (in conf/zoo, an interpolation of the zoo
        entry of that name: the stack trains its own copies, and DVC tracks their params as the
        stack's own); `meta` is an inline entry."""
        from sklearn.ensemble import StackingClassifier, StackingRegressor

        bases = spec["base"]
        if not isinstance(bases, Mapping):
            raise ConfigError(
                "stacking `base` maps each base's name to its entry, e.g. "
                "{xgboost: ${zoo.models.xgboost}}: a list of names would hide the bases' params from DVC"
            )
        estimators = []
        for base_name, base in bases.items():
            if not isinstance(base, Mapping) or "family" not in base:
                raise ConfigError(f"stacking base '{base_name}' needs an entry with a `family`")
            estimators.append((base_name, get(base["family"]).build(base, zoo, task, seed)))
        meta = get(spec["meta"]["family"]).build(spec["meta"], zoo, task, seed)
        cls = StackingRegressor if task == "regression" else StackingClassifier
        return cls(estimators=estimators, final_estimator=meta, cv=int(spec.get("cv", 3)), n_jobs=1)

    def takes_missing_values(self, est: Any) -> bool:
        """Only the bases see the features: NaN is fine when every base takes it."""
        return all(family_of(b).takes_missing_values(b) for b in est.estimators_)

    def make_reproducible(self, est: Any) -> None:
        for part in [*est.estimators_, est.final_estimator_]:
            family_of(part).make_reproducible(part)

    def to_onnx(self, est: Any, io: ModelIO, opset: int) -> onnx.ModelProto:
        if getattr(est, "passthrough", False):
            raise NotImplementedError("stacking with passthrough=True is not supported by the ONNX merge")
        bases, take = [], []
        task = io.task
        n_classes = len(getattr(est, "classes_", [])) if task == "classification" else 0
        for base in est.estimators_:
            family = family_of(base)
            bases.append(standardize(family.to_onnx(base, io, opset), task, opset))
            take.append(
                "prediction" if task == "regression" else "proba_pos" if n_classes == 2 else "probabilities"
            )
        meta_in = len(bases) * (1 if task == "regression" or n_classes == 2 else n_classes)
        meta_est = est.final_estimator_
        meta_io = ModelIO.tabular(task, meta_in, n_classes)
        meta = standardize(family_of(meta_est).to_onnx(meta_est, meta_io, opset), task, opset)
        return merge_stack(bases, meta, take, task, opset)

    def load(self, path: Path, task: str) -> Any:
        est = super().load(path, task)
        if type(est).__name__ not in self.estimator_types:
            raise TypeError(f"expected a StackingRegressor/StackingClassifier, got {type(est).__name__}")
        return est
