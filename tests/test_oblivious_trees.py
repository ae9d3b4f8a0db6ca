"""Oblivious trees as standard ONNX operators (onnxship/trees/oblivious.py, issue 23): the rewritten
graph answers like CatBoost itself on held-out rows, on rows at every split threshold and one
float32 step either side, and on missing values (both of CatBoost's NaN modes); anything that is
not an oblivious ensemble is left alone."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnxship.trees.oblivious import read_trees, rewrite

catboost = pytest.importorskip("catboost")


def fitted(nan_mode: str, iterations: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(2000, 6)).astype(np.float32)
    X[rng.random(X.shape) < 0.05] = np.nan
    y = 2 * np.nan_to_num(X[:, 0], nan=3.0) + np.nan_to_num(X[:, 1]) ** 2 + rng.normal(size=2000)
    model = catboost.CatBoostRegressor(
        iterations=iterations,
        depth=4,
        nan_mode=nan_mode,
        random_seed=seed,
        verbose=0,
        allow_writing_files=False,
    )
    return model.fit(X, y), rng


def exported(model, tmp_path) -> onnx.ModelProto:
    path = tmp_path / "model.onnx"
    model.save_model(str(path), format="onnx", export_parameters={"onnx_domain": "ai.catboost"})
    return onnx.load(str(path))


def answers(graph: onnx.ModelProto, X: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: X})[0].reshape(-1)


def rows_at_every_threshold(graph: onnx.ModelProto, base: np.ndarray) -> np.ndarray:
    """One row per split and value: the threshold itself and one float32 step below and above."""
    trees, _ = read_trees(graph.graph.node[0])
    rows = []
    for split in sorted({s for t in trees for s in t.levels}, key=lambda s: (s.feature, s.threshold)):
        at = np.float32(split.threshold)
        with np.errstate(over="ignore"):  # a border at float32's largest value steps to inf
            steps = (at, np.nextafter(at, np.float32(-np.inf)), np.nextafter(at, np.float32(np.inf)))
        for value in steps:
            row = base[len(rows) % len(base)].copy()
            row[split.feature] = value
            rows.append(row)
    return np.array(rows, np.float32)


@pytest.mark.parametrize("nan_mode", ["Min", "Max"])
def test_the_rewritten_graph_answers_like_catboost(nan_mode, tmp_path):
    model, rng = fitted(nan_mode, iterations=41)  # an odd count: one tree pairs with nothing
    graph = exported(model, tmp_path)
    rewritten = copy.deepcopy(graph)
    assert rewrite(rewritten) == 1
    onnx.checker.check_model(rewritten)
    assert not [n for n in rewritten.graph.node if n.domain == "ai.onnx.ml"]
    held_out = rng.normal(size=(500, 6)).astype(np.float32)
    held_out[rng.random(held_out.shape) < 0.1] = np.nan
    X = np.vstack([held_out, rows_at_every_threshold(graph, held_out), np.full((1, 6), np.nan, np.float32)])
    native = model.predict(X)
    ours, theirs = answers(rewritten, X), answers(graph, X)
    # the same leaf everywhere: only float rounding apart (leaves summed in float64, as CatBoost does)
    assert np.abs(ours - native).max() <= 1e-5 * max(1.0, np.abs(native).max())
    assert (ours == native.astype(np.float32)).sum() >= (theirs == native.astype(np.float32)).sum()


def test_an_ensemble_that_is_not_oblivious_is_left_as_it_is(tmp_path):
    from onnx import TensorProto, helper

    # one tree whose two children test different features: a plain decision tree
    node = helper.make_node(
        "TreeEnsembleRegressor",
        ["X"],
        ["Y"],
        domain="ai.onnx.ml",
        n_targets=1,
        nodes_treeids=[0] * 7,
        nodes_nodeids=list(range(7)),
        nodes_featureids=[0, 1, 2, 0, 0, 0, 0],
        nodes_values=[0.5, 0.1, 0.2, 0, 0, 0, 0],
        nodes_modes=["BRANCH_LEQ"] * 3 + ["LEAF"] * 4,
        nodes_truenodeids=[1, 3, 5, 0, 0, 0, 0],
        nodes_falsenodeids=[2, 4, 6, 0, 0, 0, 0],
        target_treeids=[0] * 4,
        target_nodeids=[3, 4, 5, 6],
        target_ids=[0] * 4,
        target_weights=[1.0, 2.0, 3.0, 4.0],
    )
    graph = helper.make_graph(
        [node],
        "tree",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("ai.onnx.ml", 3)])
    before = model.SerializeToString()
    assert rewrite(model) == 0
    assert model.SerializeToString() == before
