"""A model of typed columns served by a real server: the smoke run's diamonds pipeline
(categories as strings, encoders and trees as ONE graph), registered by the pipeline itself.
Every hostile kind of category answers through /predict, /predict/batch and KServe V2 (JSON and
binary BYTES tensors) exactly as the native pipeline answers it; what does not fit a column is a
422 naming the column, never repeating the value."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from onnxship import families
from onnxship.data.workloads import workload_at

pytestmark = pytest.mark.e2e

MODEL = "diamonds_pipeline"
TOLERANCE = {"atol": 1.0e-4, "rtol": 1.0e-5}  # conf/validate/default.yaml, default
ECHO = "Zq7-echo-probe"  # a value no error may repeat (not part of any model or column name)
# each hostile kind of category, on the cut column
CATEGORIES = [
    "Ideal",  # known
    "Zz-never-seen",  # unknown
    None,  # missing
    "",  # empty
    "IDEAL",
    " Ideal",
    "Ideal\t",  # case and whitespace
    "Idéal",
    "理想",
    "💎",
    "Ideal\x00tail",  # unicode, an embedded NUL
    "x" * 10_000,  # very long
    "3",
    "nan",
    "None",  # numbers and nulls written as strings
]


@pytest.fixture(scope="module")
def native(tiny_pipeline):
    """(answer rows natively, a test row as a /predict body): the pipeline as the native library runs it."""
    cfg, _ = tiny_pipeline
    family, est, meta = families.load_native(Path(cfg.paths.native) / MODEL)
    data = workload_at(Path(cfg.paths.prepared) / "diamonds")
    X, _ = data.split("test")
    row = {k: (float(v) if isinstance(v, np.floating) else v) for k, v in X.iloc[0].items()}

    def answer(rows: list[dict]) -> np.ndarray:
        frame = pd.DataFrame(rows)
        for col in meta["columns"]:
            frame[col["name"]] = frame[col["name"]].astype(np.float32 if col["type"] == "float32" else object)
        return data.native(family, est, frame).values

    return answer, row


def assert_like_native(native_values: np.ndarray, served: list[float]) -> None:
    served_values = np.asarray(served, dtype=np.float64)
    bound = TOLERANCE["atol"] + TOLERANCE["rtol"] * np.abs(native_values)
    assert (np.abs(served_values - native_values) <= bound).all(), (native_values, served_values)


def test_the_version_says_each_columns_type_and_categories(server):
    described = httpx.get(f"{server['url']}/models/{MODEL}").json()
    types = {c["name"]: c["type"] for c in described["columns"]}
    assert types["cut"] == "string" and types["carat"] == "float32"
    cut = next(c for c in described["columns"] if c["name"] == "cut")
    assert "Ideal" in cut["categories"]
    assert [i["name"] for i in described["inputs"]] == described["features"]


@pytest.mark.parametrize("category", CATEGORIES, ids=lambda c: repr(c)[:20])
def test_predict_answers_every_kind_of_category_like_native(server, native, category):
    answer, row = native
    body = {"model": MODEL, "features": row | {"cut": category}}
    r = httpx.post(f"{server['url']}/predict", json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert_like_native(answer([row | {"cut": category}]), [r.json()["prediction"]])


def test_a_batch_of_every_kind_answers_like_native(server, native):
    answer, row = native
    rows = [row | {"cut": c, "color": c} for c in CATEGORIES]
    r = httpx.post(f"{server['url']}/predict/batch", json={"model": MODEL, "rows": rows}, timeout=30)
    assert r.status_code == 200, r.text
    assert_like_native(answer(rows), r.json()["predictions"])


def v2_tensors(rows: list[dict], columns: list[dict]) -> list[dict]:
    tensors = []
    for col in columns:
        values = [r[col["name"]] for r in rows]
        if col["type"] == "string":
            tensors.append(
                {"name": col["name"], "shape": [len(rows), 1], "datatype": "BYTES", "data": values}
            )
        else:
            tensors.append({"name": col["name"], "shape": [len(rows)], "datatype": "FP32", "data": values})
    return tensors


def test_v2_takes_one_tensor_per_column_with_bytes_for_categories(server, native):
    answer, row = native
    columns = httpx.get(f"{server['url']}/models/{MODEL}").json()["columns"]
    rows = [row | {"cut": c} for c in CATEGORIES]
    r = httpx.post(
        f"{server['url']}/v2/models/{MODEL}/infer",
        json={"id": "7", "inputs": v2_tensors(rows, columns)},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    (out,) = r.json()["outputs"]
    assert_like_native(answer(rows), out["data"])
    meta = httpx.get(f"{server['url']}/v2/models/{MODEL}").json()
    assert {i["name"]: i["datatype"] for i in meta["inputs"]}["cut"] == "BYTES"


def test_v2_binary_bytes_tensors_from_tritonclient(server, native):
    """Triton's own client sends BYTES as the binary extension lays them out (length-prefixed)."""
    import tritonclient.http as triton

    answer, row = native
    columns = httpx.get(f"{server['url']}/models/{MODEL}").json()["columns"]
    rows = [row | {"cut": c} for c in CATEGORIES if c is not None]  # binary BYTES have no null
    inputs = []
    for col in columns:
        values = [r[col["name"]] for r in rows]
        if col["type"] == "string":
            tensor = triton.InferInput(col["name"], [len(rows), 1], "BYTES")
            tensor.set_data_from_numpy(np.asarray(values, dtype=object).reshape(-1, 1), binary_data=True)
        else:
            tensor = triton.InferInput(col["name"], [len(rows), 1], "FP32")
            tensor.set_data_from_numpy(np.asarray(values, dtype=np.float32).reshape(-1, 1), binary_data=True)
        inputs.append(tensor)
    client = triton.InferenceServerClient(server["url"].removeprefix("http://"))
    result = client.infer(MODEL, inputs)
    assert_like_native(answer(rows), result.as_numpy("prediction").reshape(-1).tolist())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cut": 3}, "features.cut: Input should be a string (a category) or null"),
        ({"cut": True}, "features.cut: Input should be a string (a category) or null"),
        ({"carat": ECHO}, "features.carat: Input should be a number or null"),
        ({"carat": "0.3"}, "features.carat: Input should be a number or null"),
        ({"carat": None}, None),  # a missing number: the trees route it (answered, not refused)
    ],
    ids=["number-for-category", "bool-for-category", "string-for-number", "numeric-string", "null-number"],
)
def test_what_does_not_fit_a_column_is_a_422_naming_it_never_echoing_it(server, native, change, message):
    _, row = native
    r = httpx.post(f"{server['url']}/predict", json={"model": MODEL, "features": row | change})
    if message is None:
        assert r.status_code == 200, r.text
        assert math.isfinite(r.json()["prediction"])
        return
    assert r.status_code == 422, r.text
    assert message in r.json()["error"]
    assert ECHO not in r.text


