"""CatBoost: native .cbm file, ONNX through CatBoost's own exporter."""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import onnx

from onnxship.contract import ModelIO
from onnxship.families import Family, register

SOURCE_PREFIX = re.compile(r"^\S+\.cpp:\d+:\s*")  # "catboost/libs/.../model_exporter.cpp:96: "


@register
class CatBoostFamily(Family):
    name = "catboost"
    group = "boosting"
    loader_imports = ("catboost",)
    native_file = "model.cbm"
    converter = "catboost"
    estimator_types = ("CatBoostRegressor", "CatBoostClassifier")
    layouts = ("rows", "columns")
    columns_export_gap = "ONNX-ML format export does yet not support categorical features"
    native_faster_why = (
        "CatBoost evaluates its oblivious trees vectorised over rows (one comparison per level, the "
        "leaf index built from the bits), ONNX Runtime's TreeEnsemble walks every tree for every row; "
        "the `oblivious` graph (standard operators, the same evaluation) narrows the gap "
        "(reports/peers/trees.json)"
    )

    tiny_spec: ClassVar[dict[str, Any]] = {"params": {"iterations": 15, "depth": 3, "verbose": 0}}

    def estimator(self, params: dict, task: str, seed: int) -> Any:
        import catboost

        cls = catboost.CatBoostRegressor if task == "regression" else catboost.CatBoostClassifier
        # allow_writing_files=False: no catboost_info/ litter in the working tree
        return cls(random_seed=seed, allow_writing_files=False, **params)

    def build_columns(self, spec, zoo, task: str, seed: int, columns: list[dict]) -> Any:
        est = self.build(spec, zoo, task, seed)
        est.set_params(cat_features=[c["name"] for c in columns if c["type"] == "string"])
        return est

    def native_frame(self, est: Any, frame: Any, columns: list[dict]) -> Any:
        """CatBoost refuses None in a categorical feature: a missing one is "", as in a graph."""
        from onnxship.data.columns import missing_as_empty

        return missing_as_empty(frame, columns)

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

    def library_call(self, est: Any, task: str) -> Any:
        predict = est.predict if task == "regression" else est.predict_proba

        def call(X: Any) -> Any:  # CatBoost takes its thread count per call
            return predict(X, thread_count=self.threads) if self.threads else predict(X)

        return call

    def to_onnx(self, est: Any, io: ModelIO, opset: int) -> onnx.ModelProto:
        import catboost

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            try:
                est.save_model(
                    str(path),
                    format="onnx",
                    export_parameters={"onnx_domain": "ai.catboost", "onnx_model_version": 1},
                )
            except catboost.CatBoostError as err:
                # the exporter's own reason (e.g. categorical features), without its source path
                raise ValueError(f"CatBoost's ONNX exporter: {SOURCE_PREFIX.sub('', str(err))}") from err
            model = onnx.load(str(path))
        if io.task == "regression":
            # CatBoost declares its regression output as [N] but returns [N, 1]
            dims = model.graph.output[0].type.tensor_type.shape.dim
            if len(dims) == 1:
                dims.add().dim_value = 1
        return model
