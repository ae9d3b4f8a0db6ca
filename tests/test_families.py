"""Every registered family, from its own tiny fixture (Family.tiny_spec): build, fit, save, reload,
export, and ONNX answers like native, for each task it declares (classification: 2 and 3 classes).
No test here names a family: a new family file is covered the moment it registers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnxship import families
from onnxship.contract import OUTPUTS, ModelIO
from onnxship.errors import ModelLoadError, UnknownEntryError
from onnxship.graph import standardize
from onnxship.parity.rows import compare, onnx_prediction
from onnxship.runtime import OnnxModel
from tests.builders import data, fitted, tiny_zoo

# families of feature rows / tensors (the forecasters have tests/test_chronos.py)
ROWS = {"regression", "classification"}
# families of feature matrices (those of typed columns only: tests/test_columns.py)
TABULAR = [
    n for n, c in sorted(families.FAMILIES.classes().items()) if ROWS & set(c.tasks) and "rows" in c.layouts
]

CASES = [
    (name, task, classes)
    for name, cls in sorted(families.FAMILIES.classes().items())
    for task, classes in (("regression", 0), ("classification", 2), ("classification", 3))
    if task in cls.tasks and "rows" in cls.layouts
]


@pytest.mark.parametrize(("family_name", "task", "classes"), CASES, ids=lambda v: str(v))
def test_family_roundtrip_and_parity(tmp_path: Path, family_name: str, task: str, classes: int):
    X, y = data(task, classes)
    family, est = fitted(family_name, task, X, y)
    path = tmp_path / family.native_file
    family.save(est, path)
    loaded = family.load_checked(path, task)
    native = family.predict(loaded, X, task)
    model = standardize(family.to_onnx(loaded, ModelIO.tabular(task, X.shape[1], classes), 15), task)
    assert [o.name for o in model.graph.output] == OUTPUTS[task]
    onnx_out = onnx_prediction(OnnxModel(model.SerializeToString()), X, task)
    parity = compare(native, onnx_out, atol=1e-4, rtol=1e-4)
    assert parity["within_tolerance"] == 1.0, parity
    if task == "classification":
        assert native.proba.shape == (len(X), classes)
        assert parity["label_agreement"] == 1.0
    # what the benchmark times natively (Family.library_call) is this same prediction, fed the
    # float32 rows the graph takes, its answer left as the library gives it
    timed = family.native_call(loaded, {"task": task})
    answer = np.asarray(timed.run(timed.prepare({"input": X.astype(np.float32)})), dtype=np.float64)
    expected = native.values if task == "regression" else native.proba
    if answer.ndim == 1 and expected.ndim == 2:  # a binary booster's answer: P(class 1)
        answer = np.column_stack([1 - answer, answer])
    np.testing.assert_allclose(answer.reshape(expected.shape), expected, rtol=1e-5, atol=1e-6)


def test_every_family_declares_a_tiny_fixture_and_its_tasks():
    for name, cls in families.FAMILIES.classes().items():
        assert cls.tiny_spec, f"family '{name}' has no tiny_spec: the completeness test cannot run it"
        assert cls.tasks and cls.native_file and cls.converter, name


def test_every_family_names_the_summary_group_it_is_ranked_in():
    from onnxship.report.summary import family_group

    groups = {name: family_group(name) for name in families.names()}
    assert "other" not in groups.values(), groups
    assert family_group("no_such_family") == "other"


def test_the_summary_says_why_native_wins_where_a_family_knows():
    """Where native beats every proven graph the summary gives the gap (onnxship/report/summary.py)
    and, for the tree families measured to lose at large batches, the cause."""
    from onnxship.report.summary import native_faster_why

    assert "oblivious" in native_faster_why("catboost") and native_faster_why("catboost").startswith(" Why: ")
    assert "blocks of rows" in native_faster_why("xgboost")
    assert native_faster_why("lightgbm") == "" and native_faster_why("no_such_family") == ""


def test_unknown_family_lists_the_registered_ones():
    with pytest.raises(UnknownEntryError, match=r"unknown model family 'nope'.*xgboost"):
        families.get("nope")


@pytest.mark.parametrize("family_name", families.names())
def test_corrupt_native_file_is_a_clear_error(tmp_path: Path, family_name: str):
    family = families.get(family_name)
    path = tmp_path / family.native_file
    path.write_bytes(b"\x00\x01 this is not a model \xff" * 10)
    with pytest.raises(ModelLoadError, match=f"{family_name}: cannot load .*{family.native_file}"):
        family.load_checked(path, "regression")


def test_missing_native_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ModelLoadError, match="model file not found"):
        families.get("xgboost").load_checked(tmp_path / "absent.json", "regression")


def test_stacking_is_one_graph():
    X, y = data("regression")
    family, est = fitted("stacking", "regression", X, y)
    model = standardize(family.to_onnx(est, ModelIO.tabular("regression", X.shape[1]), 15), "regression")
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Concat") == 1
    assert sum(op.startswith("TreeEnsemble") for op in ops) == len(family.tiny_spec["base"])
    assert len(model.graph.input) == 1 and len(model.graph.output) == 1


def test_stacking_takes_missing_values_only_when_every_base_does():
    X, y = data("regression")
    zoo = tiny_zoo()
    stacking = families.get("stacking")
    trees = stacking.fit(stacking.build(zoo["stacking"], zoo, "regression", 0), X, y)
    assert stacking.takes_missing_values(trees)
    with_linear_base = {**zoo["stacking"], "base": {"xgboost": zoo["xgboost"], "linear": zoo["linear"]}}
    mixed = stacking.fit(stacking.build(with_linear_base, zoo, "regression", 0), X, y)
    assert not stacking.takes_missing_values(mixed)


def test_stacking_bases_are_whole_entries_so_dvc_tracks_their_params():
    from onnxship.errors import ConfigError

    zoo = tiny_zoo()
    by_name = {**zoo["stacking"], "base": ["xgboost", "lightgbm"]}
    with pytest.raises(ConfigError, match=r"maps each base's name to its entry"):
        families.get("stacking").build(by_name, zoo, "regression", 0)


@pytest.mark.parametrize("family_name", [n for n in TABULAR if families.get(n).reproducible_bytes])
def test_same_training_saves_the_same_bytes(tmp_path: Path, family_name: str):
    """DVC compares outputs by content: a retrain with unchanged params must not look like a change."""
    X, y = data("regression")
    saved = []
    for i in range(2):
        family, est = fitted(family_name, "regression", X, y)
        family.save(est, tmp_path / f"{i}_{family.native_file}")
        saved.append((tmp_path / f"{i}_{family.native_file}").read_bytes())
    assert saved[0] == saved[1]


@pytest.mark.slow  # make test-all; the default suite's smoke run exports every family of the smoke
# zoo under another hash seed and test_e2e_dvc compares the bytes with tests/smoke_hashes.json
def test_export_bytes_do_not_depend_on_the_process(tmp_path: Path):
    """The export stage's graph for a saved model is the same bytes in every process: converters
    use random uuids (graph names) and Python's per-process string hashing (set order of
    opset_import); DVC would otherwise see a new model.onnx on every run."""
    import hashlib
    import json
    import os
    import subprocess
    import sys

    X, y = data("classification", 3)
    metas = {}
    for name in TABULAR:
        family, est = fitted(name, "classification", X, y)
        folder = tmp_path / name
        folder.mkdir()
        family.save(est, folder / family.native_file)
        metas[name] = {
            "model": name,
            "family": name,
            "task": "classification",
            "native_file": family.native_file,
            "features": [f"f{i}" for i in range(X.shape[1])],
            "classes": [0, 1, 2],
        }
    script = (
        "import hashlib, json, sys\n"
        "from pathlib import Path\n"
        "from stages.export import convert\n"
        "metas, root = json.loads(sys.argv[1]), Path(sys.argv[2])\n"
        "print(json.dumps({n: hashlib.sha256(convert(m, root / n, 15).SerializeToString()).hexdigest()"
        " for n, m in metas.items()}))\n"
    )
    digests = []
    for seed in ("1", "20", "22"):  # 20 and 22 flip onnxmltools' opset order for LightGBM
        done = subprocess.run(
            [sys.executable, "-c", script, json.dumps(metas), str(tmp_path)],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        digests.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert all(d == digests[0] for d in digests), [
        hashlib.sha256(str(d).encode()).hexdigest() for d in digests
    ]
