"""A hostile client against a real server (`python -m serving.http.serve`, uvicorn, tiny models in
a real registry): slow-loris headers, bodies that never end, connection floods, SIGTERM while they
are open, huge-count bodies, markup in keys, host paths and plain-text errors (issue 10, 9-11)."""

from __future__ import annotations

import select
import signal
import socket
import time

import httpx
import psutil
import pytest
from mlflow.tracking import MlflowClient

from tests import tiny_versions
from tests.conftest import ROOT
from tests.registry_helpers import champion_registry, register_folder
from tests.services import eventually, start_server, stop

MODELS = ["tiny_reg", "tiny_clf", "tiny_gather"]
LIMITS = {
    "header_timeout_s": 1.0,
    "body_timeout_s": 1.0,
    "max_connections": 60,
    "graceful_shutdown_s": 2.0,
    "max_values": 50_000,
}
ROW = {"a": 1.0, "b": 2.0, "c": 3.0}


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> str:
    graphs = {"tiny_reg": (tiny_versions.regressor(), "regression")}
    graphs |= {"tiny_clf": (tiny_versions.classifier(), "classification")}
    graphs |= {"tiny_gather": (tiny_versions.gatherer(), "regression")}
    return champion_registry(tmp_path_factory.mktemp("versions"), graphs)


@pytest.fixture(scope="module")
def server(registry, tmp_path_factory):
    started = start_server(registry, tmp_path_factory, MODELS, **LIMITS)
    yield started
    stop(started)


