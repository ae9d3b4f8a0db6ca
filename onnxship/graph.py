"""Graph surgery shared by families and passes: bring a converter's graph to the contract
(onnxship.contract), ZipMap removal, the stacking merge, reading and snapping tree split thresholds."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxship.contract import BATCH, INPUT, LABEL, PREDICTION, PROBABILITIES

TREE_OPS = {"TreeEnsembleRegressor", "TreeEnsembleClassifier", "TreeEnsemble"}


def _rename(graph: onnx.GraphProto, old: str, new: str) -> None:
    if old == new:
        return
    _rename_in_nodes(graph.node, old, new)
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new


def strip_zipmap(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace ZipMap (list of dicts) outputs by the float tensor feeding them."""
    graph = model.graph
    for node in [n for n in graph.node if n.op_type == "ZipMap"]:
        source, target = node.input[0], node.output[0]
        graph.node.remove(node)
        for out in graph.output:
            if out.name == target:
                out.CopyFrom(helper.make_tensor_value_info(source, TensorProto.FLOAT, [BATCH, None]))
    return model


def standardize(
    model: onnx.ModelProto, task: str, opset: int = 15, keep_inputs: bool = False
) -> onnx.ModelProto:
    """Rename I/O to the contract, drop extra outputs, make the batch axis symbolic, import the
    default domain (some converters emit ai.onnx.ml only, which trips graph tools), and list the
    opsets in one order. `keep_inputs`: the inputs are already the model's named columns."""
    model = strip_zipmap(model)
    if not opset_of(model):
        model.opset_import.append(helper.make_opsetid("", opset))
    # converters fill opset_import from a set: its order follows Python's per-process string hash
    # seed, so the same model gave other bytes from run to run. One order: by domain.
    ordered = sorted(model.opset_import, key=lambda entry: entry.domain)
    del model.opset_import[:]
    model.opset_import.extend(ordered)
    graph = model.graph
    if task == "forecast":  # exported with the contract's names and axes already (onnxship.chronos)
        return model
    if not keep_inputs:
        if len(graph.input) != 1:
            raise ValueError(f"expected one graph input, found {[i.name for i in graph.input]}")
        _rename(graph, graph.input[0].name, INPUT)
    outputs = list(graph.output)
    if task == "regression":
        wanted = [(outputs[0].name, PREDICTION)]
    else:
        proba = next(o for o in outputs if o.type.tensor_type.elem_type == TensorProto.FLOAT)
        label = next((o for o in outputs if o.type.tensor_type.elem_type == TensorProto.INT64), None)
        if label is None:  # classes that are strings (a brought model): the label is their index
            label = label_from_probabilities(graph, proba.name)
        wanted = [(label.name, LABEL), (proba.name, PROBABILITIES)]
    keep = {old for old, _ in wanted}
    for out in [o for o in outputs if o.name not in keep]:
        graph.output.remove(out)
    for old, new in wanted:
        _rename(graph, old, new)
    order = [new for _, new in wanted]  # the contract's order (a derived label comes last otherwise)
    ordered_outputs = sorted(graph.output, key=lambda o: order.index(o.name))
    del graph.output[:]
    graph.output.extend(ordered_outputs)
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = BATCH
    return model


def label_from_probabilities(graph: onnx.GraphProto, probabilities: str) -> onnx.ValueInfoProto:
    """An int64 label output, the index of the most probable class: the contract's label, for a
    graph whose own label is the class itself (a string)."""
    name = "label_index"
    if any(LABEL in n.output for n in graph.node):  # the class label (dropped) keeps another name
        _rename(graph, LABEL, "class_label")
    graph.node.append(helper.make_node("ArgMax", [probabilities], [name], axis=1, keepdims=0, name=name))
    value = helper.make_tensor_value_info(name, TensorProto.INT64, [BATCH])
    graph.output.append(value)
    return value


