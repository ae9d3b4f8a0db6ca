"""Configuration errors say so (issue 22, item 5): an unusable tracking URI, a store the client
cannot open, missing credentials are named in words, never shown as "no version has alias".

Found from outside: the image's mlflow-skinny refuses a `sqlite:///` store with
INVALID_PARAMETER_VALUE, the code MLflow also uses for "alias not found", and the watcher said
"no version of 'xgboost' has alias 'champion'". The errors here are MLflow's own, raised by real
MlflowClient calls against real stores (a SQLite registry, a file store, an HTTP server that
answers 401)."""

from __future__ import annotations

import http.server
import threading

import httpx
import pytest
from mlflow.tracking import MlflowClient

from serving.registry.diagnose import Misconfigured, Missing, diagnose
from tests.services import start_server, stop, wait_for


def raised_by(uri: str, model: str = "m", alias: str = "champion") -> BaseException:
    try:
        MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias(model, alias)
    except Exception as err:
        return err
    raise AssertionError("the registry call succeeded")


@pytest.fixture
def refusing_server():
    """An HTTP server that answers every request 401, like a tracking server behind basic auth."""

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(401)
            self.end_headers()
            self.wfile.write(b"credentials required")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_an_unsupported_scheme_is_a_configuration_error_naming_the_scheme():
    found = diagnose(raised_by("nosuchstore://registry"), "m", "champion", "nosuchstore://registry")
    assert isinstance(found, Misconfigured), found
    assert "scheme 'nosuchstore'" in found.reason and "https" in found.reason  # what would work
    assert "alias" not in found.reason


def test_a_file_store_is_a_configuration_error_not_a_missing_alias(tmp_path):
    uri = str(tmp_path / "mlruns")
    found = diagnose(raised_by(uri), "m", "champion", uri)
    assert isinstance(found, Misconfigured) and "file-system store" in found.reason, found
    assert str(tmp_path) not in found.reason


def test_missing_model_and_missing_alias_are_told_apart(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).create_registered_model("m")
    no_alias = diagnose(raised_by(uri, "m"), "m", "champion", uri)
    no_model = diagnose(raised_by(uri, "other"), "other", "champion", uri)
    assert no_alias == Missing("no version of 'm' has alias 'champion'")
    assert no_model == Missing("no model named 'other' is registered in this tracking store")


def test_refused_credentials_name_the_variables_to_set(refusing_server, monkeypatch):
    for variable in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    found = diagnose(raised_by(refusing_server), "m", "champion", refusing_server)
    assert isinstance(found, Misconfigured), found
    assert "none were given" in found.reason and "MLFLOW_TRACKING_PASSWORD" in found.reason
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "someone")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
    found = diagnose(raised_by(refusing_server), "m", "champion", refusing_server)
    assert isinstance(found, Misconfigured) and "refused the credentials given" in found.reason
    assert "wrong" not in found.reason and "127.0.0.1" not in found.reason


def test_readiness_says_the_registry_is_misconfigured(tmp_path, tmp_path_factory):
    """The whole path: watcher -> follower -> /health/ready, for the newcomer's likeliest mistake
    (MLFLOW_TRACKING_URI=./mlruns, a store with no registry)."""
    started = start_server(str(tmp_path / "mlruns"), tmp_path_factory, ["tiny_reg"], wait_ready=False)
    try:
        r = wait_for(f"{started['url']}/health/ready", lambda r: "misconfigured" in r.text, 30)
        waiting = r.json()["waiting"]["tiny_reg"]
        assert r.status_code == 503 and waiting.startswith("registry misconfigured: "), waiting
        assert "file-system store" in waiting and "has alias" not in waiting
        assert str(tmp_path) not in r.text
        answer = httpx.post(f"{started['url']}/predict", json={"features": {"a": 1}})
        assert answer.status_code == 503
    finally:
        stop(started)
