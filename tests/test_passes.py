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
from onnxship.passes import PassContext, apply_chain, for_family, plan
from onnxship.runtime import OnnxModel
from tests.builders import Graph, feed, pipeline, rows_graph, saved, spec_of


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> dict[str, Graph]:
    """The kinds of graph passes are made for: trees, CatBoost's oblivious trees, a neural
    network, a transformer."""

    family, est = pipeline("chronos2")
    spec = spec_of(est, 16)
    folder = tmp_path_factory.mktemp("chronos2")
    chronos = saved(family.to_onnx(est, ModelIO.forecast(spec), 17), folder)
    calibrate = spec.graph_feed(feed(spec, 4, 96, seed=1))  # as the graph takes them: rows, groups
    return {
        "trees": rows_graph("xgboost", "regression", tmp_path_factory.mktemp("trees")),
        "oblivious": rows_graph("catboost", "regression", tmp_path_factory.mktemp("oblivious")),
        "network": rows_graph("torch", "regression", tmp_path_factory.mktemp("torch")),
        "transformer": (
            chronos,
            spec.graph_feed(feed(spec, 4, 96)),
            PassContext("chronos2", calibration=lambda n: [calibrate]),
        ),
    }


# the graph each pass is made for; a pass not listed here is tried on trees
MADE_FOR = {
    "fp16": "network",
    "int8_dynamic": "network",
    "int8_static": "network",
    "transformer_fusion": "transformer",
    "oblivious_trees": "oblivious",
    "chronos2_shortcuts": "transformer",
}


@pytest.mark.parametrize("name", passes.names())
def test_every_pass_runs_on_a_tiny_graph(graphs, tmp_path: Path, name: str):
    src, inputs, context = graphs[MADE_FOR.get(name, "trees")]
    pass_ = passes.get(name)
    out = tmp_path / "out.onnx"
    did = pass_.run(src, out, pass_.options({}), context)
    assert isinstance(did, dict)
    if not pass_.runtime_ops:
        onnx.checker.check_model(str(out))
    before, after = OnnxModel(src).run_feed(inputs), OnnxModel(out).run_feed(inputs)
    assert len(before) == len(after)
    for b, a in zip(before, after, strict=True):
        assert b.shape == a.shape
        if pass_.lossy:  # close, not equal: the gates judge by the task metric
            assert np.isfinite(a).all()
            assert np.abs(a - b).max() <= 0.05 * np.abs(b).max()
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_quantization_reports_what_it_quantized(graphs, tmp_path: Path):
    src, _, context = graphs["network"]
    for name in ("int8_dynamic", "int8_static"):
        pass_ = passes.get(name)
        did = pass_.run(src, tmp_path / f"{name}.onnx", pass_.options({}), context)
        assert did["quantized_nodes"], did
    assert did["calibration_rows_seen"] == 200  # rows 100..300: every calibration row offered
    trees, _, context = graphs["trees"]
    with pytest.raises(ValueError, match="nothing to quantize"):
        passes.get("int8_dynamic").run(
            trees, tmp_path / "t.onnx", passes.get("int8_dynamic").options({}), context
        )


def test_static_int8_needs_calibration_data(graphs, tmp_path: Path):
    src, _, _ = graphs["network"]
    pass_ = passes.get("int8_static")
    with pytest.raises(ValueError, match="needs calibration data"):
        pass_.run(src, tmp_path / "out.onnx", pass_.options({}), PassContext("torch"))


def test_fusion_says_what_it_fused_and_can_be_told_not_to(graphs, tmp_path: Path):
    src, _, context = graphs["transformer"]
    pass_ = passes.get("transformer_fusion")
    fused = pass_.run(src, tmp_path / "a.onnx", pass_.options({}), context)["fused"]
    assert fused.get("SimplifiedLayerNormalization", 0) > 0, fused
    off = pass_.options({"disable": ["layer_norm", "skip_layer_norm", "rotary_embeddings"]})
    assert pass_.run(src, tmp_path / "b.onnx", off, context)["fused"] == {}


def test_a_chain_after_a_fused_pass_is_checked_by_the_runtime(graphs, tmp_path: Path):
    """ORT's fused ops are not ONNX ops: a later pass's output must still be judged loadable."""
    src, inputs, context = graphs["transformer"]
    chain = plan({"fused_int8": [{"pass": "transformer_fusion"}, {"pass": "int8_dynamic"}]})["fused_int8"]
    steps, _ = apply_chain(src, tmp_path / "out.onnx", chain, context)
    assert [s["pass"] for s in steps] == ["transformer_fusion", "int8_dynamic"]
    assert (
        OnnxModel(tmp_path / "out.onnx").run_feed(inputs)[0].shape == OnnxModel(src).run_feed(inputs)[0].shape
    )


def test_variants_can_be_limited_to_families():
    variants = {
        "everyone": [{"pass": "onnxslim"}],
        "networks": {"families": ["torch"], "passes": [{"pass": "int8_dynamic"}]},
    }
    assert set(for_family(variants, "torch")) == {"everyone", "networks"}
    assert set(for_family(variants, "xgboost")) == {"everyone"}
    assert set(plan(variants)) == {"everyone", "networks"}
    with pytest.raises(ConfigError, match=r"optimize\.variants\.bad: expected keys passes"):
        plan({"bad": {"family": ["torch"]}})


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


def test_slim_dim_names_do_not_depend_on_a_counter():
    """onnxslim names intermediate symbolic dims after a counter, and groups them, differently
    from run to run: the same graph must come out as the same bytes."""
    from onnx import TensorProto, helper

    from onnxship.passes.onnxslim import forget_invented_dim_names

    def graph_with(first: str, second: str):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
        mid = [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", first]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [first, second]),
        ]
        nodes = [helper.make_node("Identity", ["x"], ["a"]), helper.make_node("Identity", ["a"], ["y"])]
        return helper.make_model(helper.make_graph(nodes, "g", [x], [y], value_info=mid))

    # other numbers, and in the second run the two invented dims share one name
    one, two = graph_with("ConstantOfShape_142_o0__d0", "unk__7"), graph_with("unk__3", "unk__3")
    assert forget_invented_dim_names(one) == forget_invented_dim_names(two) == 3
    assert one.SerializeToString() == two.SerializeToString()
    dims = one.graph.value_info[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and not dims[1].HasField("dim_param")
