"""onnxship-bench on models outside the zoo: a model trained and converted here, a graph that
answers NaN, bad arguments; and a registered version of the tiny pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tests.conftest import ROOT

QUICK = ["--batch-sizes", "1,10", "--budget-s", "0.4", "--cold-start-runs", "1"]


def bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "onnxship.cli.bench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd)},
    )


@pytest.fixture(scope="module")
def outside_model(tmp_path_factory) -> Path:
    """An XGBoost regressor trained here and converted with onnxmltools, input named `features`."""
    import xgboost
    from onnxmltools.convert import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    folder = tmp_path_factory.mktemp("outside")
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 6)).astype(np.float32)
    model = xgboost.XGBRegressor(n_estimators=20, max_depth=3).fit(X, X[:, 0] * 2 + X[:, 1])
    model.save_model(folder / "model.json")
    graph = convert_xgboost(model, initial_types=[("features", FloatTensorType([None, 6]))], target_opset=15)
    (folder / "model.onnx").write_bytes(graph.SerializeToString())
    np.save(folder / "rows.npy", X[:50])
    return folder


def test_a_model_from_outside_the_zoo_is_validated_and_timed_against_its_native_file(outside_model):
    done = bench(
        "model.onnx", "--native", "model.json", "--family", "xgboost", "--data", "rows.npy",
        "--json", "out.json", *QUICK, cwd=outside_model,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "validation: PASSED" in done.stdout and "parity vs native" in done.stdout
    assert "onnxship-bench" in done.stderr  # the progress bar
    result = json.loads((outside_model / "out.json").read_text())
    assert result["validation"]["parity"]["within_tolerance"] == 1.0
    assert set(result["latency"]) == {"native", "onnx"}
    for size in ("1", "10"):
        onnx_cell = result["latency"]["onnx"][size]
        assert onnx_cell["p99_ci_ms"][0] <= onnx_cell["p99_ms"] <= onnx_cell["p99_ci_ms"][1]
        low, high = onnx_cell["speedup_ci"]
        assert low <= onnx_cell["speedup_vs_native_p50"] <= high
    starts = result["cold_start"]
    assert starts["onnx"]["imports"] == ["numpy", "onnxruntime"] and "xgboost" in starts["native"]["imports"]
    # the ONNX process's peak is its own, not the parent's (ru_maxrss would carry that over)
    assert starts["onnx"]["rss_peak_mb"]["median"] < starts["native"]["rss_peak_mb"]["median"]


def test_an_onnx_file_alone_is_timed_with_inputs_shaped_like_the_graph(outside_model):
    done = bench("model.onnx", "--json", "alone.json", *QUICK, cwd=outside_model)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((outside_model / "alone.json").read_text())
    assert set(result["latency"]) == {"onnx"} and "parity" not in result["validation"]


def test_a_graph_answering_nan_fails_validation(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    graph = helper.make_graph([helper.make_node("Log", ["x"], ["y"])], "log", [x], [y])
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9),
        tmp_path / "log.onnx",
    )
    done = bench("log.onnx", *QUICK, cwd=tmp_path)  # normal inputs: Log of a negative is NaN
    assert done.returncode == 1 and "validation: FAILED  finite=False" in done.stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["missing.onnx"], "no such ONNX file"),
        (["model.onnx", "--data", "rows.parquet"], "--data takes a .npy or .csv file"),
        (["model.onnx", "--native", "model.json", "--family", "nope"], "--family: unknown family"),
        (["dynamic.onnx"], "dynamic dimension 'width': give --dim width=SIZE"),
        (["--registered", "nothing-here"], "--registered takes NAME@ALIAS or NAME/VERSION"),
        (["--registered", "xgboost@candidate"], "no MLflow store at the tracking URI"),
    ],
)
def test_bad_arguments_are_named_without_a_traceback(outside_model, args, said):
    if "dynamic.onnx" in args:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "width"])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "width"])
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
        onnx.save(model, outside_model / "dynamic.onnx")
    (outside_model / "rows.parquet").write_bytes(b"x")
    done = bench(*args, cwd=outside_model)
    assert done.returncode == 2 and said in done.stderr, done.stderr[-1500:]
    assert "Traceback" not in done.stderr
    assert not (outside_model / "mlflow.db").exists()  # no empty store left behind


def test_a_registered_version_is_checked_then_timed_with_its_own_settings(tiny_pipeline, tmp_path):
    cfg, _ = tiny_pipeline
    done = bench(
        "--registered", f"xgboost@{cfg.package.alias}", "--tracking-uri", cfg.tracking.uri,
        "--json", "reg.json", *QUICK, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "reg.json").read_text())
    assert result["model"].startswith("xgboost v") and "b1_p50" in result["registered_figures"]
    assert result["settings"]["intra_op_threads"] >= 1
    missing = bench(
        "--registered", "no_such_model@candidate", "--tracking-uri", cfg.tracking.uri, cwd=tmp_path
    )
    assert missing.returncode == 2 and "no such registered version" in missing.stderr