def test_a_category_that_is_not_unicode_text_is_a_422(server, native):
    """A lone surrogate (a JSON escape can carry one; UTF-8, which the runtime takes, cannot)."""
    import json

    _, row = native
    features = row | {"cut": "\ud800" + ECHO}
    batch = json.dumps({"model": MODEL, "rows": [features, row]}, ensure_ascii=True).encode()
    headers = {"content-type": "application/json"}
    r = httpx.post(f"{server['url']}/predict/batch", content=batch, headers=headers)
    assert r.status_code == 422 and "rows[0].features.cut: not valid Unicode text" in r.json()["error"]
    assert ECHO not in r.text
    one = json.dumps({"model": MODEL, "features": features}, ensure_ascii=True).encode()
    r = httpx.post(f"{server['url']}/predict", content=one, headers=headers)
    assert r.status_code == 422 and ECHO not in r.text


def test_missing_and_unknown_columns_are_named_by_count(server, native):
    _, row = native
    short = {k: v for k, v in row.items() if k != "cut"}
    r = httpx.post(f"{server['url']}/predict", json={"model": MODEL, "features": short})
    assert r.status_code == 422 and "features: missing 'cut'" in r.json()["error"]
    extra = row | {ECHO: "x"}
    r = httpx.post(f"{server['url']}/predict", json={"model": MODEL, "features": extra})
    assert r.status_code == 422 and "1 name(s) this model does not take" in r.json()["error"]
    assert ECHO not in r.text
