"""End to end against an MLflow tracking server backed by PostgreSQL (Debian's postgresql, started
here): the pipeline's package stage registers into it, promote moves the alias through it, the
server follows the alias from it, and keeps serving when the tracking server goes away."""

from __future__ import annotations

import httpx
import pytest

from serving.registry.promote import promote
from tests.conftest import packaging_into
from tests.served import registry_errors, served_version, start_server, stop
from tests.services import MlflowServer, Postgres, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("pg-mlflow")
    pg = Postgres().start()
    server = MlflowServer(pg.url, root / "artifacts", root / "mlflow-server.log")
    try:
        server.start()
        yield pg, server
    finally:
        server.stop()
        pg.stop()


def test_registry_on_a_postgresql_tracking_server(
    tracking_server, tiny_pipeline, pipeline_dir, row, tmp_path_factory, request
):
    from stages import package

    pg, mlflow_server = tracking_server
    # a copy of the tiny pipeline's outputs, packaged into the tracking server
    cfg = packaging_into(mlflow_server.url, pipeline_dir, tmp_path_factory, request)
    first = package.run(cfg)  # points this process's MLflow at the tracking server (restored after)
    assert first["registered"] and first["alias"] == "candidate", first
    # the registry rows live in PostgreSQL
    assert pg.query("select name, version from model_versions") == [("xgboost", 1)]
    assert ("candidate",) in pg.query("select alias from registered_model_aliases")
    promote("xgboost", None, "champion", mlflow_server.url)

    server = start_server(mlflow_server.url, tmp_path_factory, models=["xgboost"])
    try:
        r = httpx.post(f"{server['url']}/predict", json={"features": row})
        assert r.status_code == 200 and r.headers["x-model-version"] == "xgboost/1", r.text

        # a new pipeline run registers version 2; promoting it moves the served version
        second = package.run(cfg)
        promote("xgboost", str(second["version"]), "champion", mlflow_server.url)
        eventually(lambda: served_version(server, "xgboost") == "2")
        assert served_version(server, "xgboost") == "2", server["log"].read_text()[-2000:]

        # tracking server down: loaded model keeps serving, liveness and readiness stay 200
        before = registry_errors(server)
        mlflow_server.stop()
        eventually(lambda: registry_errors(server) > before)
        assert registry_errors(server) > before
        assert httpx.get(f"{server['url']}/health/live").status_code == 200
        assert httpx.get(f"{server['url']}/health/ready").status_code == 200
        r = httpx.post(f"{server['url']}/predict", json={"features": row})
        assert r.status_code == 200 and r.json()["version"] == "2"
    finally:
        stop(server)