def raw(port: int, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if data:
        sock.sendall(data)
    return sock


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closed the connection within `seconds`, and what it said first."""
    sock.settimeout(seconds)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except TimeoutError:
        return False, got
    except ConnectionResetError:
        pass
    return True, got


def well_behaved(server) -> int:
    return httpx.post(f"{server['url']}/predict", json={"features": ROW}, timeout=5).status_code


def test_slow_loris_headers_are_cut_off(server):
    """Finding 9: connections sending a header byte now and then stayed open for minutes."""
    socks = [raw(server["port"], b"POST /predict HTTP/1.1\r\nHost: x\r\n") for _ in range(20)]
    socks += [raw(server["port"]) for _ in range(10)]  # connected, silent
    started = time.monotonic()
    for sock in socks[:20]:
        sock.sendall(b"X-a: b\r\n")  # still trickling
    assert well_behaved(server) == 200
    results = [closed_within(s, 4) for s in socks]
    assert all(closed for closed, _ in results), "a slow connection stayed open"
    assert time.monotonic() - started < 5
    assert all(b"408" in said.split(b"\r\n")[0] for _, said in results[:20])
    assert b'{"error": "request line and headers not received within 1 s"}' in results[0][1]


def test_bodies_that_never_end_are_cut_off_and_memory_is_released(server):
    """Finding 9: 200 unfinished 1 MB bodies took the server from 94 to 296 MB."""
    process = psutil.Process(server["proc"].pid)
    before = process.memory_info().rss
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 190000\r\n\r\n"
    socks = [raw(server["port"], head + b'{"features": {"a": ' + b" " * 150_000) for _ in range(40)]
    peak = process.memory_info().rss
    results = [closed_within(s, 4) for s in socks]
    assert all(closed for closed, _ in results)
    assert all(said.startswith(b"HTTP/1.1 408") for _, said in results), results[0][1][:200]
    assert b"request body not received within 1 s" in results[0][1]
    assert well_behaved(server) == 200
    assert process.memory_info().rss - before < 60e6, (before, peak, process.memory_info().rss)


def test_connections_beyond_the_limit_get_a_json_503(server):
    socks = [raw(server["port"]) for _ in range(70)]
    time.sleep(0.3)  # well inside the 1 s header deadline: only the limit can have answered yet
    try:
        said = [s.recv(1000, socket.MSG_DONTWAIT) if readable(s) else b"" for s in socks]
        refused = [s for s in said if s]
        assert len(refused) >= 10, f"{len(refused)} of 70 connections refused with a limit of 60"
        assert all(s.startswith(b"HTTP/1.1 503") and b'"too many connections' in s for s in refused)
    finally:
        for sock in socks:
            sock.close()
    time.sleep(0.2)
    assert well_behaved(server) == 200


def readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def test_huge_counts_are_refused_before_parsing(server):
    """Finding 10: 349 k empty rows in 1 MiB cost the event loop half a second before their 422.
    A feature-row route needs at most rows x (widest model + 1) commas: here 50 x 4 + 16."""
    body = b'{"rows": [' + b",".join([b"{}"] * 60_000) + b"]}"
    r = httpx.post(
        f"{server['url']}/predict/batch", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and r.json() == {"error": "request has more than 216 values"}
    assert httpx.post(f"{server['url']}/predict/batch", json={"rows": [ROW] * 50}).status_code == 200
    v2 = {"inputs": [{"name": "input", "shape": [20_000, 3], "datatype": "FP32", "data": [1] * 60_000}]}
    r = httpx.post(f"{server['url']}/v2/models/tiny_reg/infer", json=v2)
    assert r.status_code == 413 and r.json() == {"error": "request has more than 50000 values"}


def test_nothing_the_client_sent_and_no_host_path_comes_back(server):
    """Finding 11: a 5,000-character <script> key came back in a 422, and absolute cache paths
    appeared in /models, /health/ready and 503 bodies."""
    key = "<script>" + "x" * 5000
    bodies = [
        ("/predict", {"features": {**ROW, key: 1}}),
        ("/predict", {key: 1, "features": ROW}),
        ("/predict", {"model": key, "features": ROW}),
        ("/predict/batch", {"rows": [{**ROW, key: "hot"}]}),
        ("/predict/batch", {"rows": [ROW], key: 1}),
        (
            "/v2/models/tiny_reg/infer",
            {"inputs": [{"name": key, "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
        ),
    ]
    for route, body in bodies:
        r = httpx.post(f"{server['url']}{route}", json=body)
        assert r.status_code in (404, 422), (route, r.status_code)
        assert set(r.json()) == {"error"} and "script" not in r.text and "xxxx" not in r.text, r.text[:300]
    for path in ("/models", "/models/tiny_reg", "/health/ready", "/benchmark"):
        text = httpx.get(f"{server['url']}{path}").text
        assert "/tmp/" not in text and str(ROOT) not in text, (path, text[:300])


def test_an_error_inside_the_runtime_is_a_json_500(server):
    ok = httpx.post(f"{server['url']}/predict", json={"model": "tiny_gather", "features": ROW})
    assert ok.status_code == 200 and ok.json()["prediction"] == 20.0
    r = httpx.post(f"{server['url']}/predict", json={"model": "tiny_gather", "features": {**ROW, "a": 7.0}})
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"error": "internal error (InvalidArgument); see the server log"}


def test_sigterm_ends_the_server_within_its_bound_while_slow_clients_hang_on(registry, tmp_path_factory):
    """Finding 9: with slow connections open, SIGTERM did not stop the server within 10 s."""
    started = start_server(
        registry, tmp_path_factory, MODELS, header_timeout_s=60, body_timeout_s=60, graceful_shutdown_s=2
    )
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"
    socks = [raw(started["port"], head) for _ in range(30)]
    sent = time.monotonic()
    started["proc"].send_signal(signal.SIGTERM)
    try:
        started["proc"].wait(timeout=8)
    finally:
        for sock in socks:
            sock.close()
        if started["proc"].poll() is None:
            started["proc"].kill()
    assert time.monotonic() - sent < 6


def test_two_workers_share_one_cache_and_each_follows_the_alias(registry, tmp_path_factory, tmp_path):
    """Finding 7: with `--workers N` every worker ran its own watcher over one cache without a lock.
    Now they share it safely, and an alias move reaches every worker."""
    started = start_server(registry, tmp_path_factory, ["tiny_reg"], workers=2)
    try:
        graph = tiny_versions.regressor()
        version = register_folder(
            registry, "tiny_reg", tiny_versions.write_version(tmp_path / "v", graph, "regression")
        )
        MlflowClient(tracking_uri=registry, registry_uri=registry).set_registered_model_alias(
            "tiny_reg", "champion", version
        )

        def every_answer_is_new() -> bool:
            with httpx.Client() as client:  # new connections: the kernel spreads them over both workers
                replies = [
                    client.post(
                        f"{started['url']}/predict", json={"features": ROW}, headers={"connection": "close"}
                    )
                    for _ in range(40)
                ]
            # a worker still loading answers 503 (no version yet): not new, asked again
            return {r.json().get("version") if r.status_code == 200 else None for r in replies} == {version}

        eventually(every_answer_is_new, seconds=60, every=0.5)
        log = started["log"].read_text()
        assert log.count("now serving version " + version) == 2, log[-3000:]
        assert "rejected" not in log and "failed to load" not in log
    finally:
        stop(started)


# ---- issue 19: headers, malformed HTTP, ids JSON cannot carry ------------------------------------


def head_with(port: int, header_bytes: int) -> tuple[bool, bytes]:
    """A GET whose one header carries `header_bytes` bytes, sent in 64 KiB pieces."""
    sock = raw(port, b"GET /health/live HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-padding: ")
    try:
        piece = b"a" * 65536
        sent = 0
        while sent < header_bytes:
            sock.sendall(piece[: header_bytes - sent])
            sent += min(len(piece), header_bytes - sent)
        sock.sendall(b"\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server refused and closed while we were still sending
    return closed_within(sock, 5)


def test_headers_past_their_limit_get_a_json_431_and_memory_stays_bounded(server):
    """Finding 7: no header limit: 8 connections sending 48 MB headers raised RSS by 440 MB, and
    one 64 MB header got a 200."""
    worker = psutil.Process(server["proc"].pid)
    before = worker.memory_info().rss
    for _ in range(4):
        closed, said = head_with(server["port"], 16 << 20)
        assert closed and said.startswith(b"HTTP/1.1 431"), said[:200]
        assert said.split(b"\r\n\r\n", 1)[1].startswith(b'{"error": "request line and headers larger than')
    assert worker.memory_info().rss - before < 64 << 20
    closed, said = head_with(server["port"], 30_000)  # under the 64 KiB default: answered
    assert said.startswith(b"HTTP/1.1 200"), said[:200]
    assert well_behaved(server) == 200


def test_malformed_http_gets_the_json_error_shape(server):
    """Finding 10: uvicorn answered unparseable HTTP with a plain-text 400."""
    for garbage in (
        b"GET / HTTP/9.9\r\n\r\n",
        b"\x00\x01\x02 nonsense\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\nbad header\r\n\r\n",
    ):
        closed, said = closed_within(raw(server["port"], garbage), 5)
        head, _, body = said.partition(b"\r\n\r\n")
        assert closed and head.startswith(b"HTTP/1.1 400"), said[:300]
        assert b"content-type: application/json" in head
        assert body == b'{"error": "malformed HTTP request"}'


def test_an_id_json_cannot_carry_is_a_422_not_a_500(server):
    """Finding 10: a V2 `id` holding a lone surrogate was echoed into the answer: a 500 and a
    traceback per request."""
    tensor = '{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}'
    tracebacks = server["log"].read_text().count("Traceback")  # other tests' 500s log theirs
    for id_ in ('"\\ud800"', '"\\udfff\\ud800"', '"' + "x" * 300 + '"'):
        body = f'{{"id": {id_}, "inputs": [{tensor}]}}'.encode()
        r = httpx.post(f"{server['url']}/v2/models/tiny_reg/infer", content=body)
        assert r.status_code == 422 and set(r.json()) == {"error"}, r.text[:300]
    r = httpx.post(
        f"{server['url']}/v2/models/tiny_reg/infer", content=f'{{"id": "7", "inputs": [{tensor}]}}'
    )
    assert r.status_code == 200 and r.json()["id"] == "7"
    assert server["log"].read_text().count("Traceback") == tracebacks
