"""tools/bench_trees.py's report logic on engines of known speed (busy-waits of fixed length): the
ratio to native, the best ONNX graph per batch, and by how much ONNX is behind where it is; and
agreement counted in float32. The engines it times for real need `make run`'s models."""

from __future__ import annotations

import time

import numpy as np

from tools import bench_trees


def busy(seconds: float):
    """A call that takes `seconds` of CPU, not sleep: sleeping threads wake late by variable amounts."""

    def call(_rows: np.ndarray) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    return call


def test_the_best_graph_and_the_gap_to_native_are_reported(monkeypatch):
    monkeypatch.setattr(bench_trees, "ROUND_BUDGET_S", 1.0)
    monkeypatch.setattr(bench_trees, "CALL_BUDGET_S", 0.004)
    rows = np.zeros((4, 3), np.float32)
    ahead = bench_trees.timed(
        {"native": busy(0.002), "onnx_registered": busy(0.004), "oblivious_graph": busy(0.0005)}, rows
    )
    assert ahead["best_onnx"]["engine"] == "oblivious_graph"
    assert ahead["oblivious_graph"]["speedup_vs_native"] > 2.5
    assert 0.3 < ahead["onnx_registered"]["speedup_vs_native"] < 0.7
    assert "onnx_behind_native" not in ahead
    behind = bench_trees.timed({"native": busy(0.001), "onnx_registered": busy(0.003)}, rows)
    assert behind["best_onnx"]["engine"] == "onnx_registered"
    assert 2.0 < behind["onnx_behind_native"] < 4.0
    assert behind["native"]["ci_low"] <= behind["native"]["p50"] <= behind["native"]["ci_high"]


def test_agreement_counts_rows_equal_in_float32():
    native = np.array([1.0, 2.0, 3.0 + 1e-9, 4.0])
    ours = np.array([1.0, 2.5, 3.0, 4.0], np.float32)
    found = bench_trees.agreement(native, ours)
    assert found == {"rows": 4, "rows_equal_float32": 3, "max_abs_diff": 0.5}
