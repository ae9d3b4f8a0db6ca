"""The typed I/O contract: graphs that fit it pass, and each way of not fitting is named."""

from __future__ import annotations

from onnxship.contract import ForecastSpec, ModelIO, describe_io
from tests import tiny_versions, toy_forecaster


def test_a_regressor_graph_fits_the_tabular_contract():
    io = ModelIO.tabular("regression", 3)
    assert io.mismatches(describe_io(tiny_versions.regressor())) == []
    assert io.n_features == 3


def test_a_classifier_graph_fits_and_a_wrong_width_or_kind_is_named():
    graph = describe_io(tiny_versions.classifier())
    assert ModelIO.tabular("classification", 3, 3).mismatches(graph) == []
    assert ModelIO.tabular("classification", 4, 3).mismatches(graph) == [
        "input: shape ['batch', 3], expected ['batch', 4]"
    ]
    assert ModelIO.tabular("classification", 3, 5).mismatches(graph) == [
        "probabilities: shape ['batch', 3], expected ['batch', 5]"
    ]
    assert ModelIO.tabular("regression", 3).mismatches(graph) == [
        "outputs ['label', 'probabilities'], expected ['prediction']"
    ]


def test_a_wrong_dtype_is_named():
    graph = describe_io(tiny_versions.regressor())
    graph["outputs"][0]["dtype"] = "float64"
    assert ModelIO.tabular("regression", 3).mismatches(graph) == [
        "prediction: dtype float64, expected float32"
    ]


def test_the_toy_forecaster_fits_the_forecast_contract():
    spec = ForecastSpec.from_metadata(tiny_versions.FORECAST)
    graph = describe_io(toy_forecaster.build(spec))
    assert ModelIO.forecast(spec).mismatches(graph) == []
    other = ForecastSpec(16, 5, spec.quantile_levels, spec.covariates, spec.future_covariates)
    assert "quantiles: shape" in ModelIO.forecast(other).mismatches(graph)[-1]


def chronos_block(**changes) -> dict:
    """A Chronos-2 version's forecast block (its graph's rollout weights made up but positive)."""
    levels = [0.1, 0.5, 0.9]
    block = {
        "context_length": 64,
        "prediction_length": 24,
        "max_horizon": 128,
        "quantile_levels": levels,
        "covariates": [],
        "graph": {
            "layout": "chronos2",
            "native_horizon": 32,
            "patch_size": 16,
            "model_context_length": 256,
            "unrolled_quantiles": [0.1, 0.5, 0.9],
            "unroll_weights": [1 / 9] * 9,
        },
    }
    for key, value in changes.items():
        if key.startswith("graph_"):
            block["graph"][key.removeprefix("graph_")] = value
        else:
            block[key] = value
    return block


BAD_BLOCKS = {
    "horizon beyond one call": chronos_block(prediction_length=48),
    "max_horizon below the horizon": chronos_block(max_horizon=12),
    "no max_horizon": chronos_block(max_horizon=None),
    "not whole patches": chronos_block(graph_native_horizon=40),
    "model context shorter": chronos_block(graph_model_context_length=32),
    "paths not among the levels": chronos_block(graph_unrolled_quantiles=[0.2, 0.5, 0.9]),
    "too few weights": chronos_block(graph_unroll_weights=[0.5, 0.5]),
    "a zero weight": chronos_block(graph_unroll_weights=[0.0] + [1 / 8] * 8),
    "bolt with covariates": chronos_block(
        covariates=[{"name": "t", "future": True}], graph_layout="chronos_bolt", graph_patch_size=1
    ),
    "series graph of another horizon": chronos_block(
        max_horizon=24, graph_layout="series", graph_patch_size=1
    ),
}


def test_the_schema_and_the_server_read_forecast_blocks_alike():
    """A version the schema accepts is one the server can serve, and the reverse: both refuse
    each inconsistent block (onnxship.version.schema and ForecastSpec)."""
    import pytest
    from pydantic import ValidationError

    from onnxship.version.schema import ForecastBlock

    ForecastBlock.model_validate(chronos_block())
    ForecastSpec.from_metadata({"task": "forecast", "forecast": chronos_block()})
    for name, block in BAD_BLOCKS.items():
        plain = {k: v for k, v in block.items() if v is not None}
        with pytest.raises(ValidationError):
            ForecastBlock.model_validate(plain)
            pytest.fail(f"the schema accepts: {name}")
        with pytest.raises(ValueError):
            ForecastSpec.from_metadata({"task": "forecast", "forecast": plain})
            pytest.fail(f"the server accepts: {name}")
