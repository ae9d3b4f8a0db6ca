"""Following that cannot silently stop (issue 10, finding 6): the app with its real registry
follower and watcher over a tiny real registry, in-process. A line the follower cannot read, a
killed watcher and a dead follower thread are each survived, counted, and said by readiness."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient

from serving.http.app import create_app
from serving.settings import Settings
from tests import tiny_versions
from tests.registry_helpers import champion_registry, register_folder
from tests.services import eventually


@pytest.fixture
def registry(tmp_path) -> str:
    return champion_registry(tmp_path, {"tiny_reg": (tiny_versions.regressor(), "regression")})


def settings_for(registry: str, tmp_path, **extra) -> Settings:
    """One tiny model, polled every 0.3 s, cached under tmp_path."""
    return Settings(
        tracking_uri=registry,
        models=["tiny_reg"],
        default_model="tiny_reg",
        poll_interval_s=0.3,
        cache_dir=tmp_path / "cache",
        warmup_calls=1,
        **extra,
    )


@pytest.fixture
def client(registry, tmp_path):
    with TestClient(create_app(settings_for(registry, tmp_path))) as c:
        eventually(lambda: c.get("/health/ready").status_code == 200, seconds=60)
        yield c


def metric(client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    return 0.0


def test_lines_the_follower_cannot_read_are_counted_and_skipped(client):
    """A watcher line `null` used to kill the follower thread."""
    follower = client.app.state.follower
    for line in (
        "null\n",
        "[1, 2]\n",
        '{"event": "ready"}\n',
        '{"event": "ready", "model": "other"}\n',
        "garbage",
    ):
        follower.handle(line)
    assert metric(client, "onnxship_watcher_unreadable_lines_total") == 5
    assert follower.stopped_reason is None
    assert client.get("/health/ready").status_code == 200
    assert client.post("/predict", json={"features": {"a": 1, "b": 1, "c": 1}}).json()["prediction"] == 6.0


def test_a_killed_watcher_is_restarted_and_following_goes_on(client, registry, tmp_path):
    follower = client.app.state.follower
    first = follower._proc.pid
    os.kill(first, signal.SIGKILL)
    eventually(lambda: follower._proc.pid != first and follower._proc.poll() is None, seconds=20)
    assert metric(client, 'onnxship_follower_restarts_total{cause="watcher_exit"}') >= 1
    version = register_folder(
        registry,
        "tiny_reg",
        tiny_versions.write_version(tmp_path / "v2", tiny_versions.regressor(), "regression"),
    )
    MlflowClient(tracking_uri=registry, registry_uri=registry).set_registered_model_alias(
        "tiny_reg", "champion", version
    )
    eventually(lambda: client.get("/models/tiny_reg").json().get("version") == version, seconds=30)
    assert client.get("/health/ready").status_code == 200


def test_a_dead_follower_thread_makes_the_server_unready_until_it_is_restarted(client, monkeypatch):
    follower = client.app.state.follower
    monkeypatch.setattr(follower, "check", lambda: None)  # hold the supervisor off to look at the gap

    def die() -> None:
        raise SystemExit("a bug that escapes every handler")

    monkeypatch.setattr(follower, "_follow_one_watcher", die)
    follower._end_watcher()  # the thread's next turn calls the broken method and dies
    eventually(lambda: not follower._thread.is_alive(), seconds=20)
    r = client.get("/health/ready")
    assert r.status_code == 503 and r.json()["following"] == "the registry follower thread is not running"
    monkeypatch.undo()  # the supervisor's check() runs again: the thread is started anew
    eventually(lambda: client.get("/health/ready").status_code == 200, seconds=20)
    assert metric(client, 'onnxship_follower_restarts_total{cause="thread"}') == 1
    eventually(lambda: metric(client, "onnxship_following") == 1, seconds=5)


def test_a_stalled_move_is_shown_and_makes_the_server_unready_until_it_clears(registry, tmp_path):
    """Findings 3 and 11: a held cache lock stopped following silently (ready 200, following 1),
    and a move that could not be fetched left /models saying the old version was simply serving."""
    import fcntl

    with TestClient(create_app(settings_for(registry, tmp_path, lock_timeout_s=1.0))) as c:
        assert eventually(lambda: c.get("/health/ready").status_code == 200, seconds=60)
        version = register_folder(
            registry,
            "tiny_reg",
            tiny_versions.write_version(tmp_path / "v2", tiny_versions.regressor(), "regression"),
        )
        with open(tmp_path / "cache" / "tiny_reg" / ".lock", "a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            MlflowClient(tracking_uri=registry, registry_uri=registry).set_registered_model_alias(
                "tiny_reg", "champion", version
            )
            ready = eventually(lambda: (r := c.get("/health/ready")).status_code == 503 and r, seconds=30)
            assert "following of 'tiny_reg' stalled" in ready.json()["following"]
            assert "cache lock" in ready.json()["following"]
            assert metric(c, "onnxship_following") == 0
            model = c.get("/models/tiny_reg").json()
            assert model["version"] == "1" and f"version {version} not served yet" in model["pending"]
            assert c.post("/predict", json={"features": {"a": 1, "b": 1, "c": 1}}).status_code == 200
        assert eventually(lambda: c.get("/models/tiny_reg").json().get("version") == version, seconds=30)
        assert eventually(lambda: c.get("/health/ready").status_code == 200, seconds=30)
        assert "pending" not in c.get("/models/tiny_reg").json() and metric(c, "onnxship_following") == 1


def test_a_withdrawn_copy_stops_serving_at_once(client):
    """Finding 1: a local copy the registry does not vouch for stayed 'serving'."""
    follower = client.app.state.follower
    follower.handle('{"event": "withdrawn", "model": "tiny_reg", "version": "1", "reason": "not vouched"}\n')
    assert client.get("/health/ready").status_code == 503
    assert client.get("/models/tiny_reg").json()["status"] == "version 1 withdrawn: not vouched"
    assert client.post("/predict", json={"features": {"a": 1, "b": 1, "c": 1}}).status_code == 503


def test_a_withdrawal_right_after_the_announcement_is_not_overtaken_by_the_load(client, tmp_path):
    """Review of issue 19: `withdrawn` was applied on the reading thread while the announced copy
    was still loading on its own thread; the load then swapped the withdrawn copy back in."""
    from onnxship.version.manifest import file_manifest

    folder = tmp_path / "cache" / "tiny_reg" / "v1"
    ready = {"event": "ready", "model": "tiny_reg", "version": "1", "path": str(folder)}
    ready |= {"manifest": file_manifest(folder), "origin": "verified local copy (not yet confirmed)"}
    follower = client.app.state.follower
    follower.handle(json.dumps(ready) + "\n")  # the load takes a while (hash, session, warm-up)
    follower.handle('{"event": "withdrawn", "model": "tiny_reg", "version": "1", "reason": "not vouched"}\n')
    assert eventually(lambda: client.get("/models/tiny_reg").json()["status"].endswith("not vouched"))
    time.sleep(0.5)  # nothing queued may bring it back
    assert client.get("/health/ready").status_code == 503
    assert client.get("/models/tiny_reg").json()["status"] == "version 1 withdrawn: not vouched"
