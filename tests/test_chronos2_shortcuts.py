"""The chronos2_shortcuts pass (onnxship/chronos/group_shortcut.py, forecast_tokens.py) on a tiny
Chronos-2 checkpoint: bit for bit the exported graph's answers without folding, on batches with
NaN holes and NaN-padded short rows, with and without shared groups (covariates); the library's
answers with folding; padded tokens get other hidden states inside, which never reach a forecast;
the full attention is still what shared groups get."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxship import passes
from onnxship.chronos import forecast_tokens, group_shortcut, time_attention
from onnxship.contract import CONTEXT, ModelIO
from onnxship.forecasting.rollout import forecast_windows
from onnxship.runtime import OnnxModel
from tests.builders import feed, pipeline, spec_of

pytest.importorskip("chronos")

PATTERNS = {"none": (), "known_future": (("temperature", True), ("load", False))}
SHAPES = ((1, 17), (4, 70), (3, 300))  # batch, context length (300 > the checkpoint's 256)
GROUP_OUT = "/model/encoder/block.0/layer.1/Transpose_1_output_0"  # the group attention block's output


@pytest.fixture(scope="module")
def exported():
    family, est = pipeline("chronos2")
    out = {}
    for pattern, covariates in PATTERNS.items():
        spec = spec_of(est, 24, covariates)
        out[pattern] = (family, est, spec, family.to_onnx(est, ModelIO.forecast(spec), 17))
    return out


def rewritten(
    model: onnx.ModelProto, fold: bool, tokens: bool = True, fused: bool = False
) -> onnx.ModelProto:
    """The pass's steps in its order (fused attention, forecast tokens, group shortcut)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    if fused:
        time_attention.rewrite(copy)
    if tokens:
        forecast_tokens.rewrite(copy)
    group_shortcut.rewrite(copy, fold=fold)
    return copy


def served(model: onnx.ModelProto, spec, windows) -> np.ndarray:
    session = OnnxModel(model.SerializeToString())
    return forecast_windows(lambda f: session.run_feed(f)[0], spec, windows)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_exact_shortcuts_answer_bit_for_bit(exported, pattern):
    _, _, spec, model = exported[pattern]
    fast = rewritten(model, fold=False)
    for batch, length in SHAPES:
        windows = feed(spec, batch, length, seed=length)
        assert np.array_equal(served(fast, spec, windows), served(model, spec, windows)), (batch, length)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_folded_shortcuts_with_fused_attention_answer_like_the_library(exported, pattern):
    family, est, spec, model = exported[pattern]
    fast = rewritten(model, fold=True, fused=True)
    assert any(n.op_type == "MultiHeadAttention" for n in fast.graph.node)
    for batch, length in SHAPES:
        windows = feed(spec, batch, length, seed=length)
        native = family.forecast(est, windows, spec)
        scale = np.nanstd(windows[CONTEXT])
        assert np.abs(served(fast, spec, windows) - native).max() <= 1e-4 * scale + 1e-5, (batch, length)


