"""Two serving replicas (separate processes and caches, as two hosts would have) behind a real load
balancer (Debian's HAProxy, started here, health-checking /health/ready): the alias is moved while
clients send requests through the balancer; no request fails and both replicas end on the new
version."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from mlflow.tracking import MlflowClient

from tests import tiny_versions
from tests.registry_helpers import register_folder
from tests.services import Haproxy, eventually, start_server, stop

pytestmark = pytest.mark.e2e
ROW = {"a": 1.0, "b": 2.0, "c": 3.0}


def version_folder(root, tag: str):
    return tiny_versions.write_version(root / tag, tiny_versions.regressor(), "regression")


def test_alias_move_under_load_through_a_load_balancer(tmp_path, tmp_path_factory):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    registry = MlflowClient(tracking_uri=uri, registry_uri=uri)
    first = register_folder(uri, "tiny_reg", version_folder(tmp_path, "v1"))
    registry.set_registered_model_alias("tiny_reg", "champion", first)
    replicas = [start_server(uri, tmp_path_factory, ["tiny_reg"]) for _ in range(2)]
    balancer = None
    try:
        balancer = Haproxy([r["url"] for r in replicas], tmp_path).start()
        failures, answered, done = [], [], threading.Event()

        def client() -> None:
            with httpx.Client(timeout=10) as http:
                while not done.is_set():
                    try:
                        r = http.post(f"{balancer.url}/predict", json={"features": ROW})
                    except httpx.TransportError as err:
                        failures.append(type(err).__name__)
                        continue
                    if r.status_code != 200 or r.json()["prediction"] != 14.0:
                        failures.append(r.status_code)
                    else:
                        answered.append(r.json()["version"])

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        second = register_folder(uri, "tiny_reg", version_folder(tmp_path, "v2"))
        registry.set_registered_model_alias("tiny_reg", "champion", second)

        def both_moved() -> bool:
            return all(
                httpx.get(f"{r['url']}/models/tiny_reg").json().get("version") == second for r in replicas
            )

        moved = eventually(both_moved, seconds=60)
        mark = len(answered)
        time.sleep(1.0)  # keep the load on after the move
        done.set()
        for t in threads:
            t.join()
    finally:
        if balancer:
            balancer.stop()
        for replica in replicas:
            stop(replica)
    assert moved, [r["log"].read_text()[-1500:] for r in replicas]
    assert failures == []
    assert set(answered) == {first, second} and len(answered) > 100
    assert set(answered[mark + 50 :]) == {second}  # once both moved, every answer is the new version
