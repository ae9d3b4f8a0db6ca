"""Chronos-2's time attention as ONNX Runtime's fused `com.microsoft.MultiHeadAttention`: an ONNX
rewrite of the exported graph.

The exporter writes scaled dot-product attention as separate nodes (Q·Kᵀ, + mask, Softmax, ·V,
transpose back), which ONNX Runtime's transformer fusions do not recognise here (RoPE sits
between the projections and the product, and Chronos-2 does not scale the scores). The rotary
embedding stays as exported (ORT's fused RotaryEmbedding is not exact); the rotated Q (to the
[batch, seq, heads·dim] layout the op takes), rotated K and V (as [batch, heads, seq, dim]) go
into one MultiHeadAttention with the exported score scale (1.0) and the same additive mask
(`(1 - mask) * finfo.min`, expanded to [batch, 1, seq, seq]), whose output feeds `o` as the
attention's did. A query whose keys are all masked (a padded patch) gets the average of all
values, as in PyTorch (tests/test_chronos2_shortcuts.py checks answers against the library).

Found by the exporter's scope names (`/model/encoder/block.<i>/layer.0/self_attention/`); any
step of the pattern not where expected refuses the graph (ValueError).
"""

from __future__ import annotations

import re

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxship.chronos.graph_order import drop_unused, toposort

TIME_SCOPE = re.compile(r"^(/model/encoder/block\.\d+/layer\.0/self_attention/)o/MatMul$")
MS_DOMAIN = "com.microsoft"


class _Graph:
    def __init__(self, graph: onnx.GraphProto) -> None:
        self.producer = {out: n for n in graph.node for out in n.output}
        self.initializers = {t.name: t for t in graph.initializer}
        self.nodes = list(graph.node)

    def made_by(self, value: str, op_type: str, scope: str) -> onnx.NodeProto:
        node = self.producer.get(value)
        if node is None or node.op_type != op_type:
            raise ValueError(f"time attention {scope}: expected {op_type} producing {value}")
        return node

    def constant(self, value: str) -> np.ndarray | None:
        if value in self.initializers:
            return numpy_helper.to_array(self.initializers[value])
        node = self.producer.get(value)
        if node is not None and node.op_type == "Constant" and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
        return None


def _heads(g: _Graph, scope: str) -> int:
    """The head count: the third entry of the shape the Q projection is reshaped to."""
    q = f"{scope}q/MatMul_output_0"
    for node in g.nodes:
        if node.op_type == "Reshape" and node.input[0] == q and node.input[1] in g.producer:
            concat = g.producer[node.input[1]]
            heads = g.constant(concat.input[2]) if len(concat.input) == 4 else None
            if heads is not None:
                return int(heads.reshape(-1)[0])
    raise ValueError(f"time attention {scope}: head count not found")


def _full_mask(mask: str, prefix: str) -> tuple[list[onnx.NodeProto], str]:
    """[batch, 1, 1, seq] -> [batch, 1, seq, seq]: the op takes a bias with the query length."""
    nodes = [
        helper.make_node("Transpose", [mask], [prefix + "column"], perm=[0, 1, 3, 2]),
        helper.make_node("Shape", [prefix + "column"], [prefix + "shape"]),
        helper.make_node("Expand", [mask, prefix + "shape"], [prefix + "full"]),
    ]
    return nodes, prefix + "full"


def rewrite(model: onnx.ModelProto) -> int:
    """Fuse every time attention in place; returns how many."""
    graph = model.graph
    g = _Graph(graph)
    added: list[onnx.NodeProto] = []
    masks: dict[str, str] = {}
    fused = 0
    for o in g.nodes:
        match = TIME_SCOPE.match(o.name)
        if not match or o.op_type != "MatMul":
            continue
        scope = match.group(1)
        reshape = g.made_by(o.input[0], "Reshape", scope)
        back = g.made_by(reshape.input[0], "Transpose", scope)
        weighted = g.made_by(back.input[0], "MatMul", scope)
        softmax = g.made_by(weighted.input[0], "Softmax", scope)
        masked = g.made_by(softmax.input[0], "Add", scope)
        scores = g.made_by(masked.input[0], "MatMul", scope)
        scaled_q = g.made_by(scores.input[0], "Mul", scope)
        scaled_k = g.made_by(scores.input[1], "Mul", scope)
        key_t = g.made_by(scaled_k.input[0], "Transpose", scope)
        q_scale, k_scale = g.constant(scaled_q.input[1]), g.constant(scaled_k.input[1])
        if q_scale is None or k_scale is None or list(key_t.attribute[0].ints) != [0, 1, 3, 2]:
            raise ValueError(f"time attention {scope}: scores are not (q·s)(kᵀ·s) with constant scales")
        mask = masked.input[1]
        if mask not in masks:
            nodes, masks[mask] = _full_mask(mask, f"/onnxship/time_attention/mask{len(masks)}/")
            added += nodes
        prefix = scope + "fused/"
        added += [
            helper.make_node(
                "Constant",
                [],
                [prefix + "bsd"],
                value=helper.make_tensor("bsd", TensorProto.INT64, [3], [0, 0, -1]),
            ),
            helper.make_node("Transpose", [scaled_q.input[0]], [prefix + "q_bsnh"], perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [prefix + "q_bsnh", prefix + "bsd"], [prefix + "q"]),
            helper.make_node(
                "MultiHeadAttention",
                [prefix + "q", key_t.input[0], weighted.input[1], "", "", masks[mask]],
                [prefix + "attended"],
                name=prefix + "MultiHeadAttention",
                domain=MS_DOMAIN,
                num_heads=_heads(g, scope),
                scale=float(q_scale.reshape(-1)[0]) * float(k_scale.reshape(-1)[0]),
            ),
        ]
        o.input[0] = prefix + "attended"
        fused += 1
    if not fused:
        raise ValueError("no Chronos-2 time attention (…/layer.0/self_attention/o/MatMul) in the graph")
    ordered = toposort(g.nodes + added)
    del graph.node[:]
    graph.node.extend(ordered)
    drop_unused(graph)
    if all(op.domain != MS_DOMAIN for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return fused
