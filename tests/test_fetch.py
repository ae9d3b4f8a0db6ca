"""The watcher's checks on a downloaded version, before anything is loaded: sha256, external-data
path tricks, symlinks, unparsable and crashing graphs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from onnxship.io import sha256_file
from serving.registry.fetch import RejectedModel, probe, verify
from tests.tiny_versions import regressor as tiny_graph


def version_folder(tmp_path: Path, model: onnx.ModelProto | bytes) -> Path:
    folder = tmp_path / "v1"
    folder.mkdir()
    data = model if isinstance(model, bytes) else model.SerializeToString()
    (folder / "model.onnx").write_bytes(data)
    metadata = {
        "sha256": sha256_file(folder / "model.onnx"),
        "task": "regression",
        "features": ["a", "b", "c"],
        "inference_settings": {"providers": ["CPUExecutionProvider"], "intra_op_threads": 1},
    }
    (folder / "onnxship.json").write_text(json.dumps(metadata))
    return folder


def test_a_sound_version_passes_verify_and_probe(tmp_path: Path):
    folder = version_folder(tmp_path, tiny_graph())
    verify(folder, sha256_file(folder / "model.onnx"))
    assert probe(folder)["shapes"] == {"prediction": [2, 1]}


def test_sha256_mismatch_is_rejected(tmp_path: Path):
    folder = version_folder(tmp_path, tiny_graph())
    with pytest.raises(RejectedModel, match="the registry tag records"):
        verify(folder, "0" * 64)


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "weights.bin"])
def test_external_data_references_are_rejected(tmp_path: Path, location: str):
    model = tiny_graph()
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value=location)
    folder = version_folder(tmp_path, model)
    with pytest.raises(RejectedModel, match=f"external data '{location}'"):
        verify(folder, None)


def test_symlinked_model_is_rejected(tmp_path: Path):
    folder = version_folder(tmp_path, tiny_graph())
    real = tmp_path / "elsewhere.onnx"
    shutil.move(folder / "model.onnx", real)
    (folder / "model.onnx").symlink_to(real)
    with pytest.raises(RejectedModel, match="symlink"):
        verify(folder, None)


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated_graph_is_rejected_before_loading(tmp_path: Path, cut: float):
    data = tiny_graph().SerializeToString()
    folder = version_folder(tmp_path, data[: int(len(data) * cut)])
    with pytest.raises(RejectedModel, match=r"model\.onnx does not parse as ONNX"):
        verify(folder, None)  # refused before any runtime loads it


def test_graph_that_fails_in_onnx_runtime_is_rejected_by_the_probe(tmp_path: Path):
    model = tiny_graph()
    model.graph.node[0].op_type = "NoSuchOp"
    folder = version_folder(tmp_path, model)
    verify(folder, None)  # parses fine: only loading it tells
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
            verify(folder, None)
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
    verify(tmp_path / "good", good["sha256"])
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
