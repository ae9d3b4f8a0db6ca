"""The server end to end: a real uvicorn process on a registry built by the pipeline (shrunk).

Promotion, alias following (hot swap under load), rejected versions, bad input, and what the
server process imports.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from onnxship.contract import ForecastSpec
from onnxship.io import read_json
from onnxship.version.manifest import GATES_TAG
from serving.registry.promote import PromotionRefused, promote
from tests import toy_forecaster
from tests.conftest import ROOT
from tests.registry_helpers import scratch_dir
from tests.served import (
    FORECASTER,
    MODELS,
    registry_errors,
    served_version,
    start_server,
    tiny_chronos2,
)
from tests.services import eventually, stop, wait_for

pytestmark = pytest.mark.e2e


def test_predict_says_which_version_answered(server, row):
    r = httpx.post(f"{server['url']}/predict", json={"features": row})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "xgboost" and isinstance(body["prediction"], float)
    assert r.headers["x-model-version"] == f"xgboost/{body['version']}"
    r = httpx.post(f"{server['url']}/predict/batch", json={"model": "stack_ridge", "rows": [row] * 3})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 3


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        (
            lambda r: {"features": {k: v for k, v in r.items() if k != "temperature"}},
            422,
            "missing 'temperature'",
        ),
        (lambda r: {"features": {**r, "zzz": 1.0}}, 422, "1 name(s) this model does not take"),
        (
            lambda r: {"features": {**r, "temperature": "sweltering"}},
            422,
            "features.temperature: Input should be a number",
        ),
        (
            lambda r: {"features": {**r, "temperature": 1e39}},
            422,
            "features.temperature: not a finite float32",
        ),
        (lambda r: {"model": "nope", "features": r}, 404, "model: not served here"),
        (lambda r: {"rows": [r] * 51}, 422, "rows: 51 rows, at most 50"),
        (
            lambda r: {"rows": [{**r, "temperature": 10**400}, r]},
            422,
            "rows[0].features.temperature: not a finite float32",
        ),
    ],
    ids=["missing", "unknown", "wrong-type", "beyond-float32", "unknown-model", "too-many-rows", "huge-int"],
)
def test_bad_input_is_named_never_echoed(server, row, change, status, message):
    body = change(row)
    route = "/predict/batch" if "rows" in body else "/predict"
    r = httpx.post(f"{server['url']}{route}", json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    assert not any(v in r.text for v in ("sweltering", "1e+39", "0000", str(row["demand_lag_1"])))


def test_oversized_and_malformed_bodies(server):
    big = b'{"features": {"a": ' + b"1" * 300_000 + b"}}"
    r = httpx.post(f"{server['url']}/predict", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    # no Content-Length: counted as it streams in
    r = httpx.post(
        f"{server['url']}/predict",
        content=iter([big[:150_000], big[150_000:]]),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
    r = httpx.post(
        f"{server['url']}/predict", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json() == {"error": "body: not valid JSON"}


def test_models_benchmark_health_and_metrics(server):
    models = httpx.get(f"{server['url']}/models").json()["models"]
    assert [m["name"] for m in models] == MODELS and all(m["status"] == "serving" for m in models)
    detail = httpx.get(f"{server['url']}/models/catboost").json()
    assert detail["features"][0] == "demand_lag_1" and detail["sha256"]
    bench = httpx.get(f"{server['url']}/benchmark", params={"model": "catboost"}).json()
    assert "native" in bench["report"]["runtimes"]
    # the summary's figures for the served version: intervals, sample counts, start-up, memory
    figures = bench["figures"]
    assert figures["variant"] == bench["variant"]
    for cell in figures["batches"].values():
        low, high = cell["served"]["p99_ci_ms"]
        assert low <= cell["served"]["p99_ms"] <= high and cell["served"]["iterations"] > 0
        assert cell["speedup_ci"][0] <= cell["speedup_vs_native_p50"] <= cell["speedup_ci"][1]
    assert figures["cold_start"]["served"]["rss_rest_mb"] > 0 and figures["cold_start"]["native"]["runs"] >= 1
    assert httpx.get(f"{server['url']}/health/live").status_code == 200
    text = httpx.get(f"{server['url']}/metrics").text
    assert 'onnxship_model_loads_total{model="catboost",result="loaded"}' in text
    assert "onnxship_request_seconds_bucket" in text


def new_version(uri: str, name: str, mutate=None) -> str:
    """Register a new version of `name` made from its champion's files (optionally tampered)."""
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias(name, "champion")
    # an explicit dst_path: for a local store MLflow may otherwise hand back the stored folder itself
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=champion.source, tracking_uri=uri, dst_path=str(scratch_dir(uri, "version-"))
        )
    )
    tags = dict(champion.tags)
    if mutate:
        tags = mutate(local, tags)
    mlflow.set_tracking_uri(uri)
    exp = client.get_experiment_by_name("onnxship/" + name).experiment_id
    with mlflow.start_run(experiment_id=exp, run_name="test-version") as run:
        mlflow.log_artifacts(str(local), "model")
    tags["package_run_id"] = run.info.run_id  # registered as the package stage does, from its run
    created = client.create_model_version(name, f"{run.info.artifact_uri}/model", run.info.run_id, tags=tags)
    return str(created.version)


