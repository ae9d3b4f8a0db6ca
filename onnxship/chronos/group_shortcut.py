"""Chronos-2's group attention skipped when every row is its own group (no covariates, no
cross-learning): an ONNX rewrite of the exported graph, exact where the answer can be seen.

Why it holds. `GroupSelfAttention` attends along the batch axis; its mask lets row r's token at
time t see row s only when both share a group id and s is observed at t (the library's
`_construct_and_invert_group_time_mask`, additive `(1 - mask) * finfo.min`). With every group id
distinct, a query sees at most itself:

- observed token: one score plus 0, the others plus finfo.min, so softmax puts weight exactly 1.0
  on itself and exactly 0.0 elsewhere; the weighted sum of values is its own value, bit for bit.
  The attention's output is then `o(v(layer_norm(x)))`: Q, K, scores and softmax drop out.
- fully padded patch (all NaN): every key hidden, softmax averages the whole batch's values. The
  shortcut gives the token its own value instead. Such a token is hidden as a KEY in every time
  attention (the same attention mask), feed-forward and norms are per token, and the output head
  reads only the future patches, which are never masked: it cannot reach any output.
  tests/test_chronos2_shortcuts.py proves both against the unrewritten graph, bit for bit, on
  batches with padding and with shared groups.

With shared groups (a target and its covariates) the full attention is still needed, so each
group attention becomes an `If` on one flag computed once per call (all group ids distinct):
the shortcut, or the original nodes, moved unchanged into the else branch.

The blocks are found by the scope names the TorchScript exporter gives Chronos2Model's modules
(`/model/encoder/block.<i>/layer.1/self_attention/{v,o}/MatMul`); a graph without them is
refused (ValueError), so the variant fails instead of passing unchanged.
"""

from __future__ import annotations

import re
from collections import defaultdict

import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxship.rounded_matmul import rounded_matmul

GROUP_SCOPE = re.compile(r"^(/model/encoder/block\.\d+/layer\.1/self_attention/)o/MatMul$")
GROUP_IDS = "group_ids"
FLAG = "/onnxship/group_shortcut/all_groups_distinct"


def _distinct_flag(prefix: str) -> list[onnx.NodeProto]:
    """flag = number of equal (i, j) id pairs == rows, i.e. each id equals only itself."""
    n = f"{prefix}/"
    return [
        helper.make_node(
            "Constant", [], [n + "ax0"], value=helper.make_tensor("a0", TensorProto.INT64, [1], [0])
        ),
        helper.make_node(
            "Constant", [], [n + "ax1"], value=helper.make_tensor("a1", TensorProto.INT64, [1], [1])
        ),
        helper.make_node("Unsqueeze", [GROUP_IDS, n + "ax1"], [n + "column"]),
        helper.make_node("Unsqueeze", [GROUP_IDS, n + "ax0"], [n + "row"]),
        helper.make_node("Equal", [n + "column", n + "row"], [n + "same"]),
        helper.make_node("Cast", [n + "same"], [n + "same_i64"], to=TensorProto.INT64),
        helper.make_node("ReduceSum", [n + "same_i64"], [n + "pairs"], keepdims=0),
        helper.make_node("Size", [GROUP_IDS], [n + "rows"]),
        helper.make_node("Equal", [n + "pairs", n + "rows"], [FLAG]),
    ]


def _cone(nodes: list[onnx.NodeProto], target: str, stop: str, scope: str) -> set[int]:
    """Indices of the nodes inside `scope` that `target` depends on, not looking past `stop`."""
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    found: set[int] = set()
    todo = [target]
    while todo:
        name = todo.pop()
        i = producer.get(name)
        if name == stop or i is None or i in found or not nodes[i].name.startswith(scope):
            continue
        found.add(i)
        todo.extend(nodes[i].input)
    return found


def _keep_shared(
    nodes: list[onnx.NodeProto], cone: set[int], target: str, graph_outputs: set[str]
) -> set[int]:
    """Drop from the cone any node whose output something outside the cone still reads (a node
    outside, or the graph's outputs: a branch's values are invisible outside its If)."""
    consumers: dict[str, set[int]] = defaultdict(set)
    for i, node in enumerate(nodes):
        for name in node.input:
            consumers[name].add(i)
    for name in graph_outputs:
        consumers[name].add(-1)  # an index no node has: always outside the cone
    changed = True
    while changed:
        changed = False
        for i in sorted(cone):
            outside = {c for out in nodes[i].output if out != target for c in consumers[out]} - cone
            if outside:
                cone.discard(i)
                changed = True
    return cone


