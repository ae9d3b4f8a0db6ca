"""Every registered family on tiny models: train, save, reload, export, and ONNX answers like native
(regression, binary and multiclass classification)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from serving.runtime import OnnxModel
from stages import families
from stages.common.errors import ModelLoadError, UnknownEntryError
from stages.families.stacking import StackingFamily
from stages.onnx_graph import LABEL, PREDICTION, PROBABILITIES, standardize
from stages.validate import compare, onnx_prediction

TINY_PARAMS = {
    "xgboost": {"n_estimators": 15, "max_depth": 3},
    "lightgbm": {"n_estimators": 15, "num_leaves": 7, "verbose": -1, "min_child_samples": 5},
    "catboost": {"iterations": 15, "depth": 3, "verbose": 0},
    "linear": {},
}
STACK = {"family": "stacking", "base": ["xgboost", "lightgbm", "catboost"], "cv": 2}
# family -> how its tiny fixture is made; the completeness test below keeps this in step
FIXTURES = {**{f: "build" for f in TINY_PARAMS}, "stacking": "stack", "sklearn": "joblib"}


def data(task: str, classes: int = 2, n: int = 300, width: int = 6):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, width)).astype(np.float32).astype(np.float64)
    score = X[:, 0] * 2 + X[:, 1] - X[:, 2] ** 2
    if task == "regression":
        return X, score * 10 + 100
    edges = np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])
    return X, np.digitize(score, edges).astype(np.int64)


def fitted(family_name: str, task: str, X, y):
    from omegaconf import OmegaConf

    family = families.get(family_name)
    if family_name == "stacking":
        zoo = OmegaConf.create({k: {"family": k, "params": v} for k, v in TINY_PARAMS.items()})
        meta = {"family": "linear", "params": {}}
        spec = OmegaConf.create({**STACK, "meta": meta})
        return family, family.fit(family.build_from_spec(spec, zoo, task, 0), X, y)
    if family_name == "sklearn":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        est = (RandomForestRegressor if task == "regression" else RandomForestClassifier)(
            n_estimators=5, max_depth=4
        )
        return family, est.fit(X, y)
    return family, family.fit(family.build(TINY_PARAMS[family_name], task, 0), X, y)


CASES = [
    (f, t, c) for f in FIXTURES for t, c in (("regression", 0), ("classification", 2), ("classification", 3))
]


@pytest.mark.parametrize(("family_name", "task", "classes"), CASES, ids=lambda v: str(v))
def test_family_roundtrip_and_parity(tmp_path: Path, family_name: str, task: str, classes: int):
    X, y = data(task, classes)
    family, est = fitted(family_name, task, X, y)
    path = tmp_path / family.native_file
    family.save(est, path)
    loaded = family.load_checked(path, task)
    native = family.predict(loaded, X, task)
    model = standardize(family.to_onnx(loaded, X.shape[1], task, 15), task)
    names = [o.name for o in model.graph.output]
    assert names == ([PREDICTION] if task == "regression" else [LABEL, PROBABILITIES])
    onnx_out = onnx_prediction(OnnxModel(model.SerializeToString()), X, task)
    parity = compare(native, onnx_out, atol=1e-4, rtol=1e-4)
    assert parity["within_tolerance"] == 1.0, parity
    if task == "classification":
        assert native.proba.shape == (len(X), classes)
        assert parity["label_agreement"] == 1.0


def test_every_registered_family_has_a_fixture():
    assert sorted(FIXTURES) == families.names()


def test_unknown_family_lists_the_registered_ones():
    with pytest.raises(UnknownEntryError, match=r"unknown model family 'nope'.*xgboost"):
        families.get("nope")


@pytest.mark.parametrize("family_name", sorted(FIXTURES))
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
    assert isinstance(family, StackingFamily)
    model = standardize(family.to_onnx(est, X.shape[1], "regression", 15), "regression")
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Concat") == 1
    assert sum(op.startswith("TreeEnsemble") for op in ops) == 3  # xgboost, lightgbm, catboost
    assert len(model.graph.input) == 1 and len(model.graph.output) == 1


@pytest.mark.parametrize("family_name", ["xgboost", "lightgbm", "catboost", "linear", "stacking"])
def test_same_training_saves_the_same_bytes(tmp_path: Path, family_name: str):
    """DVC compares outputs by content: a retrain with unchanged params must not look like a change."""
    X, y = data("regression")
    saved = []
    for i in range(2):
        family, est = fitted(family_name, "regression", X, y)
        family.make_reproducible(est)
        family.save(est, tmp_path / f"{i}_{family.native_file}")
        saved.append((tmp_path / f"{i}_{family.native_file}").read_bytes())
    assert saved[0] == saved[1]