def test_alias_move_swaps_without_dropping_requests(server, row):
    uri, name = server["uri"], "catboost"
    old = served_version(server, name)
    version = new_version(uri, name)
    failures, answered, stop = [], set(), threading.Event()

    def load():
        with httpx.Client() as client:
            while not stop.is_set():
                r = client.post(f"{server['url']}/predict", json={"model": name, "features": row})
                if r.status_code != 200:
                    failures.append(r.status_code)
                else:
                    answered.add(r.json()["version"])

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        promote(name, version, "champion", uri)
        # within a poll (5 s) and a load: bounded at 30 s, as a busy 2-core machine can take 15
        eventually(lambda: served_version(server, name) == version, seconds=30, every=0.1)
        eventually(lambda: version in answered, seconds=10, every=0.05)  # the clients see the new one
    finally:
        stop.set()
        for t in threads:
            t.join()
        promote_unchecked(uri, name, old)  # leave the shared registry as this test found it
    assert served_version(server, name) == version, server["log"].read_text()[-2000:]
    assert failures == []
    assert answered == {old, version}
    eventually(lambda: served_version(server, name) == old, seconds=30)


def test_tampered_or_broken_versions_are_rejected_and_the_old_one_keeps_serving(server, row, request):
    uri, name = server["uri"], "xgboost"
    serving_before = served_version(server, name)

    def corrupt(folder: Path, tags: dict) -> dict:
        (folder / "model.onnx").write_bytes((folder / "model.onnx").read_bytes()[:500])  # truncated
        return tags  # recorded sha256 no longer matches

    def failed_gate(folder: Path, tags: dict) -> dict:  # moved by hand (MLflow UI), gates failed
        return {**tags, GATES_TAG: '{"benchmark":true,"export":true,"parity":false}'}

    for mutate, reason in ((corrupt, "sha256"), (failed_gate, "gate(s) failed at packaging: parity")):
        version = new_version(uri, name, mutate)
        promote_unchecked(uri, name, version)
        request.addfinalizer(lambda: promote_unchecked(uri, name, serving_before))
        eventually(lambda why=reason: why in httpx.get(f"{server['url']}/models/{name}").json()["status"], 20)
        status = httpx.get(f"{server['url']}/models/{name}").json()
        assert f"version {version} rejected" in status["status"] and reason in status["status"]
        assert status["version"] == serving_before
        assert httpx.post(f"{server['url']}/predict", json={"features": row}).status_code == 200
    assert (
        'onnxship_model_loads_total{model="xgboost",result="rejected"}'
        in httpx.get(f"{server['url']}/metrics").text
    )


def promote_unchecked(uri: str, name: str, version: str) -> None:
    """What a user can do by hand in the MLflow UI: move the alias without our gate checks."""
    MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias(name, "champion", version)


def test_promote_refuses_a_version_that_failed_a_gate(registry):
    version = new_version(registry, "stack_ridge", lambda folder, tags: {**tags, "parity_verdict": "fail"})
    with pytest.raises(PromotionRefused, match="parity_verdict tag is not 'pass'"):
        promote("stack_ridge", version, "champion", registry)
    with pytest.raises(PromotionRefused, match="no version 999"):
        promote("stack_ridge", "999", "champion", registry)


