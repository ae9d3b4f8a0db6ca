"""Chronos-2 and Chronos-Bolt through the export-time patches and the forecast graph, on tiny
checkpoints built with the library's own classes (random weights, seeded).

Proven here: the patches change no PyTorch output (bit for bit) and are undone after; the graph
answers like the library's own `predict` at other batch sizes and context lengths than it was
exported at, with NaN holes, for each covariate pattern; save_pretrained / from_pretrained
round-trips; and exporting twice gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from onnxship import families
from onnxship.contract import CONTEXT, FUTURE, ForecastSpec, ModelIO
from onnxship.forecasting.rollout import forecast_windows
from onnxship.runtime import OnnxModel
from tests.builders import feed, pipeline, spec_of

torch = pytest.importorskip("torch")
pytest.importorskip("chronos")

FAMILIES = ["chronos2", "chronos_bolt"]
# covariate patterns: none; past-only ("load"); known future ("temperature") beside a past-only one
PATTERNS = {
    "none": (),
    "past_only": (("load", False),),
    "known_future": (("temperature", True), ("load", False)),
}


def export(family, est, spec: ForecastSpec) -> OnnxModel:
    model = family.to_onnx(est, ModelIO.forecast(spec), 17)
    return OnnxModel(model.SerializeToString())


def served(model: OnnxModel, spec: ForecastSpec, windows: dict, horizon: int | None = None) -> np.ndarray:
    """[n, horizon, Q]: the windows through the graph as the server forecasts them."""
    return forecast_windows(lambda feed: model.run_feed(feed)[0], spec, windows, horizon)


@pytest.mark.parametrize("name", FAMILIES)
def test_patches_change_no_pytorch_output_and_are_undone(name):
    from chronos.chronos_bolt import InstanceNorm, Patch

    from onnxship.chronos.patches import export_patches

    family, est = pipeline(name)
    covariates = PATTERNS["known_future"] if name == "chronos2" else ()
    spec = spec_of(est, 20, covariates)
    windows = feed(spec, 3, 70)
    graph_feed = spec.graph_feed(windows)
    inputs = [torch.from_numpy(graph_feed[n]) for n in spec.input_names]
    graph = family.graph(est, spec).eval()
    originals = (InstanceNorm.forward, Patch.forward, type(est.model.shared).forward)
    with torch.no_grad():
        before = graph(*inputs)
        with export_patches(est.model):
            assert InstanceNorm.forward is not originals[0]
            patched = graph(*inputs)
        after = graph(*inputs)
    assert torch.equal(before, patched) and torch.equal(before, after)
    assert (InstanceNorm.forward, Patch.forward) == originals[:2]
    assert "forward" not in vars(est.model.shared)  # the instance patch is gone too
    # the graph is the library's predict: same quantiles as the native pipeline call
    native = family.forecast(est, windows, spec)
    np.testing.assert_allclose(spec.window_quantiles(windows, before.numpy()), native, rtol=1e-5, atol=1e-4)


CASES = [("chronos_bolt", "none")] + [("chronos2", p) for p in PATTERNS]


@pytest.mark.parametrize(("name", "pattern"), CASES)
def test_graph_answers_like_the_library_at_other_batches_and_lengths(name, pattern):
    family, est = pipeline(name)
    spec = spec_of(est, 24, PATTERNS[pattern])
    model = export(family, est, spec)
    assert model.input_shape == [None]  # the context length stays dynamic
    for batch, length in ((1, 17), (4, 70), (3, 300)):  # 300 > the checkpoint's context (256)
        inputs = feed(spec, batch, length, seed=length)
        got = served(model, spec, inputs)
        native = family.forecast(est, inputs, spec)
        assert got.shape == (batch, 24, len(spec.quantile_levels))
        scale = np.nanstd(inputs[CONTEXT])
        assert np.abs(got - native).max() <= 1e-4 * scale + 1e-5, (batch, length)


def test_known_future_covariates_change_the_forecast():
    """The covariate rows reach the model: a different known future moves the target's forecast."""
    family, est = pipeline("chronos2")
    spec = spec_of(est, 16, PATTERNS["known_future"])
    model = export(family, est, spec)
    inputs = feed(spec, 2, 64)
    base = served(model, spec, inputs)
    inputs[FUTURE][:, :, 0] += 10.0
    moved = served(model, spec, inputs)
    assert np.abs(moved - base).max() > 1e-3
    np.testing.assert_allclose(moved, family.forecast(est, inputs, spec), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
def test_checkpoint_round_trip_and_export_bytes(name, tmp_path: Path):
    family, est = pipeline(name)
    family.save(est, tmp_path / family.native_file)
    loaded = family.load_checked(tmp_path / family.native_file, "forecast")
    spec = spec_of(est, 16)
    inputs = feed(spec, 2, 50)
    np.testing.assert_array_equal(family.forecast(est, inputs, spec), family.forecast(loaded, inputs, spec))
    first = family.to_onnx(loaded, ModelIO.forecast(spec), 17).SerializeToString()
    assert first == family.to_onnx(loaded, ModelIO.forecast(spec), 17).SerializeToString()
    # DVC compares outputs by content: building the same checkpoint again saves the same bytes
    family.save(pipeline(name)[1], tmp_path / "again")
    for path in sorted((tmp_path / family.native_file).iterdir()):
        assert path.read_bytes() == (tmp_path / "again" / path.name).read_bytes(), path.name


def test_a_checkpoint_of_the_other_kind_is_refused(tmp_path: Path):
    from onnxship.errors import ModelLoadError

    bolt, est = pipeline("chronos_bolt")
    bolt.save(est, tmp_path / "ckpt")
    with pytest.raises(ModelLoadError, match="not a Chronos2Pipeline"):
        families.get("chronos2").load_checked(tmp_path / "ckpt", "forecast")
