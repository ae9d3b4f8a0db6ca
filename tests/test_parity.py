"""The parity gate on a known case: a linear graph whose weights are scaled on purpose. A lossless
variant must match row by row; a lossy one (fp16, INT8) is held to the task metric only, and
fails when that moves more than the configured 1 %."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxship.contract import Prediction
from onnxship.parity.rows import ParityCase, check_variant
from onnxship.runtime import InferenceSettings
from onnxship.scoring import task_metrics
from tests.builders import GATES
from tests.tiny_versions import WEIGHTS, regressor


@pytest.fixture(scope="module")
def case() -> ParityCase:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 3))
    y = X @ WEIGHTS[:, 0].astype(np.float64) + rng.normal(scale=3.0, size=500)
    native = Prediction(X @ WEIGHTS[:, 0].astype(np.float64))
    return ParityCase(
        task="regression",
        tolerance={"atol": 1e-5, "rtol": 1e-5},
        gates=GATES,
        settings=InferenceSettings(),
        X_test=X,
        y_test=y,
        templates=X[:20],
        hostile={"extreme": X[:20] * 1e3},
        native_test=native,
        native_metrics=task_metrics("regression", y, native),
        native_hostile={"extreme": Prediction(X[:20] * 1e3 @ WEIGHTS[:, 0].astype(np.float64))},
    )


def scaled(tmp_path: Path, factor: float) -> Path:
    model = regressor()
    weights = onnx.numpy_helper.to_array(model.graph.initializer[0]) * factor
    model.graph.initializer[0].CopyFrom(onnx.numpy_helper.from_array(weights.astype(np.float32), "w"))
    path = tmp_path / f"scaled_{factor}.onnx"
    onnx.save(model, path)
    return path


def test_the_exact_graph_passes_both_ways(case, tmp_path):
    for lossy in (False, True):
        assert check_variant(scaled(tmp_path, 1.0), lossy, case)["verdict"] == "pass"


def test_a_small_numeric_change_fails_parity_but_passes_as_lossy(case, tmp_path):
    path = scaled(tmp_path, 1.001)  # 0.1 %: far beyond float tolerance, the RMSE barely moves
    strict = check_variant(path, False, case)
    assert strict["verdict"] == "fail"
    assert any("within tolerance" in r for r in strict["reasons"]), strict["reasons"]
    lossy = check_variant(path, True, case)
    assert lossy["verdict"] == "pass", lossy["reasons"]
    assert lossy["lossy"] and lossy["sets"]["test"]["metric_rel_worse"] < 0.01


def test_a_lossy_variant_that_moves_the_task_metric_is_refused(case, tmp_path):
    verdict = check_variant(scaled(tmp_path, 1.5), True, case)
    assert verdict["verdict"] == "fail"
    assert any(r.startswith("test rmse") and "worse" in r for r in verdict["reasons"]), verdict["reasons"]