def _folded(model: onnx.ModelProto, v: onnx.NodeProto, o: onnx.NodeProto, scope: str) -> onnx.NodeProto:
    """One MatMul by Wv·Wo (each element the float32 rounding of the exact product, the same
    bytes on every CPU: onnxship.rounded_matmul): the shortcut's two projections in one, at the
    price of bit-exactness (rounding of the product)."""
    weights = {t.name: t for t in model.graph.initializer}
    if v.input[1] not in weights or o.input[1] not in weights:
        raise ValueError(f"group attention {scope}: v/o weights are not initializers")
    product = rounded_matmul(
        numpy_helper.to_array(weights[v.input[1]]), numpy_helper.to_array(weights[o.input[1]])
    )
    name = scope + "shortcut/vo_weight"
    model.graph.initializer.append(numpy_helper.from_array(product, name))
    return helper.make_node(
        "MatMul", [v.input[0], name], [scope + "shortcut/vo"], name=scope + "shortcut/vo/MatMul"
    )


def rewrite(model: onnx.ModelProto, fold: bool = False) -> int:
    """Rewrite every group attention of a Chronos-2 graph in place; the number rewritten.

    fold=False: If(flag) picks the value projection's output or the attention's (before `o`):
    exact. fold=True: If(flag) picks one MatMul by Wv·Wo or the whole attention (v and o moved
    into the else branch): one projection fewer per layer, not bit-exact."""
    graph = model.graph
    if GROUP_IDS not in {i.name for i in graph.input}:
        raise ValueError("not a Chronos-2 forecast graph: no group_ids input")
    nodes = list(graph.node)
    if any(FLAG in n.output for n in nodes):
        raise ValueError("the group attention is rewritten already (the graph computes its flag)")
    blocks = [(i, GROUP_SCOPE.match(n.name)) for i, n in enumerate(nodes)]
    blocks = [(i, m.group(1)) for i, m in blocks if m and nodes[i].op_type == "MatMul"]
    if not blocks:
        raise ValueError("no Chronos-2 group attention (…/layer.1/self_attention/o/MatMul) in the graph")
    outputs = {out: n for n in nodes for out in n.output}
    graph_outputs = {o.name for o in graph.output}
    moved: set[int] = set()
    inserted: dict[int, onnx.NodeProto] = {}
    for o_index, scope in blocks:
        o = nodes[o_index]
        v = outputs.get(f"{scope}v/MatMul_output_0")
        if v is None or v.op_type != "MatMul":
            raise ValueError(f"group attention {scope}: no value projection (v/MatMul)")
        if fold:  # the If stands for the whole attention, `o` included; one MatMul in `then`
            shortcut = _folded(model, v, o, scope)
            target, stop = o.output[0], ""
        else:  # the If stands for the attended values; v and o stay outside, shared by both
            shortcut = helper.make_node("Identity", [v.output[0]], [scope + "shortcut/value"])
            target, stop = o.input[0], v.output[0]
        if target in graph_outputs:  # the If's output takes its place for nodes, not for the graph
            raise ValueError(f"group attention {scope}: its output is a graph output")
        cone = _keep_shared(nodes, _cone(nodes, target, stop, scope), target, graph_outputs)
        if not cone or target not in {out for i in cone for out in nodes[i].output}:
            raise ValueError(f"group attention {scope}: its attention nodes are shared elsewhere")
        then = helper.make_graph(
            [shortcut],
            "own_value",
            [],
            [helper.make_tensor_value_info(shortcut.output[0], TensorProto.FLOAT, None)],
        )
        otherwise = helper.make_graph(
            [nodes[i] for i in sorted(cone)],
            "group_attention",
            [],
            [helper.make_tensor_value_info(target, TensorProto.FLOAT, None)],
        )
        chosen = scope + "shortcut/chosen"
        chooser = helper.make_node(
            "If", [FLAG], [chosen], name=scope + "shortcut/If", then_branch=then, else_branch=otherwise
        )
        for i, node in enumerate(nodes):  # whoever read the replaced value reads the chosen one
            for k, name in enumerate(node.input):
                if name == target and i not in cone:
                    node.input[k] = chosen
        inserted[o_index] = chooser
        moved |= cone
    rebuilt = _distinct_flag("/onnxship/group_shortcut")
    for i, node in enumerate(nodes):
        if i in inserted:
            rebuilt.append(inserted[i])
        if i not in moved:
            rebuilt.append(node)
    del graph.node[:]
    graph.node.extend(rebuilt)
    return len(blocks)
