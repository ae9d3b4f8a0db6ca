"""tools/bench_trees.py's report logic on engines of known speed: each engine advances a fake
clock by a fixed amount, so the ratios are exact whatever else the machine runs: the ratio to
native, the best ONNX graph per batch, and by how much ONNX is behind where it is; and agreement
counted in float32. The engines it times for real need `make run`'s models."""

from __future__ import annotations

import types

import numpy as np
import pytest

from tools import bench_trees


class FakeClock:
    """bench_trees' perf_counter: time passes only inside an engine's call."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def engine(self, seconds: float):
        def call(_rows: np.ndarray) -> None:
            self.now += seconds

        return call


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(bench_trees, "time", types.SimpleNamespace(perf_counter=fake.perf_counter))
    return fake


def test_the_best_graph_and_the_gap_to_native_are_reported(monkeypatch, clock):
    monkeypatch.setattr(bench_trees, "ROUND_BUDGET_S", 1.0)
    monkeypatch.setattr(bench_trees, "CALL_BUDGET_S", 0.004)
    rows = np.zeros((4, 3), np.float32)
    engines = {"native": 0.002, "onnx_registered": 0.004, "oblivious_graph": 0.0005}
    ahead = bench_trees.timed({name: clock.engine(s) for name, s in engines.items()}, rows)
    assert ahead["best_onnx"]["engine"] == "oblivious_graph"
    assert ahead["oblivious_graph"]["speedup_vs_native"] == pytest.approx(4.0)
    assert ahead["onnx_registered"]["speedup_vs_native"] == pytest.approx(0.5)
    assert "onnx_behind_native" not in ahead
    behind = bench_trees.timed({"native": clock.engine(0.001), "onnx_registered": clock.engine(0.003)}, rows)
    assert behind["best_onnx"]["engine"] == "onnx_registered"
    assert behind["onnx_behind_native"] == pytest.approx(3.0)
    assert behind["native"]["ci_low"] <= behind["native"]["p50"] <= behind["native"]["ci_high"]
    assert behind["native"]["p50"] == pytest.approx(1.0)  # ms


def test_agreement_counts_rows_equal_in_float32():
    native = np.array([1.0, 2.0, 3.0 + 1e-9, 4.0])
    ours = np.array([1.0, 2.5, 3.0, 4.0], np.float32)
    found = bench_trees.agreement(native, ours)
    assert found == {"rows": 4, "rows_equal_float32": 3, "max_abs_diff": 0.5}
