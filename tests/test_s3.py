"""The production layout: an MLflow tracking server on PostgreSQL whose artifacts live in an
S3-compatible object store (moto's server mode, started here), used directly by every client
(`--no-serve-artifacts`): the package stage writes the version to S3, `promote` and the serving
watcher read it from there. Someone who can write to the bucket but not to the registry gets
nothing served."""

from __future__ import annotations

import os

import httpx
import pytest
from mlflow.tracking import MlflowClient

from serving.registry.promote import PromotionRefused, promote
from tests.conftest import packaging_into
from tests.served import served_version, start_server, stop
from tests.services import MlflowServer, Postgres, S3Server, eventually

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def s3_registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3-mlflow")
    s3 = S3Server(root / "moto.log").start()
    saved = {k: os.environ.get(k) for k in s3.env}
    os.environ.update(s3.env)  # the package stage (this process) and the server (a child) use S3
    pg = Postgres().start()
    server = MlflowServer(
        pg.url, root / "unused", root / "mlflow-server.log", s3_root=f"s3://{s3.bucket}/mlflow"
    )
    try:
        server.start()
        yield s3, server
    finally:
        server.stop()
        pg.stop()
        s3.stop()
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def test_package_promote_serve_with_artifacts_in_object_storage(
    s3_registry, tiny_pipeline, pipeline_dir, row, tmp_path_factory, request
):
    from stages import package

    s3, mlflow_server = s3_registry
    cfg = packaging_into(mlflow_server.url, pipeline_dir, tmp_path_factory, request)
    first = package.run(cfg)
    assert first["registered"], first
    client = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    source = client.get_model_version("xgboost", "1").source
    assert source.startswith(f"s3://{s3.bucket}/"), source
    keys = s3.keys()
    assert any(k.endswith("model/model.onnx") for k in keys) and any(
        k.endswith("model/onnxship.json") for k in keys
    )
    promote("xgboost", None, "champion", mlflow_server.url)

    server = start_server(mlflow_server.url, tmp_path_factory, models=["xgboost"])
    try:
        r = httpx.post(f"{server['url']}/predict", json={"features": row})
        assert r.status_code == 200 and r.json()["version"] == "1", r.text

        # version 2 is registered, then its metadata is rewritten in the bucket
        second = package.run(cfg)
        prefix = client.get_model_version("xgboost", str(second["version"])).source.removeprefix(
            f"s3://{s3.bucket}/"
        )
        s3.client().put_object(Bucket=s3.bucket, Key=f"{prefix}/onnxship.json", Body=b'{"features": []}')
        with pytest.raises(PromotionRefused, match=r"sha256 of onnxship\.json"):
            promote("xgboost", str(second["version"]), "champion", mlflow_server.url)
        client.set_registered_model_alias("xgboost", "champion", str(second["version"]))  # by hand
        status = eventually(
            lambda: "rejected" in (s := httpx.get(f"{server['url']}/models/xgboost").json())["status"] and s,
            seconds=30,
        )
        assert status and "sha256 of onnxship.json" in status["status"], status
        assert served_version(server, "xgboost") == "1"

        # version 3, untouched, is served from S3 when the alias moves to it
        third = package.run(cfg)
        promote("xgboost", str(third["version"]), "champion", mlflow_server.url)
        eventually(lambda: served_version(server, "xgboost") == str(third["version"]), seconds=30)
        assert served_version(server, "xgboost") == str(third["version"]), server["log"].read_text()[-2000:]
    finally:
        stop(server)
