"""Shadow mode (issue 22, item 1): the candidate answers a sampled share of live requests off the
request path, its answers are compared with the champion's as validate compares a variant, and
`promote --require-shadow N` moves the alias only on that evidence.

The candidate that differs answers like the champion except when feature `a` exceeds 100: a
subset of inputs that validate's test split need not contain, caught here on live traffic."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from types import SimpleNamespace

import httpx
import numpy as np
import orjson
import pytest
from mlflow.tracking import MlflowClient
from onnx import TensorProto, helper, numpy_helper

from onnxship.version.manifest import file_manifest
from serving.http.activity import Activity
from serving.http.agreement import forecast_agreement, rows_agreement
from serving.http.metrics import ServerMetrics
from serving.http.routes.predict import rows_answer
from serving.http.shadow import Shadow
from serving.http.shadow_replayer import (
    LIMIT_KEYS,
    QUIET_S,
    Candidates,
    message_size,
    replay,
    wait_until_quiet,
)
from serving.http.store import LoadedModel, ModelStore, describe_verified, load_verified
from serving.registry.promote import PromotionRefused, promote
from serving.registry.shadow_evidence import TAG_PREFIX
from serving.settings import Settings
from tests import tiny_versions
from tests.registry_helpers import champion_registry, register_folder
from tests.services import eventually, start_server, stop

BUMP_ABOVE = 100.0  # the differing candidate adds BUMP where a > BUMP_ABOVE
BUMP = 5.0


def differs_above_threshold():
    """prediction = a + 2b + 3c, plus 5 where a > 100."""
    nodes = [
        helper.make_node("MatMul", ["input", "w"], ["base"]),
        helper.make_node("Slice", ["input", "start", "end", "axis"], ["a"]),
        helper.make_node("Greater", ["a", "threshold"], ["above"]),
        helper.make_node("Cast", ["above"], ["above_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["above_f", "bump"], ["extra"]),
        helper.make_node("Add", ["base", "extra"], ["prediction"]),
    ]
    inits = [
        numpy_helper.from_array(tiny_versions.WEIGHTS, "w"),
        numpy_helper.from_array(np.array([0], np.int64), "start"),
        numpy_helper.from_array(np.array([1], np.int64), "end"),
        numpy_helper.from_array(np.array([1], np.int64), "axis"),
        numpy_helper.from_array(np.array(BUMP_ABOVE, np.float32), "threshold"),
        numpy_helper.from_array(np.array(BUMP, np.float32), "bump"),
    ]
    output = [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, ["batch", 1])]
    return tiny_versions._model(nodes, output, inits)


# ---- the comparison itself ------------------------------------------------------------------


def test_rows_agreement_follows_validate_tolerances_and_labels():
    same = rows_agreement({"predictions": [1.0, 2.0]}, {"predictions": [1.00001, 2.0]}, 1e-4, 1e-5)
    assert same.within and same.rows_within == 2 and 0 < same.max_abs_diff < 1e-4
    off = rows_agreement({"predictions": [1.0, 2.0]}, {"predictions": [1.0, 7.0]}, 1e-4, 1e-5)
    assert not off.within and off.rows_within == 1 and off.max_abs_diff == pytest.approx(5.0)
    champion = {"labels": ["x", "y"], "probabilities": [{"x": 0.9, "y": 0.1}, {"x": 0.4, "y": 0.6}]}
    flipped = {"labels": ["x", "x"], "probabilities": [{"x": 0.9, "y": 0.1}, {"x": 0.6, "y": 0.4}]}
    found = rows_agreement(champion, flipped, 1e-4, 1e-5)
    assert not found.within and found.labels_agree == 1
    other_classes = {"labels": ["x", "z"], "probabilities": [{"x": 0.9, "z": 0.1}, {"x": 0.4, "z": 0.6}]}
    assert rows_agreement(champion, other_classes, 1e-4, 1e-5).why == "the candidate has other classes"


def test_forecast_agreement_is_judged_against_each_series_scale():
    champion = {"forecasts": [{"quantiles": {"0.5": [1000.0, 2000.0]}}, {"quantiles": {"0.5": [1.0, 2.0]}}]}
    close = {"forecasts": [{"quantiles": {"0.5": [1000.01, 2000.0]}}, {"quantiles": {"0.5": [1.0, 2.0]}}]}
    assert forecast_agreement(champion, close, 1e-4, 1e-5).within  # 0.01 <= 1e-4 + 1e-5 * 2000
    far = {"forecasts": [{"quantiles": {"0.5": [1000.0, 2000.0]}}, {"quantiles": {"0.5": [1.5, 2.0]}}]}
    found = forecast_agreement(champion, far, 1e-4, 1e-5)
    assert not found.within and found.rows_within == 1
    fewer_levels = {"forecasts": [{"quantiles": {"0.9": [1.0, 2.0]}}, {"quantiles": {"0.9": [1.0, 2.0]}}]}
    assert forecast_agreement(champion, fewer_levels, 1e-4, 1e-5).why is not None


def shadow_of_tiny(tmp_path, queue_size: int) -> tuple[Shadow, LoadedModel, ServerMetrics]:
    """A Shadow of tiny_reg whose candidate (version 2) is the champion's bytes; not started."""
    folder = tiny_versions.write_version(
        tmp_path / "tiny_reg" / "v1", tiny_versions.regressor(), "regression"
    )
    manifest = file_manifest(folder)
    champion = load_verified("tiny_reg", "1", folder, manifest, 0, 1)
    candidates, metrics = ModelStore(["tiny_reg"]), ServerMetrics()
    candidates.swap(describe_verified("tiny_reg", "2", folder, manifest))
    limits = {key: getattr(Settings(), key) for key in LIMIT_KEYS}
    return Shadow(["tiny_reg"], 1.0, queue_size, candidates, metrics, limits), champion, metrics


