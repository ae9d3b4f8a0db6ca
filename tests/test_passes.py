"""Every registered optimization pass on a tiny exported graph with its default options: the
result loads and answers like the source (lossless passes) or runs with the same output shapes
(lossy ones); options are typed and refused by name before any work starts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxship import passes
from onnxship.contract import ModelIO
from onnxship.errors import ConfigError, UnknownEntryError
from onnxship.passes import plan
from onnxship.runtime import OnnxModel
from tests.test_families import data, fitted


@pytest.fixture(scope="module")
def tiny_graph(tmp_path_factory) -> tuple[Path, np.ndarray]:
    from onnxship.graph import standardize

    X, y = data("regression")
    family, est = fitted("xgboost", "regression", X, y)
    path = tmp_path_factory.mktemp("graph") / "model.onnx"
    onnx.save(
        standardize(family.to_onnx(est, ModelIO.tabular("regression", X.shape[1]), 15), "regression"), path
    )
    return path, X


@pytest.mark.parametrize("name", passes.names())
def test_every_pass_runs_on_a_tiny_graph(tiny_graph, tmp_path: Path, name: str):
    src, X = tiny_graph
    pass_ = passes.get(name)
    out = tmp_path / "out.onnx"
    did = pass_.run(src, out, pass_.options({}))
    assert isinstance(did, dict)
    onnx.checker.check_model(str(out))
    before, after = OnnxModel(src).run(X), OnnxModel(out).run(X)
    assert before.keys() == after.keys()
    for key in before:
        assert before[key].shape == after[key].shape
        if not pass_.lossy:
            np.testing.assert_allclose(after[key], before[key], rtol=1e-6, atol=1e-6)


def test_options_are_typed_and_checked_before_any_work():
    ort_graph = passes.get("ort_graph")
    assert ort_graph.options({"level": "all"}).level == "all"
    with pytest.raises(
        ConfigError, match=r"'ort_graph': level: Input should be 'basic', 'extended' or 'all'"
    ):
        ort_graph.options({"level": "fastest"})
    with pytest.raises(ConfigError, match=r"'onnxslim': bogus: Extra inputs are not permitted"):
        passes.get("onnxslim").options({"bogus": 1})


def test_plan_names_the_variant_and_step_that_is_wrong():
    from omegaconf import OmegaConf

    with pytest.raises(ConfigError, match=r"optimize.variants.fast\[1\] 'ort_graph': level"):
        plan(OmegaConf.create({"fast": [{"pass": "onnxslim"}, {"pass": "ort_graph", "level": "x"}]}))
    with pytest.raises(UnknownEntryError, match=r"unknown optimization pass 'nope'.*onnxslim"):
        plan(OmegaConf.create({"v": [{"pass": "nope"}]}))
    with pytest.raises(ConfigError, match="'base' is reserved"):
        plan(OmegaConf.create({"base": [{"pass": "onnxslim"}]}))
