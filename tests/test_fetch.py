"""The watcher's checks on a downloaded version, before anything is loaded: every file against the
registry's manifest, external data anywhere ONNX allows it, symlinks, unparsable and crashing
graphs. (The registry side of the same checks, over a real MLflow registry: test_trust.py.)"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxship.io import sha256_file
from onnxship.version.manifest import file_manifest
from onnxship.version.verify import RejectedModel, Vouched, verify
from serving.registry.fetch import probe
from tests.tiny_versions import regressor as tiny_graph

GATES = {"export": True, "parity": True, "benchmark": True}


def vouch(folder: Path) -> Vouched:
    """What the registry would vouch for, had the package stage written this folder as it is."""
    gates = json.loads((folder / "onnxship.json").read_text())["gates"]
    return Vouched("1", "unused", file_manifest(folder), gates)


def version_folder(tmp_path: Path, model: onnx.ModelProto | bytes) -> Path:
    folder = tmp_path / "v1"
    folder.mkdir()
    data = model if isinstance(model, bytes) else model.SerializeToString()
    (folder / "model.onnx").write_bytes(data)
    metadata = {
        "sha256": sha256_file(folder / "model.onnx"),
        "task": "regression",
        "features": ["a", "b", "c"],
        "model": "tiny",
        "variant": "base",
        "gates": GATES,
        "inference_settings": {
            "providers": ["CPUExecutionProvider"],
            "intra_op_threads": 1,
            "inter_op_threads": 1,
        },
    }
    (folder / "onnxship.json").write_text(json.dumps(metadata))
    return folder


def test_a_sound_version_passes_verify_and_probe(tmp_path: Path):
    folder = version_folder(tmp_path, tiny_graph())
    verify(folder, vouch(folder))
    assert probe(folder)["shapes"] == {"prediction": [2, 1]}


@pytest.mark.parametrize("changed", ["model.onnx", "onnxship.json"])
def test_any_file_that_differs_from_the_manifest_is_rejected(tmp_path: Path, changed: str):
    folder = version_folder(tmp_path, tiny_graph())
    trusted = vouch(folder)
    with open(folder / changed, "ab") as fh:
        fh.write(b" ")
    with pytest.raises(RejectedModel, match=f"sha256 of {changed} is .* the registry's manifest records"):
        verify(folder, trusted)


def test_a_file_the_manifest_does_not_list_is_rejected(tmp_path: Path):
    folder = version_folder(tmp_path, tiny_graph())
    trusted = vouch(folder)
    (folder / "weights.bin").write_bytes(b"0" * 16)
    with pytest.raises(RejectedModel, match="not in the manifest"):
        verify(folder, trusted)


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "weights.bin"])
def test_external_data_references_are_rejected(tmp_path: Path, location: str):
    model = tiny_graph()
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value=location)
    folder = version_folder(tmp_path, model)
    with pytest.raises(RejectedModel, match=f"external data '{location}'"):
        verify(folder, vouch(folder))


def test_symlinked_model_is_rejected(tmp_path: Path):
    folder = version_folder(tmp_path, tiny_graph())
    real = tmp_path / "elsewhere.onnx"
    shutil.move(folder / "model.onnx", real)
    (folder / "model.onnx").symlink_to(real)
    trusted = Vouched("1", "unused", {"model.onnx": sha256_file(real), "onnxship.json": "0" * 64}, GATES)
    with pytest.raises(RejectedModel, match="symlink"):
        verify(folder, trusted)


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_graph_is_rejected_before_loading(tmp_path: Path, cut: float):
    data = tiny_graph().SerializeToString()
    folder = version_folder(tmp_path, data[: int(len(data) * cut)])
    with pytest.raises(RejectedModel, match=r"model\.onnx does not parse as ONNX"):
        verify(folder, vouch(folder))  # refused before any runtime loads it


def test_graph_that_fails_in_onnx_runtime_is_rejected_by_the_probe(tmp_path: Path):
    model = tiny_graph()
    model.graph.node[0].op_type = "NoSuchOp"
    folder = version_folder(tmp_path, model)
    verify(folder, vouch(folder))  # parses fine: only loading it tells
    with pytest.raises(RejectedModel, match="probe failed"):
        probe(folder)


def test_mutated_graphs_never_get_past_the_checks_unnoticed(tmp_path: Path):
    """Random byte flips, with metadata that matches the mutated file (a broken packager): each one
    is rejected by verify or the probe, or still loads and answers with the right shapes; none
    brings down the process running the checks."""
    data = bytearray(tiny_graph().SerializeToString())
    rng = np.random.default_rng(0)
    reasons: list[str] = []
    sound = 0
    for i in range(40):
        mutant = bytearray(data)
        for pos in rng.integers(0, len(mutant), size=int(rng.integers(1, 6))):
            mutant[pos] = int(rng.integers(0, 256))
        if mutant == data:
            continue
        (tmp_path / f"m{i}").mkdir()
        folder = version_folder(tmp_path / f"m{i}", bytes(mutant))
        try:
            verify(folder, vouch(folder))
            shapes = probe(folder)["shapes"]
        except RejectedModel as err:
            reasons.append(str(err))
            continue
        assert shapes == {"prediction": [2, 1]}, f"mutant {i} passed the checks but answers {shapes}"
        sound += 1
    known = ("does not parse as ONNX", "probe failed", "points at external data")
    assert all(r.startswith(known) or any(k in r for k in known) for r in reasons), reasons
    assert len(reasons) >= 20, f"only {len(reasons)} of {len(reasons) + sound} mutants were refused"


def test_forecaster_probe_checks_the_forecast_contract(tmp_path: Path):
    from tests import toy_forecaster

    meta = toy_forecaster.metadata(16, 4, [0.1, 0.5, 0.9], [])
    good = toy_forecaster.export_version(tmp_path / "good", meta)
    assert good["sha256"] == sha256_file(tmp_path / "good" / "model.onnx")
    verify(tmp_path / "good", vouch(tmp_path / "good"))
    assert probe(tmp_path / "good")["shapes"] == {"quantiles": [2, 4, 3]}
    # a tabular graph that claims to be a forecaster
    folder = version_folder(tmp_path, tiny_graph())
    claimed = {
        **json.loads((folder / "onnxship.json").read_text()),
        "task": "forecast",
        "forecast": meta["forecast"],
    }
    (folder / "onnxship.json").write_text(json.dumps(claimed))
    with pytest.raises(RejectedModel, match="forecast contract"):
        probe(folder)


def point_outside(tensor: onnx.TensorProto, location: str = "benchmark.json") -> None:
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value=location)


def weights_in_an_if_branch() -> onnx.ModelProto:
    """prediction = input @ w, with w an initializer of both branches of an If subgraph."""
    model = tiny_graph()
    w = numpy_helper.to_array(model.graph.initializer[0])

    def branch(name: str) -> onnx.GraphProto:
        return helper.make_graph(
            [helper.make_node("Identity", ["w_" + name], ["w_out_" + name])],
            name,
            [],
            [helper.make_tensor_value_info("w_out_" + name, TensorProto.FLOAT, [3, 1])],
            initializer=[numpy_helper.from_array(w, "w_" + name)],
        )

    cond = numpy_helper.from_array(np.array(True), "cond")
    model.graph.initializer.pop()
    model.graph.initializer.append(cond)
    model.graph.node.insert(
        0, helper.make_node("If", ["cond"], ["w"], then_branch=branch("then"), else_branch=branch("else"))
    )
    return model


def attack(kind: str) -> onnx.ModelProto:
    """The tiny regressor with one tensor pointing at external data, in each place ONNX allows."""
    if kind == "if_subgraph_initializer":
        model = weights_in_an_if_branch()
        point_outside(model.graph.node[0].attribute[0].g.initializer[0])
        return model
    model = tiny_graph()
    if kind == "constant_attribute":
        w = model.graph.initializer.pop()
        constant = helper.make_node("Constant", [], ["w"], value=w)
        point_outside(constant.attribute[0].t)
        model.graph.node.insert(0, constant)
    elif kind == "tensors_attribute":
        extra = helper.make_attribute("tensors", [numpy_helper.from_array(np.ones(1, np.float32), "t")])
        point_outside(extra.tensors[0])
        model.graph.node[0].attribute.append(extra)
    elif kind == "sparse_initializer":
        values = numpy_helper.from_array(np.ones(1, np.float32), "s")
        point_outside(values)
        indices = numpy_helper.from_array(np.zeros(1, np.int64), "s_i")
        model.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [3]))
    elif kind == "sparse_attribute":
        values = numpy_helper.from_array(np.ones(1, np.float32), "c")
        point_outside(values)
        sparse = helper.make_sparse_tensor(values, numpy_helper.from_array(np.zeros(1, np.int64)), [3])
        model.graph.node.insert(0, helper.make_node("Constant", [], ["unused"], sparse_value=sparse))
    elif kind == "function":
        constant = helper.make_node(
            "Constant", [], ["k"], value=numpy_helper.from_array(np.ones(1, np.float32))
        )
        point_outside(constant.attribute[0].t)
        model.functions.append(helper.make_function("local", "f", [], ["k"], [constant], model.opset_import))
    return model


@pytest.mark.parametrize(
    "kind",
    [
        "if_subgraph_initializer",
        "constant_attribute",
        "tensors_attribute",
        "sparse_initializer",
        "sparse_attribute",
        "function",
    ],
)
def test_external_data_is_refused_wherever_onnx_allows_it(tmp_path: Path, kind: str):
    """Finding 3: a tensor in an If branch, an attribute, a sparse initializer or a function that
    points at a file of the version folder (benchmark.json) used to pass verify and the probe."""
    folder = version_folder(tmp_path, attack(kind))
    (folder / "benchmark.json").write_text("{}")
    with pytest.raises(RejectedModel, match=r"external data 'benchmark\.json'"):
        verify(folder, vouch(folder))


def test_an_if_graph_without_external_data_is_served(tmp_path: Path):
    """The walk through subgraphs refuses external data, not subgraphs."""
    folder = version_folder(tmp_path, weights_in_an_if_branch())
    verify(folder, vouch(folder))
    assert probe(folder)["shapes"] == {"prediction": [2, 1]}


def test_an_idle_stop_waits_for_the_forkserver_outside_the_download_lock(monkeypatch):
    """A forkserver that does not end when told blocks no download: the idle stop forgets it under
    the download lock, then waits for it outside that lock, bounded, and kills it."""
    import os
    import subprocess
    import sys
    import threading
    from multiprocessing import forkserver

    from serving.registry import fetch

    server = forkserver._forkserver
    alive_r, alive_w = os.pipe()
    stubborn = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], pass_fds=(alive_r,))
    os.close(alive_r)  # the child holds it and never reads it: it would not end on its own
    monkeypatch.setattr(fetch, "FORKSERVER_EXIT_S", 2.0)
    monkeypatch.setattr(server, "_forkserver_pid", stubborn.pid)
    monkeypatch.setattr(server, "_forkserver_alive_fd", alive_w)
    monkeypatch.setattr(server, "_forkserver_address", None)
    stop = threading.Thread(target=fetch._stop_if_still_idle, args=(fetch._idle_since,))
    stop.start()
    try:
        time.sleep(0.5)
        assert stop.is_alive()  # still waiting for the stubborn process
        assert fetch._in_flight_lock.acquire(timeout=0.5)  # ... and a download may count itself meanwhile
        fetch._in_flight_lock.release()
        assert server._forkserver_pid is None  # forgotten: the next download starts a new one
        stop.join(timeout=10)
        assert not stop.is_alive()
        with pytest.raises(ProcessLookupError):  # killed and reaped
            os.kill(stubborn.pid, 0)
    finally:
        stubborn.kill()
        stop.join(timeout=10)
