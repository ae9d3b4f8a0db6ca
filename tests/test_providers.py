"""Execution providers: GPU providers are used only where they can run, and skipped with a reason
otherwise; the placement audit counts which provider ran each node (CPU here; on a GPU, the nodes
that fell back to the CPU, e.g. tree ensembles, which have no CUDA kernel)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from onnxship.measure.placement import node_placement
from onnxship.measure.providers import gpu_count, usable_gpu_providers
from tests.builders import rows_graph

GPU_PROVIDERS = ["CUDAExecutionProvider", "TensorrtExecutionProvider"]
HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers() and gpu_count() > 0


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> dict:
    return {
        kind: rows_graph(family, "regression", tmp_path_factory.mktemp(kind))
        for kind, family in (("trees", "xgboost"), ("network", "torch"))
    }


def test_gpu_providers_are_skipped_with_the_reason_where_they_cannot_run():
    usable, skipped = usable_gpu_providers(GPU_PROVIDERS)
    assert set(usable) | set(skipped) == set(GPU_PROVIDERS)
    for provider, why in skipped.items():
        assert why.startswith("skipped: ") and provider in why
    if not HAS_CUDA:
        assert usable == []


def test_placement_counts_every_node_on_the_cpu(graphs):
    for path, inputs, _ in graphs.values():
        placed = node_placement(path, ["CPUExecutionProvider"], inputs)
        assert placed["requested"] == "CPUExecutionProvider"
        assert placed["all_on_requested"] and placed["cpu_fallback_op_types"] == []
        assert sum(placed["nodes_by_provider"].values()) >= 1


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and an NVIDIA GPU")
def test_on_cuda_tree_ops_fall_back_to_the_cpu_and_say_so(graphs):
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    network = node_placement(graphs["network"][0], providers, graphs["network"][1])
    assert network["nodes_by_provider"].get("CUDAExecutionProvider", 0) > 0
    trees = node_placement(graphs["trees"][0], providers, graphs["trees"][1])
    assert any(op.startswith("TreeEnsemble") for op in trees["cpu_fallback_op_types"]), trees
    assert not trees["all_on_requested"]
    assert np.isfinite(list(trees["nodes_by_provider"].values())).all()