def opset_of(model: onnx.ModelProto, domain: str = "") -> int:
    for entry in model.opset_import:
        if entry.domain == domain or (domain == "" and entry.domain == "ai.onnx"):
            return entry.version
    return 0


def merge_stack(
    bases: list[onnx.ModelProto], meta: onnx.ModelProto, take: list[str], task: str, opset: int
) -> onnx.ModelProto:
    """ONE graph: shared input -> every base model -> concat -> meta model.

    take[i] says which output of base i feeds the meta model: "prediction" (regressor),
    "proba_pos" (binary classifier: probability of class 1), "probabilities" (multiclass).
    """
    nodes, inits, opsets = [], [], defaultdict(int)
    stacked = []
    pieces = [*[(f"base{i}_", m) for i, m in enumerate(bases)], ("meta_", meta)]
    prepared = []
    for prefix, piece in pieces:
        if opset_of(piece) and opset_of(piece) != opset:
            piece = onnx.version_converter.convert_version(piece, opset)
        piece = onnx.compose.add_prefix(piece, prefix)
        for entry in piece.opset_import:
            opsets[entry.domain or ""] = max(opsets[entry.domain or ""], entry.version)
        prepared.append((prefix, piece))
    for i, (prefix, piece) in enumerate(prepared[:-1]):
        _rename(piece.graph, prefix + INPUT, INPUT)
        nodes.extend(piece.graph.node)
        inits.extend(piece.graph.initializer)
        if take[i] == "prediction":
            stacked.append(prefix + PREDICTION)
        else:
            proba = prefix + PROBABILITIES
            if take[i] == "proba_pos":
                starts, ends, axes = (f"{prefix}slice_{k}" for k in ("starts", "ends", "axes"))
                inits += [
                    numpy_helper.from_array(np.array([v], np.int64), n)
                    for v, n in ((1, starts), (2, ends), (1, axes))
                ]
                nodes.append(helper.make_node("Slice", [proba, starts, ends, axes], [proba + "_pos"]))
                proba += "_pos"
            stacked.append(proba)
    nodes.append(helper.make_node("Concat", stacked, ["meta_" + INPUT], axis=1, name="stack_concat"))
    meta_graph = prepared[-1][1].graph
    nodes.extend(meta_graph.node)
    inits.extend(meta_graph.initializer)
    outputs = []
    for out in meta_graph.output:
        final = out.name[len("meta_") :]
        _rename_in_nodes(nodes, out.name, final)
        value = onnx.ValueInfoProto()
        value.CopyFrom(out)
        value.name = final
        outputs.append(value)
    first = bases[0].graph.input[0]
    graph = helper.make_graph(nodes, "stacking", [first], outputs, initializer=inits)
    merged = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
        producer_name="onnxship-stacking",
    )
    merged.ir_version = max(m.ir_version for m in [*bases, meta])
    return standardize(merged, task, opset)


def _rename_in_nodes(nodes, old: str, new: str) -> None:
    for node in nodes:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]


def tree_thresholds(model: onnx.ModelProto) -> dict[int, np.ndarray]:
    """Split thresholds per feature index, read from every tree-ensemble node of the graph."""
    found: dict[int, list[float]] = defaultdict(list)
    for node in model.graph.node:
        if node.op_type not in TREE_OPS:
            continue
        attrs = {a.name: a for a in node.attribute}
        features = list(attrs["nodes_featureids"].ints) if "nodes_featureids" in attrs else []
        if "nodes_values_as_tensor" in attrs:
            values = numpy_helper.to_array(attrs["nodes_values_as_tensor"].t).tolist()
        elif "nodes_values" in attrs:
            values = list(attrs["nodes_values"].floats)
        elif "nodes_splits" in attrs:
            values = numpy_helper.to_array(attrs["nodes_splits"].t).tolist()
        else:
            continue
        modes = [m.decode() for m in attrs["nodes_modes"].strings] if "nodes_modes" in attrs else []
        if len(modes) != len(features):
            modes = ["BRANCH"] * len(features)  # TreeEnsemble (ml opset 5) lists split nodes only
        for k, (feat, value) in enumerate(zip(features, values, strict=False)):
            if modes[k] != "LEAF":
                found[int(feat)].append(float(value))
    return {f: np.unique(np.asarray(v)) for f, v in found.items()}