def test_server_process_imports_no_training_framework_or_pickle_loader(registry, tmp_path):
    script = f"""
import json, os, sys, time
os.environ.update(ONNXSHIP_SERVING_TRACKING_URI={registry!r},
                  ONNXSHIP_SERVING_MODELS='["stack_ridge", "cnn", "chronos2"]',
                  ONNXSHIP_SERVING_CACHE_DIR={str(tmp_path)!r}, ONNXSHIP_SERVING_POLL_INTERVAL_S="0.5")
from fastapi.testclient import TestClient
from serving.http.app import create_app
with TestClient(create_app()) as client:
    for _ in range(300):
        if client.get("/health/ready").status_code == 200:
            break
        time.sleep(0.2)
    ready = client.get("/health/ready").status_code
top = sorted({{m.split(".")[0] for m in sys.modules}})
print(json.dumps({{"ready": ready, "modules": top}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ready"] == 200
    heavy = {
        "torch",
        "chronos",
        "transformers",
        "safetensors",
        "xgboost",
        "lightgbm",
        "catboost",
        "sklearn",
        "joblib",
        "cloudpickle",
        "dill",
        "mlflow",
        "pandas",
    }
    assert heavy.isdisjoint(result["modules"]), heavy & set(result["modules"])


def test_registry_outage_keeps_loaded_models_serving(server, row):
    db = Path(server["uri"].removeprefix("sqlite:///"))
    saved = db.read_bytes()
    before = registry_errors(server)
    try:
        db.write_bytes(b"this is not a database " * 100)
        eventually(lambda: registry_errors(server) > before, 20)
        assert registry_errors(server) > before
        assert httpx.get(f"{server['url']}/health/live").status_code == 200
        assert httpx.get(f"{server['url']}/health/ready").status_code == 200  # models are loaded
        assert httpx.post(f"{server['url']}/predict", json={"features": row}).status_code == 200
    finally:
        db.write_bytes(saved)


def test_start_without_a_registry_is_live_but_not_ready_with_the_reason(tmp_path, tmp_path_factory):
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"not a database" * 100)
    started = start_server(f"sqlite:///{broken}", tmp_path_factory, wait_ready=False)
    try:
        r = wait_for(f"{started['url']}/health/ready", lambda r: "registry unreachable" in r.text, 20)
        body = r.json()
        assert r.status_code == 503
        assert all("registry unreachable" in why for why in body["waiting"].values()), body
        r = httpx.post(f"{started['url']}/predict", json={"features": {}})
        assert r.status_code == 503 and "not loaded yet" in r.json()["error"]
    finally:
        stop(started)


def test_kserve_v2_protocol(server, row):
    url = server["url"]
    assert httpx.get(f"{url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{url}/v2/health/ready").json() == {"ready": True}
    meta = httpx.get(f"{url}/v2/models/stack_ridge").json()
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 19]}]
    assert meta["parameters"]["features"][0] == "demand_lag_1"
    values = [row[f] for f in meta["parameters"]["features"]]
    body = {
        "id": "req-7",
        "inputs": [{"name": "input", "shape": [2, 19], "datatype": "FP64", "data": values * 2}],
    }
    r = httpx.post(f"{url}/v2/models/stack_ridge/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert (
        out["id"] == "req-7" and out["model_name"] == "stack_ridge" and out["outputs"][0]["shape"] == [2, 1]
    )
    single = httpx.post(f"{url}/predict", json={"model": "stack_ridge", "features": row}).json()
    assert out["outputs"][0]["data"][0] == pytest.approx(single["prediction"], rel=1e-6)
    bad = {"inputs": [{"name": "input", "shape": [2, 18], "datatype": "FP32", "data": values * 2}]}
    r = httpx.post(f"{url}/v2/models/stack_ridge/infer", json=bad)
    assert r.status_code == 422 and r.json()["error"].startswith("inputs[0].shape:")
    wrong_name = {"inputs": [{"name": "x", "shape": [1, 19], "datatype": "FP32", "data": values}]}
    assert (
        "expected one tensor named 'input'"
        in httpx.post(f"{url}/v2/models/stack_ridge/infer", json=wrong_name).text
    )
    assert httpx.post(f"{url}/v2/models/nope/infer", json=body).status_code == 404


def test_pytorch_models_answer_like_pytorch(server, row, tiny_pipeline):
    """The MLP answers /predict with feature rows, the CNN answers V2 infer with image tensors;
    both as the native PyTorch module does (the server itself has no torch: see above)."""
    from onnxship import families
    from onnxship.data.tables import load_split
    from onnxship.pipeline.config import prepared_dir

    cfg, _ = tiny_pipeline
    url = server["url"]
    family, mlp, meta = families.load_native(Path(cfg.paths.native) / "mlp")
    r = httpx.post(f"{url}/predict", json={"model": "mlp", "features": row})
    assert r.status_code == 200, r.text
    native = family.predict(mlp, [[row[f] for f in meta["features"]]], "regression").values[0]
    # the registered variant may be a proven lossy one (INT8, fp16): held to its gates, not to 1e-5
    reports = Path(cfg.paths.reports)
    variant = read_json(reports / "package" / "mlp.json")["variant"]
    lossy = read_json(reports / "validate" / "mlp.json")["variants"][variant]["lossy"]
    assert r.json()["prediction"] == pytest.approx(native, rel=5e-2 if lossy else 1e-5)

    images, _, _ = load_split(prepared_dir(cfg, "cnn"), "test")
    assert images.shape[1:] == (1, 8, 8)
    _, cnn, _ = families.load_native(Path(cfg.paths.native) / "cnn")
    native = family.predict(cnn, images[:3], "classification")
    tensor = {"name": "input", "shape": [3, 1, 8, 8], "datatype": "FP32", "data": images[:3].tolist()}
    body = {"inputs": [tensor]}
    r = httpx.post(f"{url}/v2/models/cnn/infer", json=body)
    assert r.status_code == 200, r.text
    label, proba = r.json()["outputs"]
    assert label["name"] == "label" and proba["shape"] == [3, 10]
    variant = read_json(reports / "package" / "cnn.json")["variant"]
    lossy = read_json(reports / "validate" / "cnn.json")["variants"][variant]["lossy"]
    assert proba["data"] == pytest.approx(native.proba.reshape(-1).tolist(), abs=5e-2 if lossy else 1e-5)
    served = np.asarray(proba["data"]).reshape(3, 10).argmax(axis=1).tolist()
    assert label["data"] == (served if lossy else native.values.tolist())
    assert httpx.get(f"{url}/v2/models/cnn").json()["inputs"][0]["shape"] == [-1, 1, 8, 8]
    flat = {"inputs": [tensor | {"shape": [3, 64], "data": images[:3].ravel().tolist()}]}
    r = httpx.post(f"{url}/v2/models/cnn/infer", json=flat)
    assert r.status_code == 422 and "[rows, [1, 8, 8]]" in r.json()["error"], r.text
    r = httpx.post(f"{url}/predict", json={"model": "cnn", "features": {"pixel_0_0": 0.0}})
    assert r.status_code == 422 and "/v2/models/cnn/infer" in r.json()["error"]


def test_forecast_answers_like_the_exported_forecaster(server):
    from serving.http.forecasting import ForecastSpec, _series_layout_feed, parse

    url, spec = server["url"], ForecastSpec.from_metadata(FORECASTER)
    request = {
        "model": "toy_forecaster",
        "context": [4.0, None, 4.5, 5.0, 5.5],
        "horizon": 4,
        "quantile_levels": [0.1, 0.3, 0.5],  # 0.3 lies between the model's 0.1 and 0.5
        "past_covariates": {"temperature": [20, 21, 22, 23, 24], "load": [1, 2, 3, None, 5]},
        "future_covariates": {"temperature": [25, 26, 27, 28]},
    }
    r = httpx.post(f"{url}/forecast", json=request)
    assert r.status_code == 200, r.text
    body = r.json()
    assert r.headers["x-model-version"] == f"toy_forecaster/{body['version']}"
    assert body["horizon"] == 4 and list(body["quantiles"]) == ["0.1", "0.3", "0.5"]
    feed = _series_layout_feed(spec, parse(spec, request, 100).tasks)
    expected = toy_forecaster.reference(spec, feed)[0, :4]  # [steps, model levels 0.1 0.5 0.9]
    assert body["quantiles"]["0.1"] == pytest.approx(expected[:, 0], abs=1e-5)
    assert body["quantiles"]["0.5"] == pytest.approx(expected[:, 1], abs=1e-5)
    assert body["quantiles"]["0.3"] == pytest.approx((expected[:, 0] + expected[:, 1]) / 2, abs=1e-5)
    # by hand: mean of the context + GAMMA * past covariates (right-aligned, inside the window)
    # + 0.5 * future temperature ('load' is past-only)
    by_hand = (4.0 + 4.5 + 5.0 + 5.5) / 4 + toy_forecaster.GAMMA * (110 + 11) + 0.5 * 25
    assert body["quantiles"]["0.5"][0] == pytest.approx(by_hand, abs=1e-5)
    # defaults: the model's horizon and levels
    r = httpx.post(
        f"{url}/forecast",
        json={
            **request,
            "horizon": None,
            "quantile_levels": None,
            "future_covariates": {"temperature": [25.0] * 6},
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["horizon"] == 6 and r.json()["quantile_levels"] == [0.1, 0.5, 0.9]


def test_forecast_answers_like_chronos2_itself(server):
    """/forecast on a real Chronos-2 export (covariates: a known-future temperature, a past-only
    workday flag) answers like the library's own predict on the same inputs."""
    from serving.http.forecasting import parse

    family, est, spec = tiny_chronos2()
    rng = np.random.default_rng(3)
    n = 50
    context = (5 + np.sin(np.arange(n) / 4) + rng.normal(0, 0.1, n)).round(3).tolist()
    context[7] = None
    past = {"temperature": rng.normal(20, 3, n).round(2).tolist(), "workday": [1.0, 0.0] * (n // 2)}
    future = {"temperature": rng.normal(20, 3, 10).round(2).tolist()}
    request = {"model": "chronos2", "context": context, "horizon": 10, "quantile_levels": [0.1, 0.5, 0.9]}
    request |= {"past_covariates": past, "future_covariates": future}
    r = httpx.post(f"{server['url']}/forecast", json=request)
    assert r.status_code == 200, r.text
    body = r.json()
    native = family.predict_tasks(est, parse(spec, request, 100).tasks, 10)[0][0]  # [10 steps, 13 levels]
    for level in ("0.1", "0.5", "0.9"):
        column = [float(q) for q in est.quantiles].index(float(level))
        assert body["quantiles"][level] == pytest.approx(native[:, column], rel=1e-4, abs=1e-4)
    # the known future moves the forecast: the covariate reached the model
    hotter = {"temperature": [t + 15 for t in future["temperature"]]}
    moved = httpx.post(f"{server['url']}/forecast", json=request | {"future_covariates": hotter}).json()
    assert moved["quantiles"]["0.5"] != pytest.approx(body["quantiles"]["0.5"], abs=1e-4)


def test_the_pipelines_chronos2_version_answers_forecast_and_kserve_v2(server, tiny_pipeline):
    """The version the pipeline itself registered (fine-tuned with known-future Temperature and
    WorkDay) answers /forecast and V2 infer like the library's predict on its native checkpoint."""
    from onnxship import families
    from onnxship.forecasting.tasks import layout
    from serving.http.forecasting import parse

    cfg, _ = tiny_pipeline
    family, est, meta = families.load_native(Path(cfg.paths.native) / "chronos2_covariates")
    spec = ForecastSpec.from_metadata(meta)
    assert spec.future_covariates == ("Temperature", "WorkDay")
    rng = np.random.default_rng(5)
    n, h = 120, spec.prediction_length
    context = (5 + np.sin(np.arange(n) / 8) + rng.normal(0, 0.1, n)).round(3).tolist()
    temperature = rng.normal(20, 3, n + h).round(2).tolist()
    workday = ([1.0] * 40 + [0.0] * 8) * 4
    past = {"Temperature": temperature[:n], "WorkDay": workday[:n]}
    future = {"Temperature": temperature[n:], "WorkDay": workday[n : n + h]}
    request = {"model": "chronos2_covariates", "context": context, "past_covariates": past}
    r = httpx.post(f"{server['url']}/forecast", json=request | {"future_covariates": future})
    assert r.status_code == 200, r.text
    ask = parse(spec, request | {"future_covariates": future}, 100)
    native = family.predict_tasks(est, ask.tasks, h)[0][0]
    rows = layout(ask.tasks, h)  # V2 takes the graph's own rows: target, then each covariate
    feed = {"context": rows.context, "group_ids": rows.group_ids, "future_covariates": rows.future}
    levels = list(spec.quantile_levels)
    # the registered variant may be a proven INT8 one (held to its metric gate, not to 1e-4)
    reports = Path(cfg.paths.reports)
    variant = read_json(reports / "package" / "chronos2_covariates.json")["variant"]
    lossy = read_json(reports / "validate" / "chronos2_covariates.json")["variants"][variant]["lossy"]
    tol = 5e-2 if lossy else 1e-4
    assert r.json()["quantiles"]["0.5"] == pytest.approx(native[:, levels.index(0.5)], rel=tol, abs=tol)
    inputs = [  # NaN (missing, unknown) travels as null
        {
            "name": k,
            "shape": list(v.shape),
            "datatype": "INT64" if k == "group_ids" else "FP32",
            "data": [None if np.isnan(x) else float(x) for x in v.ravel()],
        }
        for k, v in feed.items()
    ]
    r = httpx.post(f"{server['url']}/v2/models/chronos2_covariates/infer", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    assert out["name"] == "quantiles" and out["shape"] == [3, h, len(levels)]
    np.testing.assert_allclose(np.asarray(out["data"]).reshape(3, h, -1)[0], native, rtol=tol, atol=tol)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda b: {
                **b,
                "context": [1.0] * 33,
                "past_covariates": {"temperature": [1.0] * 33, "load": [1.0] * 33},
            },
            "context: 33 values, this model takes 1 to 32",
        ),
        (lambda b: {**b, "horizon": 7}, "horizon: must be an integer from 1 to 6"),
        (
            lambda b: {**b, "quantile_levels": [0.5, 0.95]},
            "quantile_levels[1]: must be a number from 0.1 to 0.9",
        ),
        (lambda b: {**b, "context": [1.0, "sweltering"]}, "context[1]: Input should be a number or null"),
        (lambda b: {**b, "context": [None, None]}, "context: every value is missing"),
        (lambda b: {**b, "future_covariates": {}}, "future_covariates: missing 'temperature'"),
        (
            lambda b: {**b, "past_covariates": {**b["past_covariates"], "wind": [1.0, 2.0]}},
            "past_covariates: 1 name(s) this model does not take",
        ),
        (
            lambda b: {**b, "past_covariates": {**b["past_covariates"], "load": [1.0]}},
            "past_covariates.load: 1 values, expected 2",
        ),
        (
            lambda b: {**b, "future_covariates": {"temperature": [1e39, 1.0]}},
            "future_covariates.temperature[0]: not a finite float32",
        ),
        (lambda b: {**b, "context": [10**400, 1.0]}, "context[0]: not a finite float32"),
        (lambda b: {**b, "model": "xgboost"}, "model: 'xgboost' is a regression model; use POST /predict"),
    ],
    ids=[
        "context-too-long",
        "horizon-too-long",
        "level-out-of-range",
        "wrong-type",
        "all-missing",
        "missing-covariate",
        "unknown-covariate",
        "covariate-length",
        "beyond-float32",
        "huge-integer",
        "not-a-forecaster",
    ],
)
def test_forecast_bad_input_is_named_never_echoed(server, change, message):
    good = {
        "model": "toy_forecaster",
        "context": [17.25, 18.5],
        "horizon": 2,
        "past_covariates": {"temperature": [31.5, 32.5], "load": [7.75, 8.25]},
        "future_covariates": {"temperature": [33.5, 34.5]},
    }
    r = httpx.post(f"{server['url']}/forecast", json=change(good))
    assert r.status_code == 422, r.text
    assert message in r.json()["error"]
    assert not any(v in r.text for v in ("17.25", "31.5", "33.5", "sweltering", "1e+39", "0000"))