def test_a_full_queue_drops_and_counts_never_waits(tmp_path):
    shadow, champion, metrics = shadow_of_tiny(tmp_path, queue_size=2)
    ours, replayer_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    shadow._socket = ours  # a replayer that takes no job yet
    rows = [{"a": 1, "b": 2, "c": 3}]
    for _ in range(5):
        shadow.offer(champion, "rows", rows, rows_answer(champion, rows), 0.001)
    assert shadow.waiting == 2 and shadow.pairs["tiny_reg"].dropped == 3
    assert metrics.shadow_dropped.labels("tiny_reg")._value.get() == 3
    job = orjson.loads(replayer_end.recv(message_size(replayer_end)))  # what the replayer does with one
    shadow.record(replay(job, Candidates(0), SimpleNamespace(**shadow.limits)))
    assert shadow.waiting == 1 and shadow.summary("tiny_reg")["comparisons"] == 1
    assert shadow.summary("tiny_reg")["within_tolerance"] == 1
    ours.close(), replayer_end.close()


def test_a_non_finite_difference_or_a_failed_replay_is_tallied_not_fatal(tmp_path):
    shadow, _, _ = shadow_of_tiny(tmp_path, queue_size=2)
    head = {"model": "tiny_reg", "champion": "1", "candidate": "2"}
    nan_against_number = {"rows": 1, "rows_within": 0, "labels_agree": None, "why": None}
    nan_against_number |= {"max_abs_diff": None, "max_rel_diff": None}  # inf, as JSON carries it
    shadow.record({**head, "champion_s": 0.001, "candidate_s": 0.001, "found": nan_against_number})
    shadow.record({**head, "error": "expired"})
    seen = shadow.summary("tiny_reg")
    assert (seen["comparisons"], seen["within_tolerance"], seen["dropped"]) == (1, 0, 1)
    assert seen["max_abs_diff"] is None  # not finite: null in JSON, never a 500 from /models
    orjson.dumps(seen)


def test_a_job_the_busy_server_never_lets_run_expires():
    busy = Activity()
    busy.publish(1)
    started = time.monotonic()
    assert not wait_until_quiet(Activity(os.dup(busy.fd)), started + 0.2, os.getppid())
    assert time.monotonic() - started < 1.0
    busy.publish(0)
    time.sleep(QUIET_S * 2)
    assert wait_until_quiet(Activity(os.dup(busy.fd)), time.monotonic() + 0.2, os.getppid())


def test_the_server_publishes_its_requests_in_flight_to_another_process():
    server = Activity()
    replayer = Activity(os.dup(server.fd))  # what the replayer maps, by file descriptor
    server.publish(1)
    time.sleep(QUIET_S * 2)
    assert replayer.quiet_for() == 0.0
    server.publish(0)
    assert replayer.quiet_for() < QUIET_S
    time.sleep(QUIET_S * 2)
    assert replayer.quiet_for() >= QUIET_S


def test_the_replayer_is_a_child_on_idle_cpu_and_is_restarted(tmp_path):
    """Replays run in their own process scheduled SCHED_IDLE (never on the server's interpreter
    lock, never on CPU the champion wants), only once no live request is in flight; one that dies
    is started again."""
    shadow, champion, _ = shadow_of_tiny(tmp_path, queue_size=8)
    rows = [{"a": 1, "b": 2, "c": 3}]
    shadow.start()
    try:
        assert eventually(lambda: shadow._socket is not None, 30)
        first = shadow._replayer.pid
        assert os.sched_getscheduler(first) == os.SCHED_IDLE
        shadow.activity.publish(1)  # a live request in flight: the replay waits for it
        shadow.offer(champion, "rows", rows, rows_answer(champion, rows), 0.001)
        time.sleep(1.0)
        assert shadow.summary("tiny_reg")["status"] == "no request compared yet"
        shadow.activity.publish(0)
        assert eventually(lambda: (shadow.summary("tiny_reg") or {}).get("comparisons") == 1, 30)
        os.kill(first, signal.SIGKILL)
        assert eventually(lambda: shadow._replayer.pid != first and shadow._socket is not None, 30)
        shadow.offer(champion, "rows", rows, rows_answer(champion, rows), 0.001)
        assert eventually(lambda: shadow.summary("tiny_reg")["comparisons"] == 2, 30)
    finally:
        shadow.stop()
    assert shadow._replayer.poll() is not None  # stopped with the server


