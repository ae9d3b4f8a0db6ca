"""Oblivious trees (CatBoost's: every node of a level tests the same split) as a graph of standard
ONNX operators instead of `ai.onnx.ml.TreeEnsembleRegressor`.

ORT's TreeEnsemble walks each tree node by node. An oblivious tree needs no walk: its leaf is the
binary number whose bit l says whether level l's split holds. So the graph

1. compares every distinct split once (`Gather` the features, `Greater`/`GreaterOrEqual`/`Less`/
   `LessOrEqual` against the thresholds, NaN sent where the ensemble sends it),
2. turns each tree's bits into its leaf index with one `MatMulInteger` (bits [N, S] x weights
   [S, T], weight 2^l where split s is level l of tree t),
3. looks every tree's leaf value up in one table (`Gather`, values in float64 as CatBoost sums
   them), sums the trees (`ReduceSum`) and adds the base value.

`rewrite(model)` replaces every TreeEnsembleRegressor whose trees are all oblivious (depth <= 8,
one target, SUM) and returns how many it replaced; any other node is left as it is.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxship.graph import opset_of

MAX_DEPTH = 8  # 2^7 is the largest bit weight a uint8 MatMulInteger operand holds
COMPARE = {
    "BRANCH_GT": "Greater",
    "BRANCH_GTE": "GreaterOrEqual",
    "BRANCH_LT": "Less",
    "BRANCH_LEQ": "LessOrEqual",
}


class NotOblivious(ValueError):
    """The ensemble cannot be written this way; the message says why."""


@dataclass(frozen=True)
class Split:
    feature: int
    threshold: float  # as float32, the type the ensemble compares in
    mode: str
    nan_true: bool  # a missing value takes the true branch


NEVER = Split(0, float("inf"), "BRANCH_GT", False)  # x > inf: false for every x, NaN included


@dataclass
class Tree:
    levels: list[Split]  # the split of level 0, 1, ...
    leaves: np.ndarray  # float64 [2^depth]: the leaf whose index has bit l set where level l holds


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _thresholds(found: dict) -> np.ndarray:
    if "nodes_values_as_tensor" in found:
        values = numpy_helper.to_array(found["nodes_values_as_tensor"])
        if values.dtype != np.float32 and not np.array_equal(values, values.astype(np.float32)):
            raise NotOblivious("thresholds are float64 values float32 cannot hold")
        return values.astype(np.float32)
    return np.asarray(found["nodes_values"], dtype=np.float32)


def read_trees(node: onnx.NodeProto) -> tuple[list[Tree], float]:
    """The trees of a TreeEnsembleRegressor and its base value; NotOblivious says why not."""
    if node.op_type != "TreeEnsembleRegressor":
        raise NotOblivious(f"{node.op_type} is not a TreeEnsembleRegressor")
    found = _attrs(node)
    if found.get("n_targets", 1) != 1 or found.get("aggregate_function", b"SUM") not in (b"SUM", "SUM"):
        raise NotOblivious("only one target summed over the trees")
    if found.get("post_transform", b"NONE") not in (b"NONE", "NONE"):
        raise NotOblivious("a post transform")
    tree_ids, node_ids = found["nodes_treeids"], found["nodes_nodeids"]
    modes = [m.decode() if isinstance(m, bytes) else m for m in found["nodes_modes"]]
    features, thresholds = found["nodes_featureids"], _thresholds(found)
    true_ids, false_ids = found["nodes_truenodeids"], found["nodes_falsenodeids"]
    nan_true = found.get("nodes_missing_value_tracks_true") or [0] * len(tree_ids)
    nodes: dict[int, dict[int, int]] = defaultdict(dict)  # tree -> node id -> attribute row
    for row, (tree, nid) in enumerate(zip(tree_ids, node_ids, strict=True)):
        nodes[tree][nid] = row
    weights: dict[tuple[int, int], float] = defaultdict(float)
    for tree, nid, _target, weight in zip(
        found["target_treeids"],
        found["target_nodeids"],
        found["target_ids"],
        found["target_weights"],
        strict=True,
    ):
        weights[tree, nid] += float(weight)
    if "target_weights_as_tensor" in found:
        raise NotOblivious("float64 leaf weights")  # not written by the exporters we use
    trees = [
        _oblivious(t, nodes[t], modes, features, thresholds, true_ids, false_ids, nan_true, weights)
        for t in sorted(nodes)
    ]
    base = found.get("base_values") or [0.0]
    return trees, float(base[0])


def _oblivious(tree, rows, modes, features, thresholds, true_ids, false_ids, nan_true, weights) -> Tree:
    children = {nid for r in rows.values() if modes[r] != "LEAF" for nid in (true_ids[r], false_ids[r])}
    roots = [nid for nid in rows if nid not in children]
    if len(roots) != 1:
        raise NotOblivious(f"tree {tree} has {len(roots)} roots")
    level, levels = [roots[0]], []
    while modes[rows[level[0]]] != "LEAF":
        splits = set()
        for nid in level:
            r = rows[nid]
            if modes[r] not in COMPARE:
                raise NotOblivious(f"tree {tree}: split mode {modes[r]}")
            splits.add(Split(int(features[r]), float(thresholds[r]), modes[r], bool(nan_true[r])))
        if len(splits) != 1 or any(modes[rows[n]] == "LEAF" for n in level):
            raise NotOblivious(f"tree {tree}: level {len(levels)} does not test one split in every node")
        levels.append(splits.pop())
        if len(levels) > MAX_DEPTH:
            raise NotOblivious(f"tree {tree} is deeper than {MAX_DEPTH}")
        level = [child for n in level for child in (false_ids[rows[n]], true_ids[rows[n]])]
    if any(modes[rows[n]] != "LEAF" for n in level):
        raise NotOblivious(f"tree {tree} has leaves at more than one depth")
    # `level` lists the leaves with the first level's split as the most significant choice;
    # reorder so that bit l of a leaf's index is level l's outcome
    depth = len(levels)
    leaves = np.empty(2**depth, dtype=np.float64)
    for position, nid in enumerate(level):
        index = sum(((position >> (depth - 1 - lv)) & 1) << lv for lv in range(depth))
        leaves[index] = weights[tree, nid]
    return Tree(levels, leaves)


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(value, name)


def _compare_splits(splits: list[Split], features_t: str, p: str) -> tuple[list, list, str]:
    """Nodes making `{p}bits` [S, N] bool: row s says where split s holds, from the transposed
    features [F, N] (every Gather here copies whole rows of N values, never value by value)."""
    nodes, inits, parts = [], [], []
    for mode in sorted({s.mode for s in splits}):  # one Gather and compare per kind of split
        group = [s for s in splits if s.mode == mode]
        inits += [
            _const(f"{p}{mode}_features", np.array([s.feature for s in group], np.int64)),
            _const(f"{p}{mode}_thresholds", np.array([[s.threshold] for s in group], np.float32)),
        ]
        nodes += [
            helper.make_node("Gather", [features_t, f"{p}{mode}_features"], [f"{p}{mode}_x"], axis=0),
            helper.make_node(COMPARE[mode], [f"{p}{mode}_x", f"{p}{mode}_thresholds"], [f"{p}{mode}_holds"]),
        ]
        holds = f"{p}{mode}_holds"
        if any(s.nan_true for s in group):  # a missing value takes the true branch of these splits
            inits.append(_const(f"{p}{mode}_nan_true", np.array([[s.nan_true] for s in group], np.bool_)))
            nodes += [
                helper.make_node("IsNaN", [f"{p}{mode}_x"], [f"{p}{mode}_nan"]),
                helper.make_node("And", [f"{p}{mode}_nan", f"{p}{mode}_nan_true"], [f"{p}{mode}_nan_goes"]),
                helper.make_node("Or", [holds, f"{p}{mode}_nan_goes"], [f"{p}{mode}_holds_nan"]),
            ]
            holds = f"{p}{mode}_holds_nan"
        parts.append(holds)
    if len(parts) == 1:
        return nodes, inits, parts[0]
    # in `splits` order (sorted by mode first): the rows line up with the split numbers
    nodes.append(helper.make_node("Concat", parts, [f"{p}bits"], axis=0))
    return nodes, inits, f"{p}bits"


def subgraph(trees: list[Tree], base: float, features: str, output: str, prefix: str) -> tuple[list, list]:
    """The nodes and initializers computing `output` [N, 1] float32 from `features` [N, F].

    Trees go in pairs: a pair's two leaf indices make one index into a table of the sums of
    their leaves (2^(2 depth) entries), so the lookups, the slowest step, are halved."""
    depth = max((len(t.levels) for t in trees), default=0)
    if len(trees) % 2:
        trees = [*trees, Tree([], np.zeros(1))]  # a tree that adds 0
    shallower = any(len(t.levels) < depth for t in trees)
    used = {s for t in trees for s in t.levels} | ({NEVER} if shallower else set())
    splits = sorted(used, key=lambda s: (s.mode, s.feature, s.threshold, s.nan_true))
    number = {s: i for i, s in enumerate(splits)}
    p, pairs, leaves = prefix, len(trees) // 2, 2**depth
    nodes = [helper.make_node("Transpose", [features], [f"{p}features_t"], perm=[1, 0])]
    compare_nodes, inits, bits = _compare_splits(splits, f"{p}features_t", p)
    nodes += compare_nodes
    # rows [2 depth, pairs]: the split of each level of a pair's first tree, then of its second;
    # a shallower tree's missing levels read NEVER's row (always false): they add nothing
    rows = np.full((2 * depth, pairs), number.get(NEVER, 0), np.int64)
    table = np.zeros((pairs, leaves * leaves), np.float64)
    for k in range(pairs):
        first, second = trees[2 * k], trees[2 * k + 1]
        for level, split in enumerate(first.levels):
            rows[level, k] = number[split]
        for level, split in enumerate(second.levels):
            rows[depth + level, k] = number[split]
        # entry i + 2^depth j: first tree's leaf i plus second tree's leaf j, summed in float64
        sums = first.leaves[:, None] + second.leaves[None, :]  # [2^d1, 2^d2]
        block = np.zeros((leaves, leaves))
        block[: sums.shape[0], : sums.shape[1]] = sums
        table[k] = block.T.reshape(-1)
    # [2, 2 depth] level weights: row 0 makes the first tree's index, row 1 the second's
    weights = np.zeros((2, 2 * depth), np.uint8)
    weights[0, :depth] = weights[1, depth:] = [1 << level for level in range(depth)]
    inits += [
        _const(f"{p}rows", rows),
        _const(f"{p}level_weights", weights),
        _const(f"{p}bit_span", np.array([2 * depth, -1], np.int64)),
        _const(f"{p}leaves_per_tree", np.array(leaves, np.int32)),
        _const(f"{p}index_shape", np.array([pairs, -1], np.int64)),
        _const(f"{p}table", table),
        _const(f"{p}axis0", np.array([0], np.int64)),
        _const(f"{p}base", np.array([[base]], np.float64)),
        _const(f"{p}perm", np.array([1, 0], np.int64)),
    ]
    nodes += [
        helper.make_node("Cast", [bits], [f"{p}bits_u8"], to=TensorProto.UINT8),
        helper.make_node("Gather", [f"{p}bits_u8", f"{p}rows"], [f"{p}level_bits"], axis=0),
        helper.make_node("Reshape", [f"{p}level_bits", f"{p}bit_span"], [f"{p}level_bits_2d"]),
        # [2, 2 depth] x [2 depth, pairs N]: one product gives both trees' leaf indices
        helper.make_node("MatMulInteger", [f"{p}level_weights", f"{p}level_bits_2d"], [f"{p}leaf2"]),
        helper.make_node("Split", [f"{p}leaf2"], [f"{p}leaf_first", f"{p}leaf_second"], axis=0),
        helper.make_node("Mul", [f"{p}leaf_second", f"{p}leaves_per_tree"], [f"{p}leaf_second_shifted"]),
        helper.make_node("Add", [f"{p}leaf_first", f"{p}leaf_second_shifted"], [f"{p}pair_leaf"]),
        helper.make_node("Reshape", [f"{p}pair_leaf", f"{p}index_shape"], [f"{p}pair_at"]),
        helper.make_node("Cast", [f"{p}pair_at"], [f"{p}pair_at64"], to=TensorProto.INT64),
        # [pairs, 2^(2 depth)] sums, [pairs, N] entries: each pair reads its own row
        helper.make_node("GatherElements", [f"{p}table", f"{p}pair_at64"], [f"{p}values"], axis=1),
        helper.make_node("ReduceSum", [f"{p}values", f"{p}axis0"], [f"{p}sum"], keepdims=1),  # [1, N]
        helper.make_node("Add", [f"{p}sum", f"{p}base"], [f"{p}total"]),
        helper.make_node("Transpose", [f"{p}total"], [f"{p}total_t"], perm=[1, 0]),
        helper.make_node("Cast", [f"{p}total_t"], [output], to=TensorProto.FLOAT),
    ]
    return nodes, inits


def rewrite(model: onnx.ModelProto) -> int:
    """Replace every oblivious TreeEnsembleRegressor of `model` in place; how many were replaced."""
    graph, replaced = model.graph, 0
    default = [n for n in graph.node if n.domain in ("", "ai.onnx")]
    if default and opset_of(model) < 13:  # raising it could change what those nodes mean
        raise NotOblivious("the graph's default opset is below 13 (ReduceSum with axes as input)")
    for position, node in reversed(list(enumerate(graph.node))):
        try:
            trees, base = read_trees(node)
        except NotOblivious:
            continue
        nodes, inits = subgraph(trees, base, node.input[0], node.output[0], f"oblivious{position}_")
        del graph.node[position]
        for offset, new in enumerate(nodes):
            graph.node.insert(position + offset, new)
        graph.initializer.extend(inits)
        replaced += 1
    if replaced:
        _default_opset_at_least(model, 13)  # ReduceSum takes its axes as an input from opset 13
        # opset 13 needs IR 7; CatBoost writes IR 3, where every initializer must be an input too
        model.ir_version = max(model.ir_version, 7)
    return replaced


def _default_opset_at_least(model: onnx.ModelProto, version: int) -> None:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = max(entry.version, version)  # our nodes are valid at every later opset
            return
    model.opset_import.append(helper.make_opsetid("", version))
