"""scikit-learn Pipelines on typed columns: a ColumnTransformer (encoders for the categories,
imputing and scaling for the numbers) in front of an estimator, exported as ONE graph by skl2onnx
(each column its own input, categories as strings).

Zoo entry:

    family: pipeline
    dataset: diamonds                     # a dataset of layout `columns`
    encode: {categories: ordinal, numbers: impute}
    params: {estimator: sklearn.ensemble.HistGradientBoostingRegressor, max_iter: 200}

`encode.categories`: ordinal (unknown and missing -> -1), onehot (unknown -> all zeros),
onehot_infrequent (values rarer than `min_frequency` and unknown ones -> one "infrequent" column);
`encode.numbers`: passthrough, impute (median), impute_scale (median, then standardized).
A missing category reaches the graph as "" (onnxship.data.columns); the pipeline is trained and
called with "" for a missing category too (native_frame), so both answer it alike; validate proves it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, ClassVar

import onnx

from onnxship.contract import ModelIO
from onnxship.errors import ConfigError
from onnxship.families import column_input, register
from onnxship.families.sklearn import _SklearnBase
from onnxship.graph import snap_thresholds

UNKNOWN_CODE = -1  # OrdinalEncoder's code for an unknown or missing category


def category_encoder(kind: str, min_frequency: float) -> Any:
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    if kind == "ordinal":
        return OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=UNKNOWN_CODE, encoded_missing_value=UNKNOWN_CODE
        )
    if kind == "onehot":
        return OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    if kind == "onehot_infrequent":
        return OneHotEncoder(
            handle_unknown="infrequent_if_exist", min_frequency=min_frequency, sparse_output=False
        )
    raise ConfigError(f"encode.categories: '{kind}' is not one of ordinal, onehot, onehot_infrequent")


def number_encoder(kind: str) -> Any:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "passthrough":
        return "passthrough"
    if kind == "impute":
        return SimpleImputer(strategy="median")
    if kind == "impute_scale":
        return Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    raise ConfigError(f"encode.numbers: '{kind}' is not one of passthrough, impute, impute_scale")


# estimators a pipeline may end in, by module: scikit-learn's own, and the boosters whose
# converters onnxmltools registers with skl2onnx (onnxship.families.pipeline.register_boosters)
ESTIMATOR_MODULES = ("sklearn.", "xgboost.", "lightgbm.")


def estimator_class(named: Any, task: str) -> type:
    if isinstance(named, Mapping):
        named = named.get(task)
    if not isinstance(named, str) or not named.startswith(ESTIMATOR_MODULES):
        raise ConfigError(
            "family 'pipeline': params.estimator names the final estimator's class "
            "('sklearn.<module>.<Class>', 'xgboost.XGBRegressor', 'lightgbm.LGBMClassifier', or a "
            "mapping task -> class)"
        )
    module, _, cls_name = named.rpartition(".")
    try:
        return getattr(importlib.import_module(module), cls_name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"params.estimator: no class {named}") from err


def register_boosters() -> None:
    """Teach skl2onnx to convert XGBoost and LightGBM estimators inside a Pipeline, with
    onnxmltools' converters (the recipe skl2onnx documents)."""
    import lightgbm
    import xgboost
    from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    for cls, alias, shapes, convert, options in (
        (
            xgboost.XGBRegressor,
            "XGBoostXGBRegressor",
            calculate_linear_regressor_output_shapes,
            convert_xgboost,
            None,
        ),
        (
            xgboost.XGBClassifier,
            "XGBoostXGBClassifier",
            calculate_linear_classifier_output_shapes,
            convert_xgboost,
            classifier_options,
        ),
        (
            lightgbm.LGBMRegressor,
            "LightGbmLGBMRegressor",
            calculate_linear_regressor_output_shapes,
            convert_lightgbm,
            {"split": None},
        ),
        (
            lightgbm.LGBMClassifier,
            "LightGbmLGBMClassifier",
            calculate_linear_classifier_output_shapes,
            convert_lightgbm,
            classifier_options,
        ),
    ):
        update_registered_converter(cls, alias, shapes, convert, options=options)


@register
class PipelineFamily(_SklearnBase):
    name = "pipeline"
    group = "classical"
    estimator_types = ("Pipeline",)
    layouts = ("columns",)
    accepts_nan = True  # the imputer (or the booster) takes missing numbers; categories take None

    tiny_spec: ClassVar[dict[str, Any]] = {
        "encode": {"categories": "onehot", "numbers": "impute_scale"},
        "params": {
            "estimator": {
                "regression": "sklearn.ensemble.HistGradientBoostingRegressor",
                "classification": "sklearn.linear_model.LogisticRegression",
            },
        },
    }

    def build(self, spec: Mapping[str, Any], zoo: Mapping[str, Any], task: str, seed: int) -> Any:
        raise ConfigError(
            "family 'pipeline' encodes typed columns: give its entry a dataset of layout 'columns'"
        )

    def build_columns(
        self, spec: Mapping[str, Any], zoo: Mapping[str, Any], task: str, seed: int, columns: list[dict]
    ) -> Any:
        from sklearn.compose import ColumnTransformer
        from sklearn.pipeline import Pipeline

        encode = dict(spec.get("encode") or {})
        unknown = set(encode) - {"categories", "numbers", "min_frequency"}
        if unknown:
            raise ConfigError(
                f"encode: unknown key(s) {sorted(unknown)} (categories, numbers, min_frequency)"
            )
        params = dict(spec.get("params") or {})
        cls = estimator_class(params.pop("estimator", None), task)
        if "random_state" in cls().get_params():
            params.setdefault("random_state", seed)
        categories = [c["name"] for c in columns if c["type"] == "string"]
        numbers = [c["name"] for c in columns if c["type"] != "string"]
        parts = []
        if categories:
            kind = encode.get("categories", "onehot")
            parts.append(
                ("categories", category_encoder(kind, float(encode.get("min_frequency", 0.01))), categories)
            )
        if numbers:
            parts.append(("numbers", number_encoder(encode.get("numbers", "impute")), numbers))
        # verbose_feature_names_out off: the boosters take the encoded names as they come
        encoder = ColumnTransformer(parts, sparse_threshold=0.0, verbose_feature_names_out=False)
        return Pipeline([("encode", encoder), ("estimator", cls(**params))])

    def takes_missing_values(self, est: Any) -> bool:
        return True

    def native_frame(self, est: Any, frame: Any, columns: list[dict]) -> Any:
        """A missing category as "" (trained so too): OneHotEncoder would otherwise learn None as a
        category of its own, which a graph - whose strings cannot be null - could never receive."""
        from onnxship.data.columns import missing_as_empty

        return missing_as_empty(frame, columns)

    def to_onnx(self, est: Any, io: ModelIO, opset: int) -> onnx.ModelProto:
        from skl2onnx import convert_sklearn

        final = est.steps[-1][1]
        if type(final).__module__.startswith(("xgboost", "lightgbm")):
            register_boosters()
        options = {id(final): {"zipmap": False}} if io.task == "classification" else None
        model = convert_sklearn(
            est,
            initial_types=column_input(io),
            target_opset={"": opset, "ai.onnx.ml": 3},
            options=options,
        )
        if type(final).__module__.startswith("lightgbm"):
            # as for LightGBM alone: its float64 thresholds, rounded to float32, must decide
            # float32 inputs as LightGBM does (the booster is the graph's one tree ensemble)
            from onnxship.families.lightgbm import split_thresholds

            snap_thresholds(model, split_thresholds(final.booster_))
        return model
