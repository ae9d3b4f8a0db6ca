"""Chronos-2's last encoder block computed past its time attention only for the tokens the
forecast reads: an ONNX rewrite of the exported graph, exact.

Chronos2Model reads `hidden_states[:, -num_output_patches:]` after the final layer norm: only the
future patches reach the quantiles. In the last block, after the time attention (the one step
that mixes tokens along time), the group attention mixes tokens only at the same time step
(across rows) and the feed-forward and norms work token by token. So the future tokens can be
sliced out right after the last time attention, with the group attention's mask sliced to the
same time steps: the same numbers are computed for the tokens that are kept, and the context
tokens' group attention and feed-forward in the last block (most of its cost: 9 of its 16
d_model² projections per token) are not computed at all. The final slice is then a no-op.

Found by the TorchScript exporter's scope names, as onnxship/chronos/group_shortcut.py; a graph
without them is refused. Run it before the group shortcut (it expects no subgraphs).
"""

from __future__ import annotations

import re

import onnx
from onnx import TensorProto, helper

from onnxship.chronos.graph_order import toposort

BLOCK = re.compile(r"^/model/encoder/block\.(\d+)/")
FINAL_NORM = "/model/encoder/final_layer_norm/"


def rewrite(model: onnx.ModelProto) -> int:
    """Slice the last block's tokens to the forecast's; returns the number of tokens-wise
    layers that now run on the future patches only (group attention + feed-forward: 2)."""
    if "group_ids" not in {i.name for i in model.graph.input}:
        raise ValueError("not a Chronos-2 forecast graph: no group_ids input")
    nodes = list(model.graph.node)
    if any(
        a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in nodes for a in n.attribute
    ):
        raise ValueError("forecast-token rewrite expects a graph without subgraphs (run it first)")
    by_name = {n.name: n for n in nodes}
    blocks = {int(m.group(1)) for n in nodes if (m := BLOCK.match(n.name))}
    if not blocks:
        raise ValueError("no Chronos-2 encoder blocks (/model/encoder/block.<i>/) in the graph")
    last = f"/model/encoder/block.{max(blocks)}/"
    time_out = by_name.get(last + "layer.0/Add")
    group_mask_add = by_name.get(last + "layer.1/self_attention/Add")
    norm_out = by_name.get(FINAL_NORM + "Mul_1")
    if time_out is None or group_mask_add is None or norm_out is None:
        raise ValueError(f"{last}: time attention output, group mask or final norm not found")
    final = [n for n in nodes if n.op_type == "Slice" and n.input[0] == norm_out.output[0]]
    if len(final) != 1 or len(final[0].input) < 4:
        raise ValueError("the forecast's slice of the final norm (hidden_states[:, -patches:]) not found")
    _, starts, ends, axes, *steps = final[0].input
    kept = last + "forecast_tokens/hidden"
    mask = last + "forecast_tokens/group_mask"
    axis0 = last + "forecast_tokens/axis0"
    added = [
        helper.make_node("Slice", [time_out.output[0], starts, ends, axes, *steps], [kept], name=kept),
        helper.make_node(
            "Constant", [], [axis0], name=axis0, value=helper.make_tensor("a", TensorProto.INT64, [1], [0])
        ),
        helper.make_node("Slice", [group_mask_add.input[1], starts, ends, axis0, *steps], [mask], name=mask),
    ]
    for node in nodes:
        if node.name.startswith(last):
            for k, name in enumerate(node.input):
                if name == time_out.output[0]:
                    node.input[k] = kept
    group_mask_add.input[1] = mask
    del model.graph.node[:]
    model.graph.node.extend(toposort(nodes + added))
    return 2
