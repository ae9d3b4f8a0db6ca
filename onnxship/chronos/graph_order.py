"""Node order for graph rewrites: nodes added anywhere are put after their inputs' producers,
and nodes nothing reads any more are dropped (ONNX Runtime would still run them)."""

from __future__ import annotations

from collections import defaultdict

import onnx


def toposort(nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """Nodes in an order where each comes after the producers of its inputs (stable otherwise)."""
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    waiting = [sum(1 for x in set(node.input) if x in producer) for node in nodes]
    readers: dict[int, list[int]] = defaultdict(list)
    for i, node in enumerate(nodes):
        for x in set(node.input):
            if x in producer:
                readers[producer[x]].append(i)
    ready = [i for i, count in enumerate(waiting) if count == 0]
    order: list[int] = []
    while ready:
        ready.sort(reverse=True)
        i = ready.pop()
        order.append(i)
        for j in readers[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                ready.append(j)
    if len(order) != len(nodes):
        raise ValueError("graph has a cycle")
    return [nodes[i] for i in order]


def drop_unused(graph: onnx.GraphProto) -> int:
    """Remove the nodes no graph output depends on; returns how many. Values read inside a
    subgraph (If branches) count as read by the node that holds it."""
    wanted = {o.name for o in graph.output}
    kept = []
    for node in reversed(list(graph.node)):
        if any(out in wanted for out in node.output):
            kept.append(node)
            wanted.update(node.input)
            for attr in node.attribute:
                for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                    wanted.update(x for n in sub.node for x in n.input)
    dropped = len(graph.node) - len(kept)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    return dropped
