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
