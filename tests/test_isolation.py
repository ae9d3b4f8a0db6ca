"""What a client, a log reader or another user of the host can learn, and what one slow model can
do to the rest (issue 19, findings 2 and 5): real servers (`python -m serving.http.serve`) over
tiny registries, a registry URI carrying credentials, a valid model that takes ~0.4 s a call."""

from __future__ import annotations

import threading
import time

import httpx
import psutil

from tests import tiny_versions
from tests.registry_helpers import champion_registry
from tests.services import eventually, free_port, start_server, stop

SECRET = "pw-9f2c7d"
AWS_SECRET = "aws-4b1e0a"


def metric(server: dict, name: str) -> float:
    total = 0.0
    for line in httpx.get(f"{server['url']}/metrics").text.splitlines():
        if line.startswith((name + " ", name + "{")):
            total += float(line.split()[-1])
    return total


def test_no_credential_or_address_reaches_a_client_a_log_a_file_or_a_command_line(tmp_path, tmp_path_factory):
    """Finding 2: with `http://user:pass@host` and the registry down, /health/ready, /models and
    /predict's 503 showed the password (and, without one, internal hosts and ports); so did the
    log, the cache record (0644) and the watcher's command line."""
    port = free_port()  # nothing listens there: the registry is down
    uri = f"http://onnxship:{SECRET}@127.0.0.1:{port}"
    env_file = tmp_path / "registry.env"
    env_file.write_text(
        f"# the store's credentials, for the watcher alone\nAWS_SECRET_ACCESS_KEY={AWS_SECRET}\n"
    )
    started = start_server(
        uri,
        tmp_path_factory,
        ["tiny_reg"],
        wait_ready=False,
        registry_env_file=str(env_file),
        registry_timeout_s="1",
    )
    try:
        assert eventually(lambda: metric(started, "onnxship_registry_poll_errors_total") >= 2, seconds=60)
        answers = [
            httpx.get(f"{started['url']}{path}") for path in ("/health/ready", "/models", "/models/tiny_reg")
        ]
        answers += [httpx.get(f"{started['url']}/v2/health/ready")]
        answers += [httpx.post(f"{started['url']}/predict", json={"features": {"a": 1, "b": 2, "c": 3}})]
        assert answers[0].status_code == answers[-1].status_code == 503
        waiting = answers[0].json()["waiting"]["tiny_reg"]
        assert "registry unreachable: MlflowException (details in the server log)" in waiting, waiting
        for answer in answers:
            assert SECRET not in answer.text and "onnxship:" not in answer.text, answer.text
            assert (
                "127.0.0.1" not in answer.text
                and f":{port}" not in answer.text
                and f"={port}" not in answer.text
            )
        server = psutil.Process(started["proc"].pid)
        processes = [server, *server.children(recursive=True)]
        # the server's one watcher (its download forkserver, a fork of it, shows the same command line)
        watchers = [p for p in server.children() if "serving.registry.watcher" in " ".join(p.cmdline())]
        assert len(watchers) == 1
        for process in processes:
            assert SECRET not in " ".join(process.cmdline())
        assert watchers[0].environ()["AWS_SECRET_ACCESS_KEY"] == AWS_SECRET  # the watcher has it
        assert "AWS_SECRET_ACCESS_KEY" not in server.environ()  # the HTTP server never does
    finally:
        stop(started)
    log = started["log"].read_text()
    assert "registry poll failed for tiny_reg" in log and "127.0.0.1" in log  # operators see the host
    assert SECRET not in log and AWS_SECRET not in log
    for path in tmp_path_factory.getbasetemp().rglob("*.state/**/*"):
        assert path.is_dir() or SECRET not in path.read_text()


def test_a_slow_model_neither_flaps_readiness_nor_holds_up_health_or_other_models(tmp_path_factory):
    """Finding 5: a valid model taking ~1.5 s a call outlasted `following_stall_s` while warming
    up, so the watcher was restarted and the model reloaded every ~30 s (readiness flapping), and
    /predict ran it on the event loop (/health/live 0.88 s behind one slow request); and the sync
    health handlers queued behind slow batches in the thread pool (6.5 s under 45 of them)."""
    graphs = {
        "tiny_reg": (tiny_versions.regressor(), "regression"),
        "tiny_slow": (tiny_versions.slow(2400), "regression"),
    }
    graphs |= {"tiny_busy": (tiny_versions.slow(1000), "regression")}  # ~0.08 s a call
    registry = champion_registry(tmp_path_factory.mktemp("versions"), graphs)
    # warming up takes 20 calls x ~0.4 s, longer than following may stay silent (6 s)
    started = start_server(
        registry,
        tmp_path_factory,
        ["tiny_reg", "tiny_slow", "tiny_busy"],
        following_stall_s="6",
        warmup_calls="20",
    )
    row = {"a": 1.0, "b": 2.0, "c": 3.0}
    try:
        assert metric(started, "onnxship_follower_restarts_total") == 0
        for _ in range(10):
            assert httpx.get(f"{started['url']}/health/ready").status_code == 200
            time.sleep(0.3)
        answers: list[httpx.Response] = []
        slow_body = {"model": "tiny_slow", "features": row}

        def slow_request() -> None:
            answers.append(httpx.post(f"{started['url']}/predict", json=slow_body, timeout=30))

        with httpx.Client(base_url=started["url"]) as client:  # made beforehand: time the server only
            began = time.perf_counter()
            assert client.post("/predict", json=slow_body, timeout=30).status_code == 200
            slow_call = time.perf_counter() - began  # ~0.4 s alone
            callers = [threading.Thread(target=slow_request) for _ in range(3)]
            for caller in callers:
                caller.start()
            time.sleep(0.1)
            waits = []
            for _ in range(8):
                began = time.perf_counter()
                assert client.get("/health/live").status_code == 200
                fast = client.post("/predict", json={"model": "tiny_reg", "features": row})
                waits.append(time.perf_counter() - began)
                assert fast.json()["prediction"] == 14.0
            for caller in callers:
                caller.join()
        assert [a.json()["prediction"] for a in answers] == [14.0] * 3
        # on the event loop, a request arriving during a slow call waits for the rest of it (and the
        # queued ones): here it waits only for its share of the cores
        assert max(waits) < slow_call / 2, (waits, slow_call)
        # more slow batches than the thread pool has threads (40): health answers on the event loop
        batches = [
            threading.Thread(
                target=lambda: httpx.post(
                    f"{started['url']}/predict/batch", json={"model": "tiny_busy", "rows": [row]}, timeout=60
                )
            )
            for _ in range(45)
        ]
        for batch in batches:
            batch.start()
        time.sleep(0.3)
        with httpx.Client() as probe:  # as a kubelet would: a client already made
            began = time.perf_counter()
            assert probe.get(f"{started['url']}/health/live").status_code == 200
            waited = time.perf_counter() - began
        for batch in batches:
            batch.join()
        # queued behind the pool it would wait for one of 40 running batches, ~40 x 0.08 s / 2 cores;
        # on the event loop it waits only for its share of the cores
        assert waited < 1.0, waited
        assert metric(started, "onnxship_follower_restarts_total") == 0
    finally:
        stop(started)
