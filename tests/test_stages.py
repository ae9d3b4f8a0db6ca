"""Each stage's run(cfg) on the real config, shrunk: the whole zoo through every stage once."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import onnx
import pytest

from onnxship import families
from onnxship.contract import INPUT, OUTPUTS, ModelIO
from onnxship.data.tables import load_split
from onnxship.graph import tree_thresholds
from onnxship.io import read_json, sha256_file
from onnxship.parity.rows import compare, onnx_prediction
from onnxship.pipeline.config import prepared_dir
from onnxship.pipeline.tracking import configure
from onnxship.version.manifest import GATES_TAG, MANIFEST_TAG, file_manifest, parse_gates, parse_manifest
from stages import export, summarize, validate
from tests.conftest import with_model


def native_meta(cfg, name: str) -> dict:
    return read_json(Path(cfg.paths.native) / name / "meta.json")


def test_every_model_exports_with_a_dynamic_batch(tiny_pipeline):
    cfg, results = tiny_pipeline
    for name in cfg.zoo.models:
        meta = native_meta(cfg, name)
        rep = results[name]["export"]
        assert rep["status"] == "ok", rep
        io = ModelIO.of_model(meta)
        assert [i["name"] for i in rep["inputs"]] == [i.name for i in io.inputs]
        assert [o["name"] for o in rep["outputs"]] == OUTPUTS[meta["task"]]
        if meta["task"] == "forecast":  # rows and context length stay dynamic (Chronos-2: steps too)
            rows = "rows" if meta["forecast"]["graph"]["layout"] == "chronos2" else "batch"
            assert rep["inputs"][0]["shape"] == [rows, "context_length"]
            assert rep["outputs"][0]["shape"][1:] == list(io.outputs[0].shape[1:])
        elif meta.get("layout") == "columns":  # one input per column, of its own type
            typed = [{"name": c["name"], "dtype": c["type"], "shape": ["batch", 1]} for c in meta["columns"]]
            assert rep["inputs"] == typed
        else:
            shape = ["batch", *meta["input_shape"]]
            assert rep["inputs"][0] == {"name": INPUT, "dtype": "float32", "shape": shape}
        assert "seconds" not in rep, "timings belong in MLflow, not in a cached output"
        model = onnx.load(str(Path(cfg.paths.onnx) / name / "model.onnx"))
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param in ("batch", "rows")
        assert rep["sha256"] == sha256_file(Path(cfg.paths.onnx) / name / "model.onnx")


def test_validate_reports_parity_on_test_and_hostile_sets(tiny_pipeline):
    cfg, _results = tiny_pipeline
    for name in cfg.zoo.models:
        rep = read_json(Path(cfg.paths.reports) / "validate" / f"{name}.json")
        assert rep["passed"], rep
        if rep["task"] == "forecast":
            continue  # test_forecasters_are_judged_on_windows_and_their_variants
        base = rep["variants"]["base"]
        if native_meta(cfg, name).get("layout") == "columns":  # tests/test_columns.py: every set
            categories = {"unseen_categories", "missing_categories", "unicode", "long_strings"}
            assert set(base["sets"]) >= {"test", "extreme", "batch_consistency", *categories}
            assert base["sets"]["test"]["within_tolerance"] >= cfg.validate.min_within_test
            continue
        _, y_test, _ = load_split(prepared_dir(cfg, name), "test")
        assert set(base["sets"]) >= {"test", "extreme", "float64", "batch_consistency"}
        # missing values where the model takes them; split thresholds where it has trees
        assert ("nan" in base["sets"]) == families.load_native(Path(cfg.paths.native) / name)[0].accepts_nan
        trees = tree_thresholds(onnx.load(str(Path(cfg.paths.optimized) / name / "base.onnx")))
        assert ("thresholds" in base["sets"]) == bool(trees)
        test = base["sets"]["test"]
        assert test["rows"] == len(y_test) and test["within_tolerance"] >= cfg.validate.min_within_test
        assert test["metric_rel_worse"] < 0.01


def test_benchmark_times_native_and_every_variant_it_was_given(tiny_pipeline):
    cfg, _results = tiny_pipeline
    rep = read_json(Path(cfg.paths.reports) / "benchmark" / "xgboost.json")
    optimized = read_json(Path(cfg.paths.optimized) / "xgboost" / "optimize.json")
    validation = read_json(Path(cfg.paths.reports) / "validate" / "xgboost.json")
    # proven variants are timed; every other one is named with the reason (default benchmark)
    assert set(rep["runtimes"]) == {"native", *validation["passed"]}
    assert set(rep["runtimes"]) | set(rep["not_timed"]) == {"native", *optimized["variants"]}
    bench = cfg.benchmark
    for runtime, measured in rep["runtimes"].items():
        assert set(measured["batches"]) == {str(b) for b in bench.batch_sizes}
        if runtime != "native":  # the exact file optimize wrote was the one timed
            assert measured["sha256"] == optimized["variants"][runtime]["sha256"]
        native = rep["runtimes"]["native"]["batches"]
        for size, cell in measured["batches"].items():
            # interleaved rounds: enough samples, or the budget ended after the minimum rounds
            assert cell["stopped"] in ("converged", "budget")
            assert cell["rounds"] >= bench.interleaved.min_rounds
            if cell["stopped"] == "converged":
                assert cell["iterations"] >= bench.interleaved.min_samples
                assert cell["stop_rel_half_width"] <= bench.interleaved.target
                assert cell["stop_on"] == bench.interleaved.stop_on
            for q in ("p50", "p99"):  # every figure with its interval around it
                low, high = cell[f"{q}_ci_ms"]
                assert low <= cell[f"{q}_ms"] <= high
            assert cell["throughput_rows_s"] == pytest.approx(int(size) / (cell["mean_ms"] / 1e3))
            assert cell["speedup_vs_native_p50"] == pytest.approx(native[size]["p50_ms"] / cell["p50_ms"])
            low, high = cell["speedup_ci"]
            assert low <= cell["speedup_vs_native_p50"] <= high
    # cold start and memory: fresh processes per runtime; ONNX imports only onnxruntime
    start = rep["cold_start"]
    # start-up of what a deployment compares: native and the registered variant
    registered = read_json(Path(cfg.paths.reports) / "package" / "xgboost.json")["variant"]
    assert set(start) == {"native", registered}
    assert start[registered]["imports"] == ["numpy", "onnxruntime"]
    assert start["native"]["imports"] == ["xgboost"]  # its family's loader_imports
    # native was timed in a fork of the stage (its libraries loaded under the stages' OpenMP wait
    # policy), so its memory figure is the fresh process's
    native_load = rep["runtimes"]["native"]
    assert native_load["rss_from"] == "cold_start"
    assert native_load["rss_after_load_mb"] == start["native"]["rss_rest_mb"]["median"]
    for figures in start.values():
        assert figures["runs"] == bench.cold_start_runs
        assert 0 < figures["import_s"]["median"] < figures["cold_start_s"]["median"]
        assert 0 < figures["rss_rest_mb"]["median"] <= figures["rss_peak_mb"]["median"]
    # every session setting of the grid was timed, the best per batch size kept with its settings
    assert {m["settings"]["intra_op_threads"] for m in rep["tuning"]["base"]} == {1, os.cpu_count()}
    assert all("settings" in c for c in rep["runtimes"]["base"]["batches"].values())
    # the floor graph (no model work), timed in the same rounds: its speedup is the ceiling on any graph's
    floors = rep["ort_floor"]["batches"]
    assert set(floors) == {str(b) for b in bench.batch_sizes}
    for size, floor in floors.items():
        assert floor["rounds"] == rep["runtimes"]["native"]["batches"][size]["rounds"]
        low, high = floor["speedup_ci"]
        assert low <= floor["speedup_vs_native_p50"] <= high
    assert all(g.get("skipped") or g.get("runtimes") for g in rep["gpu"].values())
    rows = read_json(Path(cfg.paths.reports) / "benchmark" / "xgboost" / "latency.json")
    assert {r["runtime"] for r in rows} == set(rep["runtimes"])


def test_forecasters_are_judged_on_windows_and_their_variants(tiny_pipeline):
    cfg, _results = tiny_pipeline
    forecasters = [n for n in cfg.zoo.models if native_meta(cfg, n)["task"] == "forecast"]
    assert len(forecasters) == 3  # conf/zoo/smoke.yaml: zero-shot, fine-tuned with covariates, speed-only
    for name in forecasters:
        meta, entry = native_meta(cfg, name), cfg.zoo.models[name]
        rep = read_json(Path(cfg.paths.reports) / "validate" / f"{name}.json")
        base = rep["variants"]["base"]["sets"]
        expected = {"test", "nan_holes", "short_context", "narrow_context", "batch_consistency", "horizons"}
        if meta["forecast"]["covariates"]:
            expected |= {"covariates_past_only", "covariates_none"}
        assert set(base) == expected, name
        # each other horizon the model serves, on the server's path; the small Bolt rolls forward
        served = {h for h in cfg.validate.horizons if h != meta["forecast"]["prediction_length"]}
        served = {h for h in served if h <= meta["forecast"]["max_horizon"]}
        assert set(base["horizons"]) == {str(h) for h in served}, name
        assert all(h["within_tolerance"] == 1.0 for h in base["horizons"].values()), name
        assert base["test"]["windows"] == entry.max_windows
        assert base["test"]["within_tolerance"] == 1.0 and base["test"]["max_abs_diff"] < 1e-3
        # WQL/MASE gate lossy variants even on random weights (against the same weights run
        # natively), but a speed-only model has no accuracy figure in train or in the summary
        assert set(rep["native_metrics"]) == {"wql", "mase"}
        assert set(meta["test_metrics"]) == (set() if entry.get("speed_only") else {"wql", "mase"})
        assert base["test"]["metric_rel_worse"] < 0.01
    rows = {r["model"]: r for r in summarize.run(cfg)["forecasters"]}
    summary = (Path(cfg.paths.reports) / "summary.md").read_text()
    assert "## Forecasters" in summary and "speed only" in summary
    for name, row in rows.items():
        assert (row.get("wql_native") is None) == bool(cfg.zoo.models[name].get("speed_only")), name


def test_registry_holds_every_zoo_model_as_a_candidate_with_lineage(tiny_pipeline):
    cfg, _results = tiny_pipeline
    client = configure(cfg)  # models:/ URIs resolve through the process-wide registry URI
    for name in cfg.zoo.models:
        schema = native_meta(cfg, name)
        version = client.get_model_version_by_alias(name, cfg.package.alias)
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
            mlflow.artifacts.download_artifacts(
                f"models:/{name}@{cfg.package.alias}", tracking_uri=cfg.tracking.uri
            )
        )
        meta = read_json(local / "onnxship.json")
        assert sha256_file(local / "model.onnx") == meta["sha256"] == tags["onnx_sha256"]
        # the registry vouches for every file of the version, and records the gates it passed
        downloaded = file_manifest(local)
        downloaded.pop("registered_model_meta", None)  # written by MLflow's models:/ download itself
        assert parse_manifest(tags[MANIFEST_TAG]) == downloaded
        assert parse_gates(tags[GATES_TAG]) == meta["gates"] and all(meta["gates"].values())
        assert tags["package_run_id"] == version.run_id
        assert meta["features"] == schema["features"]
        assert meta["outputs"][0]["name"] == OUTPUTS[schema["task"]][0]
        if schema["task"] == "forecast":  # what serving reads to build a forecaster's inputs
            assert meta["forecast"] == schema["forecast"]
            continue
        if schema.get("layout") == "columns":  # what serving reads to check a row's columns
            assert meta["columns"] == schema["columns"]
            assert [i["name"] for i in meta["inputs"]] == schema["features"]
        else:
            assert meta["inputs"][0]["name"] == INPUT
            assert meta["inputs"][0]["shape"] == ["batch", *schema["input_shape"]]
        # served with the session settings that made this variant fastest at the target batch size
        bench = read_json(Path(cfg.paths.reports) / "benchmark" / f"{name}.json")
        batch = str(cfg.package.select_batch_size)
        tuned = bench["runtimes"][meta["variant"]]["batches"][batch]["settings"]
        assert tuned and all(meta["inference_settings"][k] == v for k, v in tuned.items())
        assert meta["regimes"][batch]["speedup_vs_native_p50"] > 0
        candidates = read_json(local / "candidates.json")
        assert {c["variant"] for c in candidates} == set(
            read_json(Path(cfg.paths.reports) / "validate" / f"{name}.json")["variants"]
        )
        assert (local / "MLmodel").exists()


def test_every_stage_logged_an_mlflow_run(tiny_pipeline):
    cfg, _ = tiny_pipeline
    mlflow.set_tracking_uri(cfg.tracking.uri)
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    stages = {(r.data.tags.get("model"), r.data.tags["stage"]) for r in runs}
    for name in cfg.zoo.models:
        for stage in ("train", "export", "optimize", "validate", "benchmark", "package"):
            assert (name, stage) in stages
    assert (None, "prepare") in stages


def test_summary_lists_every_model(tiny_pipeline):
    cfg, _ = tiny_pipeline
    out = summarize.run(cfg)
    assert [r["model"] for r in out["models"]] == list(cfg.zoo.models)
    reports = Path(cfg.paths.reports)
    text = (reports / "summary.md").read_text()
    for row in out["models"]:  # every model proven here: status, intervals, sample counts
        name = row["model"]
        assert f"| ✅ | {name} ({cfg.zoo.models[name].family}) |" in text
        small = row["batch_sizes"][0]
        cell = row[f"onnx_b{small}"]
        assert cell["p99_ci_ms"][0] <= cell["p99_ms"] <= cell["p99_ci_ms"][1] and cell["iterations"] > 0
        assert row["speedups"][str(small)]["ci"] and row["cold_start_s"]["onnx"]["median"] > 0
    assert "## Fastest proven" in text and "| **overall** |" in text
    # the figures exist, are PNGs, and the summary links them
    pngs = [reports / "plots" / "speedup.png", reports / "plots" / "parity.png"]
    pngs += [reports / "benchmark" / n / "latency.png" for n in cfg.zoo.models]
    pngs += [reports / "plots" / f"fan_{r['model']}.png" for r in out["forecasters"]]
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert f"]({png.relative_to(reports)})" in text, png


def test_failed_export_is_reported_and_never_packaged(tiny_pipeline, tmp_path, monkeypatch):
    """A converter failure is written down with its reason; validate skips, package refuses."""
    import shutil

    from onnxship.families.catboost import CatBoostFamily
    from stages import optimize, package

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

    from onnxship import families
    from onnxship.graph import tree_thresholds
    from onnxship.parity.hostile import threshold_rows
    from onnxship.runtime import OnnxModel

    cfg, _ = tiny_pipeline
    family, est, _meta = families.load_native(Path(cfg.paths.native) / name)
    import onnxmltools

    from onnxship.families import float_input
    from onnxship.graph import standardize

    width = len(load_split(cfg.paths.prepared, "test")[2]["features"])

    raw = standardize(
        onnxmltools.convert_lightgbm(
            est, initial_types=float_input(width, "onnxmltools"), target_opset=15, zipmap=False
        ),
        "regression",
    )
    snapped = standardize(family.to_onnx(est, ModelIO.tabular("regression", width), 15), "regression")
    X, _, _ = load_split(cfg.paths.prepared, "test")
    rows = threshold_rows(X[:50], tree_thresholds(snapped), 1000, np.random.default_rng(0))
    native = family.predict(est, rows, "regression")
    for graph, expect_all_within in ((raw, False), (snapped, True)):
        out = onnx_prediction(OnnxModel(graph.SerializeToString()), rows, "regression")
        within = compare(native, out, 1e-4, 1e-5)["within_tolerance"]
        assert (within == 1.0) is expect_all_within, within


def test_registry_state_tells_a_fresh_store_from_a_filled_one(tiny_pipeline, tmp_path):
    """`make run` forces every stage when the store lacks a zoo model (a fresh clone), since DVC
    would otherwise skip the stages whose committed reports match every input."""
    from tools.registry_state import missing_models

    cfg, _ = tiny_pipeline
    assert missing_models(cfg)[1] == []
    from omegaconf import OmegaConf

    empty = OmegaConf.merge(cfg, {"tracking": {"uri": f"sqlite:///{tmp_path}/empty.db"}})
    try:
        assert missing_models(empty)[1] == list(cfg.zoo.models)
        assert not (tmp_path / "empty.db").exists(), "no store file: answered without creating one"
        configure(empty).search_experiments()  # now an empty store exists: MLflow is asked
        assert (tmp_path / "empty.db").exists()
        assert missing_models(empty)[1] == list(cfg.zoo.models)
    finally:
        configure(cfg)  # MLflow's URIs are process-wide: give them back to the shared store
