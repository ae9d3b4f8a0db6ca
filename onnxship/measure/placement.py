"""Which execution provider ran each node: ONNX Runtime's own profile of one call, counted by
provider. On a GPU session, nodes left on the CPU mean copies between host and device on every
call; tree-ensemble ops have no CUDA kernel and always stay on the CPU, and the audit says so
instead of letting a "CUDA" figure pretend otherwise."""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from onnxship.runtime import CPU


def node_placement(model: str | Path, providers: list[str], feed: dict[str, np.ndarray]) -> dict:
    """{provider: nodes} for one profiled call, and the op types that ran on the CPU when another
    provider was asked for first."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="onnxship-placement-") as tmp:
        so = ort.SessionOptions()
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "profile")
        so.log_severity_level = 3
        session = ort.InferenceSession(str(model), so, providers=providers)
        session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    nodes: dict[str, str] = {}
    ops: dict[str, str] = {}
    for event in events:
        args = event.get("args") or {}
        if event.get("cat") == "Node" and "provider" in args:
            name = (
                event["name"]
                .removesuffix("_kernel_time")
                .removesuffix("_fence_before")
                .removesuffix("_fence_after")
            )
            nodes[name] = args["provider"]
            ops[name] = args.get("op_name", "?")
    by_provider = Counter(nodes.values())
    asked = session.get_providers()[0]
    on_cpu = sorted({ops[n] for n, p in nodes.items() if p == CPU}) if asked != CPU else []
    return {
        "requested": asked,
        "nodes_by_provider": dict(sorted(by_provider.items())),
        "cpu_fallback_op_types": on_cpu,
        "all_on_requested": by_provider.get(asked, 0) == len(nodes) and bool(nodes),
    }
