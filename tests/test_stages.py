"""Each stage's run(cfg) on the real config, shrunk: the whole zoo through every stage once."""

from __future__ import annotations

from pathlib import Path

import mlflow
import onnx
import pytest

from stages import export, summarize, validate
from stages.common.io import read_json, sha256_file
from stages.common.tracking import configure
from tests.conftest import with_model

ZOO = ["xgboost", "lightgbm", "catboost", "stack_ridge", "stack_lightgbm"]


def test_every_model_exports_with_a_dynamic_batch(tiny_pipeline):
    cfg, results = tiny_pipeline
    for name in ZOO:
        rep = results[name]["export"]
        assert rep["status"] == "ok", rep
        assert rep["inputs"][0] == {"name": "input", "dtype": "float32", "shape": ["batch", 19]}
        model = onnx.load(str(Path(cfg.paths.onnx) / name / "model.onnx"))
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
        assert rep["sha256"] == sha256_file(Path(cfg.paths.onnx) / name / "model.onnx")


def test_validate_reports_parity_on_test_and_hostile_sets(tiny_pipeline):
    cfg, _results = tiny_pipeline
    for name in ZOO:
        rep = read_json(Path(cfg.paths.reports) / "validate" / f"{name}.json")
        assert rep["passed"], rep
        base = rep["variants"]["base"]
        assert set(base["sets"]) >= {"test", "nan", "thresholds", "extreme", "float64", "batch_consistency"}
        test = base["sets"]["test"]
        assert test["rows"] == 2579 and test["within_tolerance"] >= 0.999
        assert test["metric_rel_change"] < 0.01


def test_benchmark_has_native_and_every_variant(tiny_pipeline):
    cfg, _results = tiny_pipeline
    rep = read_json(Path(cfg.paths.reports) / "benchmark" / "xgboost.json")
    assert set(rep["runtimes"]) == {"native", "base", "ort_basic", "ort_extended", "ort_all", "slim"}
    for runtime in rep["runtimes"].values():
        assert set(runtime["batches"]) == {"1", "100"}
        cell = runtime["batches"]["1"]
        assert 0 < cell["p50_ms"] <= cell["p99_ms"] and cell["iterations"] >= 3
    rows = read_json(Path(cfg.paths.reports) / "benchmark" / "xgboost" / "latency.json")
    assert {r["runtime"] for r in rows} == set(rep["runtimes"])


def test_registry_holds_five_candidates_with_lineage(tiny_pipeline):
    cfg, _results = tiny_pipeline
    client = configure(cfg)  # models:/ URIs resolve through the process-wide registry URI
    for name in ZOO:
        version = client.get_model_version_by_alias(name, "candidate")
        tags = version.tags
        assert tags["parity_verdict"] == "pass"
        assert set(tags) >= {
            "git_commit",
            "dvc_lock_sha256",
            "source_model_sha256",
            "onnx_sha256",
            "p50_ms_b1",
            "p99_ms_b1",
        }
        local = Path(
            mlflow.artifacts.download_artifacts(f"models:/{name}@candidate", tracking_uri=cfg.tracking.uri)
        )
        meta = read_json(local / "onnxship.json")
        assert sha256_file(local / "model.onnx") == meta["sha256"] == tags["onnx_sha256"]
        assert meta["features"][:2] == ["demand_lag_1", "demand_lag_2"]
        assert meta["inputs"][0]["name"] == "input" and meta["outputs"][0]["name"] == "prediction"
        assert meta["inference_settings"]["intra_op_threads"] == 1
        assert (local / "MLmodel").exists()


def test_every_stage_logged_an_mlflow_run(tiny_pipeline):
    cfg, _ = tiny_pipeline
    mlflow.set_tracking_uri(cfg.tracking.uri)
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    stages = {(r.data.tags.get("model"), r.data.tags["stage"]) for r in runs}
    for name in ZOO:
        for stage in ("train", "export", "optimize", "validate", "benchmark", "package"):
            assert (name, stage) in stages
    assert (None, "prepare") in stages


def test_summary_lists_every_model(tiny_pipeline):
    cfg, _ = tiny_pipeline
    out = summarize.run(cfg)
    assert [r["model"] for r in out["models"]] == ZOO
    text = (Path(cfg.paths.reports) / "summary.md").read_text()
    assert "| stack_lightgbm | stacking | ok |" in text


def test_failed_export_is_reported_and_never_packaged(tiny_pipeline, tmp_path, monkeypatch):
    """A converter failure is written down with its reason; validate skips, package refuses."""
    import shutil

    from stages import optimize, package
    from stages.families.catboost import CatBoostFamily

    cfg, _ = tiny_pipeline
    cfg = with_model(cfg, "catboost")
    for key in ("onnx", "optimized", "reports"):
        target = tmp_path / key
        shutil.copytree(cfg.paths[key], target)
        cfg.paths[key] = str(target)

    def broken(self, *args, **kwargs):
        raise NotImplementedError("simulated converter gap")

    monkeypatch.setattr(CatBoostFamily, "to_onnx", broken)
    rep = export.run(cfg)
    assert rep["status"] == "failed" and "simulated converter gap" in rep["reason"]
    assert not (Path(cfg.paths.onnx) / "catboost" / "model.onnx").exists()
    optimize.run(cfg)
    assert validate.run(cfg)["skipped"] == "export failed"
    from stages import benchmark

    benchmark.run(cfg)
    result = package.run(cfg)
    assert result["registered"] is False and "export failed" in result["reasons"][0]


@pytest.mark.parametrize("name", ["lightgbm"])
def test_unsnapped_lightgbm_thresholds_fail_the_gate(tiny_pipeline, tmp_path, name):
    """Without snap_thresholds, LightGBM's float64 splits rounded to float32 send threshold-valued
    inputs the wrong way: the thresholds hostile set must catch it."""
    import numpy as np

    from serving.runtime import OnnxModel
    from stages import families
    from stages.hostile import threshold_rows
    from stages.onnx_graph import tree_thresholds

    cfg, _ = tiny_pipeline
    family, est, _meta = families.load_native(Path(cfg.paths.native) / name)
    import onnxmltools

    from stages.families import float_input
    from stages.onnx_graph import standardize

    raw = standardize(
        onnxmltools.convert_lightgbm(
            est, initial_types=float_input(19, "onnxmltools"), target_opset=15, zipmap=False
        ),
        "regression",
    )
    snapped = standardize(family.to_onnx(est, 19, "regression", 15), "regression")
    X, _, _ = __import__("stages.prepare", fromlist=["load_split"]).load_split(cfg.paths.prepared, "test")
    rows = threshold_rows(X[:50], tree_thresholds(snapped), 1000, np.random.default_rng(0))
    native = family.predict(est, rows, "regression")
    for graph, expect_all_within in ((raw, False), (snapped, True)):
        out = validate.onnx_prediction(OnnxModel(graph.SerializeToString()), rows, "regression")
        within = validate.compare(native, out, 1e-4, 1e-5)["within_tolerance"]
        assert (within == 1.0) is expect_all_within, within