def with_output(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return copy


def test_padded_tokens_differ_inside_but_never_reach_the_forecast(exported):
    """Where a row's patch is all NaN the library averages the batch's values; the shortcut keeps
    the row's own: different hidden states there (so the check below is not vacuous), none
    elsewhere, and the same quantiles bit for bit."""
    _, _, spec, model = exported["none"]
    windows = feed(spec, 4, 70, seed=3)  # row 1 is NaN-padded on its left half
    graph_feed = spec.graph_feed(windows)
    assert len(set(graph_feed["group_ids"].tolist())) == len(graph_feed["group_ids"])
    before = OnnxModel(with_output(model, GROUP_OUT).SerializeToString()).run_feed(graph_feed)
    fast = rewritten(model, fold=False, tokens=False)
    after = OnnxModel(with_output(fast, GROUP_OUT).SerializeToString()).run_feed(graph_feed)
    assert np.array_equal(before[0], after[0])
    differs = np.abs(before[1] - after[1]).max(axis=-1) > 0  # [rows, tokens]
    assert differs.any()
    assert differs[1].any() and not differs[[0, 2, 3]].any()  # only the padded row, only its padding
    row = graph_feed[CONTEXT][1]
    left = np.full(-len(row) % 16, np.nan, np.float32)  # the model left-pads to whole patches
    padded_patches = np.isnan(np.concatenate([left, row])).reshape(-1, 16).all(axis=1)
    assert differs[1, : len(padded_patches)][padded_patches].all()
    assert not differs[1, : len(padded_patches)][~padded_patches].any()


def test_every_block_is_rewritten_and_the_folded_shortcut_is_taken(exported):
    """Each rewrite reports one change per encoder block (the tiny checkpoint has one), and the
    folded shortcut changes the padded tokens' hidden states as the exact one does, so its branch
    is the one that ran."""
    _, est, spec, model = exported["none"]
    blocks = est.model.config.num_layers
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    assert time_attention.rewrite(copy) == blocks
    assert forecast_tokens.rewrite(copy) == 2
    assert group_shortcut.rewrite(copy, fold=True) == blocks
    graph_feed = spec.graph_feed(feed(spec, 4, 70, seed=3))
    before = OnnxModel(with_output(model, GROUP_OUT).SerializeToString()).run_feed(graph_feed)
    folded = rewritten(model, fold=True, tokens=False)
    after = OnnxModel(with_output(folded, GROUP_OUT).SerializeToString()).run_feed(graph_feed)
    moved = np.abs(before[1] - after[1]).max(axis=-1)  # [rows, tokens]
    assert moved[1].max() > 1e-3 > moved[[0, 2, 3]].max()  # the padded row's padding, and rounding
    np.testing.assert_allclose(after[0], before[0], rtol=1e-5, atol=1e-5)


def test_shared_groups_still_get_the_full_attention(exported):
    """Forcing the shortcut on a target with its covariates (one group) changes the forecast:
    the If's else branch is doing real work, and the bit-for-bit check would catch its loss."""
    _, _, spec, model = exported["known_future"]
    fast = rewritten(model, fold=False)
    forced = onnx.ModelProto()
    forced.CopyFrom(fast)
    flag = next(n for n in forced.graph.node if n.output[0] == group_shortcut.FLAG)
    forced.graph.node.remove(flag)
    true = helper.make_tensor("t", TensorProto.BOOL, [], [True])
    forced.graph.node.insert(0, helper.make_node("Constant", [], [group_shortcut.FLAG], value=true))
    windows = feed(spec, 2, 70)
    assert not np.array_equal(served(forced, spec, windows), served(model, spec, windows))
    assert np.array_equal(served(fast, spec, windows), served(model, spec, windows))


def test_a_graph_that_is_not_chronos2_is_refused(tmp_path):
    family, est = pipeline("chronos_bolt")
    spec = spec_of(est, 16)
    src = tmp_path / "bolt.onnx"
    onnx.save(family.to_onnx(est, ModelIO.forecast(spec), 17), src)
    pass_ = passes.get("chronos2_shortcuts")
    with pytest.raises(ValueError, match="no group_ids input"):
        pass_.run(src, tmp_path / "out.onnx", pass_.options({}), passes.PassContext("chronos_bolt"))


def test_a_second_rewrite_is_refused(exported):
    _, _, _, model = exported["none"]
    once = rewritten(model, fold=True, tokens=False)
    with pytest.raises(ValueError, match="rewritten already"):
        group_shortcut.rewrite(once, fold=True)


def test_an_attention_value_the_graph_outputs_stays_outside_the_branch(exported):
    """A value inside the group attention that is also a graph output cannot move into the If's
    else branch (it would vanish from the graph): the node stays outside and the graph still
    answers with it, bit for bit."""
    _, _, spec, model = exported["none"]
    scores = next(
        n.output[0]
        for n in model.graph.node
        if n.name.startswith("/model/encoder/block.0/layer.1/") and n.op_type == "Softmax"
    )
    watched = with_output(model, scores)
    fast = rewritten(watched, fold=False, tokens=False)
    assert scores in {o for n in fast.graph.node if n.op_type != "If" for o in n.output}
    graph_feed = spec.graph_feed(feed(spec, 2, 70))
    before = OnnxModel(watched.SerializeToString()).run_feed(graph_feed)
    after = OnnxModel(fast.SerializeToString()).run_feed(graph_feed)
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_a_group_attention_whose_output_the_graph_outputs_is_refused(exported):
    """The If's output replaces the attention's for the nodes that read it; a graph output of
    that name would be left without a producer, so the rewrite refuses the graph."""
    _, _, _, model = exported["none"]
    target = next(
        n.input[0]
        for n in model.graph.node
        if n.name == "/model/encoder/block.0/layer.1/self_attention/o/MatMul"
    )
    with pytest.raises(ValueError, match="its output is a graph output"):
        group_shortcut.rewrite(with_output(model, target), fold=False)


def test_the_folded_weight_is_the_exact_product_rounded_the_same_bytes_on_any_cpu(exported):
    """Wv·Wo is folded with every element the exact sum rounded to float32 (onnxship.rounded_matmul):
    a float64 BLAS product rounded to float32 came out with other last bits on an AVX-512 host than
    on an AVX2 one. Planted: a sum that float64 rounds onto a float32 midpoint, the wrong way."""
    from onnx import numpy_helper

    from onnxship.rounded_matmul import rounded_matmul

    _, _, _, model = exported["none"]
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    nodes = {out: n for n in copy.graph.node for out in n.output}
    weights = {t.name: t for t in copy.graph.initializer}
    (o_node,) = [n for n in copy.graph.node if n.name.endswith("layer.1/self_attention/o/MatMul")][:1]
    scope = o_node.name[: -len("o/MatMul")]
    v_name, o_name = nodes[f"{scope}v/MatMul_output_0"].input[1], o_node.input[1]
    wv, wo = (numpy_helper.to_array(weights[n]).copy() for n in (v_name, o_name))
    wv[0, :], wo[:, 0] = 0, 0
    wv[0, :3], wo[:3, 0] = [1.0, 2.0**-24, 2.0**-60], 1.0  # exactly: 1 + 2^-24 + 2^-60 -> 1 + 2^-23
    for name, value in ((v_name, wv), (o_name, wo)):
        weights[name].CopyFrom(numpy_helper.from_array(value, name))
    group_shortcut.rewrite(copy, fold=True)
    folded = numpy_helper.to_array(
        next(t for t in copy.graph.initializer if t.name == f"{scope}shortcut/vo_weight")
    )
    assert folded[0, 0] == np.float32(1 + 2.0**-23)
    assert np.array_equal(folded.view(np.uint32), rounded_matmul(wv, wo).view(np.uint32))