def test_forecaster_refuses_predict_and_answers_kserve_v2(server):
    url = server["url"]
    r = httpx.post(f"{url}/predict", json={"model": "toy_forecaster", "features": {}})
    assert r.status_code == 422 and "use POST /forecast" in r.json()["error"]
    context = [None] * 28 + [4.0, 4.5, 5.0, 5.5]
    inputs = [
        {"name": "context", "shape": [1, 32], "datatype": "FP32", "data": context},
        {"name": "past_covariates", "shape": [1, 32, 2], "datatype": "FP32", "data": [0.0] * 64},
        {"name": "future_covariates", "shape": [1, 6, 2], "datatype": "FP32", "data": [1.0, None] * 6},
    ]
    r = httpx.post(f"{url}/v2/models/toy_forecaster/infer", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert out["name"] == "quantiles" and out["shape"] == [1, 6, 3]
    meta = httpx.get(f"{url}/v2/models/toy_forecaster").json()
    assert [t["name"] for t in meta["inputs"]] == ["context", "past_covariates", "future_covariates"]
    assert meta["outputs"] == [{"name": "quantiles", "datatype": "FP32", "shape": [-1, 6, 3]}]
    assert out["data"][1] == pytest.approx(4.75 + 0.5 * 1.0, abs=1e-5)  # step 1, level 0.5
    for bad, message in (
        ([10**400] + [1.0] * 11, "inputs[2].data: not a finite"),
        (["1.5"] * 12, "inputs[2].data: Input should be a number"),
    ):
        r = httpx.post(
            f"{url}/v2/models/toy_forecaster/infer",
            json={"inputs": [*inputs[:2], {**inputs[2], "data": bad}]},
        )
        assert r.status_code == 422 and message in r.json()["error"], r.text
    inputs[2]["shape"] = [1, 7, 2]
    r = httpx.post(f"{url}/v2/models/toy_forecaster/infer", json={"inputs": inputs})
    assert r.status_code == 422 and "inputs[2].shape" in r.json()["error"]


def test_start_without_a_registry_can_serve_the_verified_local_copy(
    registry, row, tmp_path, tmp_path_factory
):
    # a private registry whose champion is the pipeline's version (other tests move the shared one)
    own = tmp_path / "registry.db"
    shutil.copy(registry.removeprefix("sqlite:///"), own)
    uri = f"sqlite:///{own}"
    promote("xgboost", None, "champion", uri)
    cache = str(tmp_path / "cache")
    first = start_server(uri, tmp_path_factory, models=["xgboost"], cache_dir=cache)
    version = served_version(first, "xgboost")
    stop(first)
    other = tmp_path / "other.db"
    other.write_bytes(b"not a database" * 100)

    # a copy recorded from another registry is never offered
    r = dict(tmp_path_factory=tmp_path_factory, models=["xgboost"], cache_dir=cache)
    elsewhere = start_server(f"sqlite:///{other}", **r, wait_ready=False, serve_local_copy="true")
    try:
        # three failed polls: the copy would have been verified, probed and loaded by then
        eventually(lambda: registry_errors(elsewhere) >= 3)
        assert registry_errors(elsewhere) >= 3
        reason = httpx.get(f"{elsewhere['url']}/health/ready")
        assert reason.status_code == 503 and "registry unreachable" in reason.json()["waiting"]["xgboost"]
        assert "now serving" not in elsewhere["log"].read_text()
    finally:
        stop(elsewhere)

    # the same registry, down: the copy it vouched for last is served at once
    kept = own.with_name("kept.db")
    own.rename(kept)
    own.write_bytes(b"not a database" * 100)
    try:
        second = start_server(uri, **r, wait_ready=False, serve_local_copy="true")
        try:
            ready = wait_for(f"{second['url']}/health/ready", lambda r: r.status_code == 200)
            assert ready.status_code == 200, second["log"].read_text()[-2000:]
            status = httpx.get(f"{second['url']}/models/xgboost").json()
            assert status["version"] == version and "verified local copy" in status["status"]
            answer = httpx.post(f"{second['url']}/predict", json={"features": row})
            assert answer.status_code == 200 and answer.json()["version"] == version
        finally:
            stop(second)

        # a tampered copy is refused: not ready, and the reason says why
        model = Path(cache) / "xgboost" / f"v{version}" / "model.onnx"
        model.write_bytes(model.read_bytes()[:-10])
        third = start_server(uri, **r, wait_ready=False, serve_local_copy="true")
        try:
            status = wait_for(
                f"{third['url']}/models/xgboost", lambda r: "local copy" in r.json()["status"]
            ).json()
            assert "rejected: local copy: RejectedModel: sha256" in status["status"], status
            assert httpx.get(f"{third['url']}/health/ready").status_code == 503
        finally:
            stop(third)
    finally:
        kept.replace(own)
