"""Every route of the HTTP side in-process (FastAPI's TestClient), on tiny graphs swapped into the
model store through create_app's follower seam: no registry, no uvicorn, seconds in all.
The end-to-end behaviour over a real registry and server is in test_serving.py."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from onnxship.io import sha256_file
from serving.http.app import create_app
from serving.http.store import load_verified
from serving.settings import Settings
from tests import tiny_versions, toy_forecaster

MODELS = ["tiny_reg", "tiny_clf", "toy_forecaster"]
ROW = {"a": 1.0, "b": 2.0, "c": 3.0}  # tiny_reg: 1 + 4 + 9 = 14


def manifest_of(folder) -> dict[str, str]:
    """What the registry would vouch for: every file's sha256."""
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}


class FixedModels:
    """A follower that loads fixed version folders at start (the registry follower's stand-in)."""

    def __init__(self, folders: dict, settings: Settings, store, metrics) -> None:
        self.folders, self.settings, self.store = folders, settings, store
        self.last_registry_error = None
        self.stopped_reason = None

    def start(self) -> None:
        for name, folder in self.folders.items():
            if name in self.store.names:
                loaded = load_verified(
                    name,
                    "1",
                    folder,
                    manifest_of(folder),
                    self.settings.warmup_calls,
                    self.settings.max_threads,
                )
                self.store.swap(loaded)

    def stop(self) -> None:
        pass

    def check(self) -> None:
        pass


def make_client(folders: dict, models: list[str] = MODELS, **settings) -> TestClient:
    configured = Settings(
        models=models, default_model=models[0], max_batch_rows=5, max_body_bytes=20_000, **settings
    )
    app = create_app(configured, follower=lambda s, store, m: FixedModels(folders, s, store, m))
    return TestClient(app)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict:
    return tiny_versions.build_all(tmp_path_factory.mktemp("versions"))


@pytest.fixture(scope="module")
def client(folders):
    with make_client(folders) as c:
        yield c


def test_predict_answers_from_the_graph_with_the_version(client):
    r = client.post("/predict", json={"features": ROW})
    assert r.status_code == 200, r.text
    assert r.json() == {"model": "tiny_reg", "version": "1", "prediction": 14.0}
    assert r.headers["x-model-version"] == "tiny_reg/1"
    r = client.post("/predict/batch", json={"model": "tiny_reg", "rows": [ROW, {"a": 0, "b": 0, "c": 1}]})
    assert r.json()["predictions"] == [14.0, 3.0]


def test_classifier_answers_with_class_names(client):
    r = client.post("/predict", json={"model": "tiny_clf", "features": {"a": 0.0, "b": 5.0, "c": 1.0}})
    body = r.json()
    assert body["label"] == "mid"
    assert list(body["probabilities"]) == tiny_versions.CLASSES
    assert body["probabilities"]["mid"] == pytest.approx(np.exp(5) / (1 + np.exp(5) + np.exp(1)), rel=1e-5)


