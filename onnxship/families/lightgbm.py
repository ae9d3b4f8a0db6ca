"""LightGBM: native text model file, ONNX through onnxmltools (ZipMap off)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx

from onnxship.contract import ModelIO
from onnxship.families import Family, float_input, register
from onnxship.graph import columns_front, snap_thresholds


@register
class LightGBMFamily(Family):
    name = "lightgbm"
    group = "boosting"
    loader_imports = ("lightgbm",)
    native_file = "model.txt"
    converter = "onnxmltools"
    estimator_types = ("LGBMRegressor", "LGBMClassifier", "Booster")
    layouts = ("rows", "columns")
    codes_categories_per_call = True  # categorical_frame, as the graph's LabelEncoders do

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

    def library_call(self, est: Any, task: str) -> Any:
        if hasattr(est, "booster_"):
            return super().library_call(est, task)

        def call(X: Any) -> Any:  # Booster.predict, with LightGBM's thread count given per call
            return est.predict(X, num_threads=self.threads) if self.threads else est.predict(X)

        return call

    def build_columns(self, spec, zoo, task: str, seed: int, columns: list[dict]) -> Any:
        # category-typed columns of the DataFrame are LightGBM's native categorical features
        return self.build(spec, zoo, task, seed)

    def native_frame(self, est: Any, frame: Any, columns: list[dict]) -> Any:
        """Categories as pandas `category` columns: LightGBM codes them by the values it was
        trained with (kept in the model file), an unknown one as missing."""
        return categorical_frame(frame, columns)

    def to_onnx(self, est: Any, io: ModelIO, opset: int) -> onnx.ModelProto:
        import onnxmltools

        booster = est.booster_ if hasattr(est, "booster_") else est
        width = len(io.inputs) if io.takes_columns else io.n_features
        model = onnxmltools.convert_lightgbm(
            booster,
            initial_types=float_input(width, "onnxmltools"),
            target_opset=min(opset, 15),
            zipmap=False,
        )
        # onnxmltools rounds LightGBM's float64 thresholds to nearest float32: snap them so
        # float32 inputs take the same branch as in LightGBM
        snap_thresholds(model, split_thresholds(booster))
        if io.takes_columns:  # the categories' codes, as LightGBM keeps them, in front
            model = columns_front(model, booster_columns(booster, io))
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


def booster_columns(booster: Any, io: ModelIO) -> list[tuple[str, list[str] | None]]:
    """The graph's columns in the booster's feature order, each category with the values LightGBM
    codes it by (pandas_categorical, saved in the model file)."""
    names = booster.feature_name()
    if names != [i.name for i in io.inputs]:
        raise ValueError("the booster's features are not the table's columns in order")
    strings = [i.name for i in io.inputs if i.dtype == "string"]
    coded = booster.pandas_categorical or []
    if len(coded) != len(strings):
        raise ValueError(
            f"the booster codes {len(coded)} categorical column(s), the table has {len(strings)}: "
            "train it on a DataFrame whose categories are pandas `category` columns"
        )
    values = dict(zip(strings, coded, strict=True))
    return [(n, [str(v) for v in values[n]] if n in values else None) for n in names]


def categorical_frame(frame: Any, columns: list[dict]) -> Any:
    """A table with its string columns as pandas `category` columns of the schema's values (an
    unknown value becomes missing, as a library coding by those values sees it)."""
    import pandas as pd

    out = frame.copy()
    for col in columns:
        if col["type"] == "string":
            dtype = pd.CategoricalDtype(categories=col["categories"])
            out[col["name"]] = pd.Categorical(frame[col["name"]], dtype=dtype)
    return out