# ---- live traffic through a real server, evidence in a real registry ------------------------------


def rows_with(a: float, n: int) -> list[dict]:
    return [{"a": a, "b": float(i % 7), "c": 0.5 * i} for i in range(n)]


def shadow_of(started) -> dict:
    return httpx.get(f"{started['url']}/models/tiny_reg").json().get("shadow", {})


def send(started, rows: list[dict]) -> None:
    for row in rows:
        r = httpx.post(f"{started['url']}/predict", json={"model": "tiny_reg", "features": row})
        assert r.status_code == 200
        a, b, c = row["a"], row["b"], row["c"]
        assert r.json()["prediction"] == pytest.approx(a + 2 * b + 3 * c, rel=1e-6)  # the champion's


def shadow_tags(uri: str, version: str) -> list[dict]:
    mv = MlflowClient(tracking_uri=uri, registry_uri=uri).get_model_version("tiny_reg", version)
    return [json.loads(v) for k, v in mv.tags.items() if k.startswith(TAG_PREFIX)]


def test_a_differing_candidate_is_caught_and_refused_a_matching_one_promoted(tmp_path, tmp_path_factory):
    uri = champion_registry(tmp_path, {"tiny_reg": (tiny_versions.regressor(), "regression")})
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    matching = register_folder(
        uri,
        "tiny_reg",
        tiny_versions.write_version(tmp_path / "same" / "v2", tiny_versions.regressor(), "regression"),
    )
    differing = register_folder(
        uri,
        "tiny_reg",
        tiny_versions.write_version(tmp_path / "odd" / "v3", differs_above_threshold(), "regression"),
    )
    client.set_registered_model_alias("tiny_reg", "candidate", differing)
    started = start_server(
        uri,
        tmp_path_factory,
        ["tiny_reg"],
        candidate_alias="candidate",
        shadow_models='["tiny_reg"]',
        shadow_share="1.0",
        shadow_report_s="0.5",
    )
    try:
        waiting = lambda: shadow_of(started).get("status") == "no request compared yet"  # noqa: E731
        assert eventually(waiting, 60), shadow_of(started)
        send(started, rows_with(3.0, 40) + rows_with(250.0, 8))  # 8 of 48 in the subset that differs
        assert eventually(lambda: shadow_of(started).get("comparisons") == 48, 30), shadow_of(started)
        seen = shadow_of(started)
        assert (seen["champion"], seen["candidate"]) == ("1", differing)
        assert seen["within_tolerance"] == 40 and seen["max_abs_diff"] == pytest.approx(BUMP)
        assert seen["latency_ms"]["champion"]["samples"] == seen["latency_ms"]["candidate"]["samples"] == 48
        metrics = httpx.get(f"{started['url']}/metrics").text
        labels = f'candidate="{differing}",champion="1",model="tiny_reg"'
        assert f'onnxship_shadow_comparisons_total{{{labels},result="outside"}} 8.0' in metrics
        assert eventually(lambda: sum(t["comparisons"] for t in shadow_tags(uri, differing)) == 48, 30)
        with pytest.raises(PromotionRefused, match="8 of 48 shadow comparisons were outside"):
            promote("tiny_reg", None, "champion", uri, "candidate", require_shadow=20)
        assert str(client.get_model_version_by_alias("tiny_reg", "champion").version) == "1"

        client.set_registered_model_alias("tiny_reg", "candidate", matching)
        assert eventually(waiting, 60)
        with pytest.raises(PromotionRefused, match="0 shadow comparisons within tolerance, 20 required"):
            promote("tiny_reg", None, "champion", uri, "candidate", require_shadow=20)
        send(started, rows_with(3.0, 20) + rows_with(250.0, 5))
        assert eventually(lambda: shadow_of(started).get("comparisons") == 25, 30), shadow_of(started)
        assert shadow_of(started)["within_tolerance"] == 25
        assert eventually(lambda: sum(t["comparisons"] for t in shadow_tags(uri, matching)) == 25, 30)
        run = client.get_run(client.get_model_version("tiny_reg", matching).run_id)
        assert run.data.metrics["shadow_within_share"] == 1.0  # logged to the candidate's run too
        print(promote("tiny_reg", None, "champion", uri, "candidate", require_shadow=20))
        assert str(client.get_model_version_by_alias("tiny_reg", "champion").version) == matching
    finally:
        stop(started)
