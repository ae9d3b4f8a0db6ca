"""Native fallback, said plainly (issue 22, item 2): a model the converters refuse (CatBoost with
categorical features) shipped with --native-fallback is registered as MLflow's own CatBoost model
tagged runtime=native with the exporter's reason; serving runs it in `mlflow models serve`, a
process it starts and supervises, routes its /predict there, and says `native (export failed:
...)` in /models; the ONNX server process never loads CatBoost."""

from __future__ import annotations

import json

import httpx
import psutil
import pytest

from serving.registry.promote import promote
from tests.services import eventually, start_server, stop
from tests.shipping import catboost_with_categories, onnxship

pytestmark = pytest.mark.e2e
REASON = (
    "export failed: CatBoost's ONNX exporter: ONNX-ML format export does yet not support categorical features"
)


@pytest.fixture(scope="module")
def shipped_natively(tmp_path_factory):
    user = tmp_path_factory.mktemp("native-user")
    csv, model, X = catboost_with_categories(user)
    done = onnxship(
        "ship",
        "cb.cbm",
        "--data",
        csv.name,
        "--target",
        "value",
        "--out",
        "out",
        "--native-fallback",
        cwd=user,
    )
    return {"done": done, "uri": f"sqlite:///{user / 'out' / 'mlflow.db'}", "model": model, "X": X}


def test_a_refused_model_is_registered_natively_with_its_reason(shipped_natively):
    done = shipped_natively["done"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "registered NATIVE: cb version 1, alias 'candidate'" in done.stdout and REASON in done.stdout
    assert "❌" in done.stdout and f"native ({REASON[:60]}" in done.stdout  # the summary row says so
    from mlflow.tracking import MlflowClient

    uri = shipped_natively["uri"]
    mv = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version_by_alias("cb", "candidate")
    assert mv.tags["runtime"] == "native" and mv.tags["native_reason"] == REASON
    assert json.loads(mv.tags["native_io"])["features"] == list(shipped_natively["X"].columns)


def test_the_native_version_is_served_through_its_supervised_sidecar(shipped_natively, tmp_path_factory):
    uri = shipped_natively["uri"]
    print(promote("cb", None, "champion", uri, "candidate"))  # no ONNX file to check: promoted as is
    started = start_server(uri, tmp_path_factory, ["cb"], wait_ready=False)
    try:
        url = started["url"]
        assert eventually(lambda: httpx.get(f"{url}/health/ready").status_code == 200, 120), httpx.get(
            f"{url}/health/ready"
        ).text
        described = httpx.get(f"{url}/models/cb").json()
        assert described["status"] == f"native ({REASON})" and described["runtime"] == "native"
        X, model = shipped_natively["X"], shipped_natively["model"]
        rows = [{k: (None if v != v else v) for k, v in row.items()} for row in X.head(20).to_dict("records")]
        expected = [str(label) for label in model.predict(X.head(20)).reshape(-1)]
        one = httpx.post(f"{url}/predict", json={"model": "cb", "features": rows[0]})
        assert one.status_code == 200 and one.json()["label"] == expected[0], one.text
        batch = httpx.post(f"{url}/predict/batch", json={"model": "cb", "rows": rows})
        assert batch.status_code == 200 and batch.json()["labels"] == expected, batch.text
        bad = httpx.post(f"{url}/predict", json={"model": "cb", "features": {"nope": 1}})
        assert bad.status_code == 422 and "missing" in bad.json()["error"]
        # KServe V2: one tensor per column (BYTES categories, FP32 numbers), labels as BYTES
        v2_inputs = [
            {
                "name": name,
                "datatype": "BYTES" if name in ("cut", "colour") else "FP32",
                "shape": [len(rows), 1],
                "data": [row[name] for row in rows],
            }
            for name in X.columns
        ]
        v2 = httpx.post(f"{url}/v2/models/cb/infer", json={"inputs": v2_inputs})
        assert v2.status_code == 200, v2.text
        assert v2.json()["outputs"] == [
            {"name": "label", "shape": [len(rows)], "datatype": "BYTES", "data": expected}
        ]
        assert httpx.get(f"{url}/v2/models/cb").json()["platform"] == "mlflow_pyfunc"
        # the scoring server is a child process; the ONNX server itself never loaded CatBoost
        server = psutil.Process(started["proc"].pid)
        sidecars = [p for p in server.children(recursive=True) if "models serve" in " ".join(p.cmdline())]
        assert len(sidecars) == 1
        assert not [m.path for m in server.memory_maps() if "catboost" in m.path.lower()]
        # supervised: killed, it is started again and the model answers again
        for process in [sidecars[0], *sidecars[0].children(recursive=True)]:
            process.kill()
        assert eventually(
            lambda: (
                httpx.post(f"{url}/predict", json={"model": "cb", "features": rows[0]}).status_code == 200
            ),
            120,
        )
    finally:
        stop(started)
