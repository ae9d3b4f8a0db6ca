"""KServe V2 as its clients speak it (issue 19, finding 13): Triton's own HTTP client sends its JSON
body without a Content-Type and, by default, tensors as raw bytes after a JSON header (the binary
tensor extension). Driven here with `tritonclient[http]` itself against a real server, both ways,
and with raw requests for what a client library hides."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from tests import tiny_versions
from tests.registry_helpers import champion_registry
from tests.services import start_server, stop

MODELS = ["tiny_reg", "tiny_clf"]
X = np.array([[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]], dtype=np.float32)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    graphs = {"tiny_reg": (tiny_versions.regressor(), "regression")}
    graphs |= {"tiny_clf": (tiny_versions.classifier(), "classification")}
    registry = champion_registry(tmp_path_factory.mktemp("versions"), graphs)
    started = start_server(registry, tmp_path_factory, MODELS)
    yield started
    stop(started)


def triton(server):
    import tritonclient.http as triton_http

    return triton_http, triton_http.InferenceServerClient(url=server["url"].removeprefix("http://"))


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_infers_with_json_and_binary_tensors(server, binary):
    triton_http, client = triton(server)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("tiny_reg")
    tensor = triton_http.InferInput("input", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X, binary_data=binary)
    wanted = [triton_http.InferRequestedOutput("prediction", binary_data=binary)]
    result = client.infer("tiny_reg", [tensor], outputs=wanted, request_id="r-1")
    np.testing.assert_allclose(result.as_numpy("prediction"), X @ tiny_versions.WEIGHTS, rtol=1e-6)
    assert result.get_response()["id"] == "r-1"
    # no outputs named: Triton's client asks for every output in binary
    result = client.infer("tiny_clf", [tensor])
    labels, probabilities = result.as_numpy("label"), result.as_numpy("probabilities")
    assert labels.tolist() == [2, 0] and probabilities.shape == (2, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert client.get_model_metadata("tiny_reg")["inputs"][0]["name"] == "input"


def test_a_json_body_is_read_whatever_its_content_type(server):
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]})
    for headers in ({}, {"content-type": "application/octet-stream"}, {"content-type": "text/plain"}):
        r = httpx.post(f"{server['url']}/v2/models/tiny_reg/infer", content=body, headers=headers)
        assert r.status_code == 200, (headers, r.text)
        assert r.json()["outputs"][0]["data"] == [14.0]


def binary_request(header: dict, raw: bytes) -> tuple[bytes, dict]:
    head = json.dumps(header).encode()
    return head + raw, {"inference-header-content-length": str(len(head))}


@pytest.mark.parametrize(
    "header, raw, message",
    [
        (
            {"binary_data_size": 11},
            X.tobytes()[:11],
            "binary_data_size: 11 bytes, the shape and datatype need 24",
        ),
        ({"binary_data_size": 24}, X.tobytes()[:12], "fewer binary bytes than the inputs declare"),
        ({"binary_data_size": 24}, X.tobytes() + b"xx", "binary data after the last input"),
        ({"binary_data_size": 24}, np.array([[1, np.nan, 3], [1, 2, 3]], np.float32).tobytes(), "NaN"),
        (
            {"binary_data_size": 24},
            np.array([[1, np.inf, 3], [1, 2, 3]], np.float32).tobytes(),
            "not a finite",
        ),
    ],
    ids=["size disagrees", "short", "trailing", "nan", "inf"],
)
def test_bad_binary_tensors_are_named(server, header, raw, message):
    tensor = {"name": "input", "shape": [2, 3], "datatype": "FP32", "parameters": header}
    body, headers = binary_request({"inputs": [tensor]}, raw)
    r = httpx.post(f"{server['url']}/v2/models/tiny_reg/infer", content=body, headers=headers)
    assert r.status_code == 422 and message in r.json()["error"], r.text
    for length in ("-1", "x", str(len(body) + 1)):
        r = httpx.post(
            f"{server['url']}/v2/models/tiny_reg/infer",
            content=body,
            headers={"inference-header-content-length": length},
        )
        assert r.status_code == 422 and "inference-header-content-length" in r.json()["error"], r.text


def test_binary_answer_is_the_json_header_then_the_raw_outputs(server):
    tensor = {"name": "input", "shape": [2, 3], "datatype": "FP32", "parameters": {"binary_data_size": 24}}
    body, headers = binary_request(
        {"inputs": [tensor], "parameters": {"binary_data_output": True}}, X.tobytes()
    )
    r = httpx.post(f"{server['url']}/v2/models/tiny_reg/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    n = int(r.headers["inference-header-content-length"])
    head = json.loads(r.content[:n])
    (out,) = head["outputs"]
    assert out["parameters"] == {"binary_data_size": 8} and "data" not in out
    np.testing.assert_allclose(np.frombuffer(r.content[n:], "<f4"), (X @ tiny_versions.WEIGHTS).ravel())