def snap_thresholds(model: onnx.ModelProto, originals: dict[int, np.ndarray]) -> dict[str, int]:
    """Make float32 split thresholds decide like the float64 ones they came from.

    A converter that stores a float64 threshold t as the nearest float32 t32 sends float32 inputs
    equal to t32 the wrong way whenever t32 > t (for `x <= t`). The largest float32 not above t
    decides every float32 input exactly as t does. originals: feature index -> float64 thresholds.
    Returns counts: thresholds moved, and ambiguous ones (two originals on both sides of one t32).
    """
    lookup = {
        f: (np.asarray(v, np.float64), np.asarray(v, np.float64).astype(np.float32))
        for f, v in originals.items()
    }
    moved = ambiguous = 0
    for node in model.graph.node:
        if node.op_type not in TREE_OPS:
            continue
        attrs = {a.name: a for a in node.attribute}
        if "nodes_values" not in attrs:
            continue
        modes = [m.decode() for m in attrs["nodes_modes"].strings]
        values = np.asarray(attrs["nodes_values"].floats, np.float32)
        for k, feat in enumerate(attrs["nodes_featureids"].ints):
            if modes[k] != "BRANCH_LEQ" or feat not in lookup:
                continue
            exact, rounded = lookup[feat]
            sources = exact[rounded == values[k]]
            if len(sources) == 0:
                continue
            above = sources < np.float64(values[k])  # t32 > t: inputs equal to t32 must go right
            if above.all():
                values[k] = np.nextafter(values[k], np.float32(-np.inf))
                moved += 1
            elif above.any():
                ambiguous += 1
        attrs["nodes_values"].floats[:] = values.tolist()
    return {"thresholds_snapped": moved, "thresholds_ambiguous": ambiguous}


def columns_front(model: onnx.ModelProto, columns: list[tuple[str, list[str] | None]]) -> onnx.ModelProto:
    """Put typed-column inputs in front of a graph that takes one float feature matrix: each
    column [batch, 1] becomes the matrix column of its position; a category (a list of its values,
    in the order the model codes them) becomes its code through a LabelEncoder, an unknown value
    (and "", a missing one) NaN, which the trees route as the library routes a missing category."""
    graph = model.graph
    if len(graph.input) != 1:
        raise ValueError(f"expected one feature-matrix input, found {[i.name for i in graph.input]}")
    matrix = graph.input[0].name
    inputs, nodes, parts = [], [], []
    for name, categories in columns:
        if categories is None:
            inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH, 1]))
            parts.append(name)
            continue
        inputs.append(helper.make_tensor_value_info(name, TensorProto.STRING, [BATCH, 1]))
        code = f"columns_front_code_{name}"
        nodes.append(
            helper.make_node(
                "LabelEncoder",
                [name],
                [code],
                domain="ai.onnx.ml",
                name=code,
                keys_strings=[str(c) for c in categories],
                values_floats=[float(i) for i in range(len(categories))],
                default_float=float("nan"),
            )
        )
        parts.append(code)
    nodes.append(helper.make_node("Concat", parts, [matrix], axis=1, name="columns_front_concat"))
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
    del graph.input[:]
    graph.input.extend(inputs)
    ml = next((e for e in model.opset_import if e.domain == "ai.onnx.ml"), None)
    if ml is None:
        model.opset_import.append(helper.make_opsetid("ai.onnx.ml", 2))
    elif ml.version < 2:  # LabelEncoder's string -> float form is ai.onnx.ml 2
        ml.version = 2
    return model