@pytest.mark.parametrize(
    ("route", "body", "status", "message"),
    [
        ("/predict", {"features": {"a": 1, "b": 2}}, 422, "features: missing 'c'"),
        ("/predict", {"features": {**ROW, "zzz": 1}}, 422, "features: 1 name(s) this model does not take"),
        ("/predict", {"features": {**ROW, "a": "hot"}}, 422, "features.a: Input should be a number"),
        ("/predict", {"features": {**ROW, "a": 1e39}}, 422, "features.a: not a finite float32"),
        ("/predict", {"features": {**ROW, "a": None}}, 422, "does not accept missing values"),
        ("/predict", {"model": "nope", "features": ROW}, 404, "model: not served here (served: tiny_reg"),
        ("/predict", {"model": "toy_forecaster", "features": ROW}, 422, "is a forecaster"),
        ("/predict/batch", {"rows": [ROW] * 6}, 422, "rows: 6 rows, at most 5"),
        ("/predict/batch", {"rows": [{**ROW, "b": 10**400}]}, 422, "not a finite float32"),
        ("/forecast", {"model": "tiny_reg", "context": [1.0]}, 422, "use POST /predict"),
        ("/forecast", {"model": "toy_forecaster", "context": [1.0] * 17}, 422, "this model takes 1 to 16"),
    ],
)
def test_bad_input_is_named_never_echoed(client, route, body, status, message):
    r = client.post(route, json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    assert not any(echo in r.text for echo in ("hot", "1e+39", "0000"))


def test_body_limit_and_malformed_json(client):
    r = client.post("/predict", content=b'{"features": ' + b"1" * 30_000 + b"}")
    assert r.status_code == 413 and "larger than 20000 bytes" in r.json()["error"]
    r = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json() == {"error": "body: not valid JSON"}


def test_forecast_matches_the_numpy_twin(client):
    context = list(np.sin(np.arange(12) / 3).astype(float))
    body = {
        "model": "toy_forecaster",
        "context": context,
        "horizon": 3,
        "quantile_levels": [0.1, 0.3, 0.9],
        "past_covariates": {"temperature": [20.0] * 12},
        "future_covariates": {"temperature": [21.0, 22.0, 23.0]},
    }
    r = client.post("/forecast", json=body)
    assert r.status_code == 200, r.text
    spec = toy_forecaster.ForecastSpec.from_metadata(tiny_versions.FORECAST)
    feed = {
        "context": np.full((1, 16), np.nan, np.float32),
        "past_covariates": np.full((1, 16, 1), np.nan, np.float32),
        "future_covariates": np.full((1, 4, 1), np.nan, np.float32),
    }
    feed["context"][0, 4:] = context
    feed["past_covariates"][0, 4:, 0] = 20.0
    feed["future_covariates"][0, :3, 0] = [21.0, 22.0, 23.0]
    expected = toy_forecaster.reference(spec, feed)[0]
    got = r.json()["quantiles"]
    np.testing.assert_allclose(got["0.1"], expected[:3, 0], rtol=1e-5)
    np.testing.assert_allclose(got["0.3"], (expected[:3, 0] + expected[:3, 1]) / 2, rtol=1e-5)


def test_kserve_v2_infer_matches_predict(client):
    body = {"id": "7", "inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    r = client.post("/v2/models/tiny_reg/infer", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "7" and r.json()["outputs"][0]["data"] == [14.0]
    meta = client.get("/v2/models/tiny_reg").json()
    assert meta["parameters"]["features"] == tiny_versions.FEATURES
    assert client.get("/v2/health/ready").json() == {"ready": True}


def test_models_benchmark_and_health(client):
    listed = client.get("/models").json()
    assert [m["name"] for m in listed["models"]] == MODELS
    assert all(m["status"] == "serving" and m["version"] == "1" for m in listed["models"])
    assert client.get("/models/tiny_clf").json()["classes"] == tiny_versions.CLASSES
    assert client.get("/models/nope").status_code == 404
    assert "native" in client.get("/benchmark", params={"model": "tiny_reg"}).json()["report"]["runtimes"]
    assert client.get("/health/live").status_code == 200
    assert client.get("/health/ready").json()["versions"] == dict.fromkeys(MODELS, "1")


def test_not_ready_until_every_configured_model_is_loaded(folders):
    with make_client({"tiny_reg": folders["tiny_reg"]}, models=["tiny_reg", "tiny_clf"]) as c:
        r = c.get("/health/ready")
        assert r.status_code == 503 and r.json()["waiting"] == {"tiny_clf": "waiting for the registry"}
        r = c.post("/predict", json={"model": "tiny_clf", "features": ROW})
        assert r.status_code == 503 and r.headers["retry-after"]
        assert c.post("/predict", json={"model": "tiny_reg", "features": ROW}).status_code == 200


def test_metrics_label_every_answer_by_the_app_own_route_templates(client):
    client.get("/models/tiny_reg")
    client.get("/no/such/path")
    covariates = {"past_covariates": {"temperature": [1.0, 2.0]}, "future_covariates": {"temperature": [1.0]}}
    r = client.post(
        "/forecast", json={"model": "toy_forecaster", "context": [1.0, 2.0], "horizon": 1, **covariates}
    )
    assert r.status_code == 200, r.text
    client.post("/predict", json={"features": ROW})
    text = client.get("/metrics").text
    assert 'onnxship_requests_total{model="",route="/models/{name}",status="200",version=""}' in text
    assert 'route="/forecast",status="200",version="1"' in text
    assert 'onnxship_requests_total{model="tiny_reg",route="/predict",status="200",version="1"}' in text
    assert 'route="unmatched",status="404"' in text
    assert 'onnxship_request_seconds_count{route="/forecast"}' in text
    routes = set(client.app.openapi()["paths"])
    labelled = {line.split('route="')[1].split('"')[0] for line in text.splitlines() if 'route="' in line}
    assert labelled <= routes | {"unmatched"}, labelled - routes
