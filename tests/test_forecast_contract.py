"""Chronos' whole forecasting contract through the exported graphs, against the library's own
`predict` on the same inputs: every horizon (fewer output patches, and beyond one call the
long-horizon rollout), multivariate targets, cross-learning, categorical covariates.

The graphs run through onnxship.forecasting, the code the server runs (tests/test_serving.py
proves /forecast answers with it). Each default-zoo forecaster is rebuilt here on a tiny
checkpoint of its family with its own `forecast:` block (covariates, horizon): its horizons are
judged at the family tolerance; Chronos-2 beyond one call at the rollout tolerance
(conf/validate/default.yaml says why it is wider).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import yaml

from onnxship import families
from onnxship.contract import ModelIO
from onnxship.forecasting.categorical import UnseenCategory
from onnxship.forecasting.rollout import forecast
from onnxship.forecasting.tasks import SeriesTask
from onnxship.runtime import OnnxModel
from tests.builders import spec_of

pytest.importorskip("chronos")

ROOT = Path(__file__).resolve().parents[1]
VALIDATE = yaml.safe_load((ROOT / "conf/validate/default.yaml").read_text())
TOLERANCE = VALIDATE["tolerance"]
ROLLOUT = VALIDATE["rollout_tolerance"]
HORIZONS = [1, 12, 24, 48, 96]


def zoo_forecasters() -> dict[str, dict]:
    zoo = yaml.safe_load((ROOT / "conf/zoo/default.yaml").read_text())["models"]
    return {name: entry for name, entry in zoo.items() if entry["family"] in ("chronos2", "chronos_bolt")}


@functools.cache
def exported(family_name: str, max_output_patches: int | None = None, covariates: tuple = ()):
    """A tiny checkpoint of the family, its spec and its graph in ONNX Runtime. Chronos-2 with
    max_output_patches 2 answers 32 steps a call, so 48 and 96 roll forward."""
    from onnxship.chronos import checkpoints

    family = families.get(family_name)
    if family_name == "chronos2":
        est = checkpoints.chronos2(
            "tiny", context_length=256, max_output_patches=max_output_patches or 64, seed=1
        )
    else:
        est = checkpoints.chronos_bolt("tiny", context_length=256, prediction_length=32, seed=1)
    spec = spec_of(est, 24, covariates, context_length=200)  # within one call of every checkpoint here
    model = OnnxModel(family.to_onnx(est, ModelIO.forecast(spec), 17).SerializeToString())
    return family, est, spec, model


def run_of(model: OnnxModel):
    return lambda feed: model.run_feed(feed)[0]


def series(rng, length: int, variates: int = 1) -> np.ndarray:
    t = np.arange(length)
    out = 5 + np.sin(2 * np.pi * t / 24)[None] + rng.normal(0, 0.3, (variates, length))
    return out.astype(np.float32)


def assert_like_library(native: list[np.ndarray], served: list[np.ndarray], tolerance: dict) -> None:
    """Each series within atol + rtol * (its largest |quantile|), the validate stage's rule."""
    assert len(native) == len(served)
    for i, (a, b) in enumerate(zip(native, served, strict=True)):
        assert a.shape == b.shape, (i, a.shape, b.shape)
        bound = tolerance["atol"] + tolerance["rtol"] * float(np.abs(a).max())
        assert float(np.abs(a - b).max()) <= bound, (i, float(np.abs(a - b).max()), bound)


def tasks_like(entry: dict, rng, horizon: int, lengths=(150, 90, 200)) -> list[SeriesTask]:
    """Series with the zoo entry's covariates (numbers, known ahead where it says)."""
    names = entry.get("forecast", {}).get("covariates") or []
    tasks = []
    for length in lengths:
        target = series(rng, length)
        target[0, length // 3 : length // 3 + 4] = np.nan  # a hole
        past = {n: series(rng, length)[0] for n in names}
        future = {n: series(rng, horizon)[0] for n in names}
        tasks.append(SeriesTask(target, past, future))
    return tasks


@pytest.mark.parametrize("horizon", HORIZONS)
@pytest.mark.parametrize("name", sorted(zoo_forecasters()))
def test_each_zoo_forecaster_answers_every_horizon_like_the_library(name, horizon):
    entry = zoo_forecasters()[name]
    covariates = tuple((c, True) for c in entry.get("forecast", {}).get("covariates") or [])
    family, est, spec, model = exported(entry["family"], covariates=covariates)
    tasks = tasks_like(entry, np.random.default_rng(horizon), horizon)
    native = family.predict_tasks(est, tasks, horizon)
    served = forecast(run_of(model), spec, tasks, horizon)
    assert served[0].shape == (1, horizon, len(spec.quantile_levels))
    assert_like_library(native, served, TOLERANCE[entry["family"]])


@pytest.mark.parametrize("horizon", [20, 32, 33, 48, 96])
def test_chronos2_beyond_one_call_rolls_forward_like_the_library(horizon):
    family, est, spec, model = exported("chronos2", max_output_patches=2)
    assert spec.graph.native_horizon == 32
    rng = np.random.default_rng(horizon)
    # a known future far from the past: the rollout must carry it into the context (as the
    # library slides it in), not the model's forecast of it
    tasks = [
        SeriesTask(
            series(rng, n),
            {"temp": series(rng, n)[0], "load": series(rng, n)[0]},
            {"temp": 3 * series(rng, horizon)[0]},
        )
        for n in (120, 80)
    ]
    native = family.predict_tasks(est, tasks, horizon)
    served = forecast(run_of(model), spec, tasks, horizon)
    tolerance = ROLLOUT if horizon > 32 else TOLERANCE["chronos2"]
    assert_like_library(native, served, tolerance)


def test_chronos_bolt_beyond_one_call_rolls_forward_like_the_library():
    family, est, spec, model = exported("chronos_bolt")
    assert spec.graph.native_horizon == 32
    rng = np.random.default_rng(0)
    tasks = [SeriesTask(series(rng, n)) for n in (150, 60)]
    for horizon in (33, 64, 100):
        native = family.predict_tasks(est, tasks, horizon)
        assert_like_library(native, forecast(run_of(model), spec, tasks, horizon), TOLERANCE["chronos_bolt"])


@pytest.mark.parametrize("horizon", [24, 96])
def test_multivariate_targets_are_forecast_jointly_like_the_library(horizon):
    family, est, spec, model = exported("chronos2", max_output_patches=2)
    rng = np.random.default_rng(7)
    tasks = [SeriesTask(series(rng, 100, variates=3)), SeriesTask(series(rng, 70, variates=3))]
    native = family.predict_tasks(est, tasks, horizon)
    served = forecast(run_of(model), spec, tasks, horizon)
    assert served[0].shape == (3, horizon, len(spec.quantile_levels))
    assert_like_library(native, served, ROLLOUT if horizon > 32 else TOLERANCE["chronos2"])
    # jointly: a variate's forecast depends on the others (the same variate alone differs)
    alone = forecast(run_of(model), spec, [SeriesTask(tasks[0].target[:1])], horizon)[0]
    assert float(np.abs(alone[0] - served[0][0]).max()) > 1e-4


@pytest.mark.parametrize("horizon", [24, 96])
def test_cross_learning_lets_series_inform_each_other_like_the_library(horizon):
    family, est, spec, model = exported("chronos2", max_output_patches=2)
    rng = np.random.default_rng(11)
    tasks = [SeriesTask(series(rng, n)) for n in (100, 64, 130, 90)]
    crossed = forecast(run_of(model), spec, tasks, horizon, cross_learning=True)
    tolerance = ROLLOUT if horizon > 32 else TOLERANCE["chronos2"]
    assert_like_library(family.predict_tasks(est, tasks, horizon, cross_learning=True), crossed, tolerance)
    apart = forecast(run_of(model), spec, tasks, horizon)
    assert_like_library(family.predict_tasks(est, tasks, horizon), apart, tolerance)
    assert max(float(np.abs(a - b).max()) for a, b in zip(crossed, apart, strict=True)) > 1e-4
    # without the flag, a series answers in a batch exactly as alone
    for task, in_batch in zip(tasks, apart, strict=True):
        alone = forecast(run_of(model), spec, [task], horizon)[0]
        assert_like_library([alone], [in_batch], tolerance)


def categorical_tasks(rng, horizon: int, variates: int = 1) -> list[SeriesTask]:
    """A known-future categorical day type, a past-only categorical flag (with gaps), a number."""
    tasks = []
    for length in (96, 120):
        day = np.array(rng.choice(["weekday", "weekend", "holiday"], size=length), dtype=object)
        flag = np.array(rng.choice(["on", "off", None], size=length), dtype=object)
        future_day = np.array(rng.choice(["weekday", "weekend"], size=horizon), dtype=object)
        target = series(rng, length, variates)
        target[:, day == "weekend"] += 2.0  # the category matters
        temp = series(rng, length)[0]
        tasks.append(
            SeriesTask(
                target,
                {"day": day, "flag": flag, "temp": temp},
                {"day": future_day, "temp": series(rng, horizon)[0]},
            )
        )
    return tasks


@pytest.mark.parametrize("variates", [1, 2])  # 1: target encoding; 2: the library's ordinal codes
def test_categorical_covariates_are_encoded_like_the_library(variates):
    family, est, spec, model = exported("chronos2")
    rng = np.random.default_rng(variates)
    tasks = categorical_tasks(rng, 24, variates)
    native = family.predict_tasks(est, tasks, 24)
    served = forecast(run_of(model), spec, tasks, 24)
    assert_like_library(native, served, TOLERANCE["chronos2"])
    # the categories reach the model: other future day types move the forecast
    moved = [
        SeriesTask(t.target, t.past, t.future | {"day": np.array(["holiday"] * 24, dtype=object)})
        for t in tasks
    ]
    shifted = forecast(run_of(model), spec, moved, 24)
    assert_like_library(family.predict_tasks(est, moved, 24), shifted, TOLERANCE["chronos2"])
    assert float(np.abs(shifted[0] - served[0]).max()) > 1e-4


@pytest.mark.parametrize("variates", [1, 2])
def test_the_rows_are_the_librarys_prepared_inputs_bit_for_bit(variates):
    """Targets, covariate rows in the library's order, categorical encodings (target or ordinal):
    the same float32 bits as chronos.chronos2.preprocess gives for the same dict inputs."""
    from chronos.chronos2.preprocess import from_list_of_dicts

    from onnxship.forecasting.tasks import prepared

    tasks = categorical_tasks(np.random.default_rng(5), 16, variates)
    items = [
        {
            "target": t.target if variates > 1 else t.target[0],
            "past_covariates": t.past,
            "future_covariates": t.future,
        }
        for t in tasks
    ]
    library = from_list_of_dicts(items, prediction_length=16)
    for (context, future, n_targets), theirs in zip(prepared(tasks, 16), library, strict=True):
        assert n_targets == theirs["n_targets"] == variates
        np.testing.assert_array_equal(context, theirs["context"].numpy())
        np.testing.assert_array_equal(future, theirs["future_covariates"].numpy())


def test_strings_that_differ_only_in_trailing_nuls_are_other_categories():
    """pandas keeps "a" and "a\\x00" apart; so must the encoding (NumPy's fixed-width strings would not)."""
    from chronos.chronos2.preprocess import from_list_of_dicts

    from onnxship.forecasting.tasks import prepared

    past = np.array(["a", "a\x00", "a", "b"], dtype=object)
    task = SeriesTask(
        np.array([[1.0, 10.0, 3.0, 4.0]], np.float32),
        {"kind": past},
        {"kind": np.array(["b", "a\x00"], dtype=object)},
    )
    ((context, future, _),) = prepared([task], 2)
    (theirs,) = from_list_of_dicts(
        [{"target": task.target[0], "past_covariates": task.past, "future_covariates": task.future}], 2
    )
    np.testing.assert_array_equal(context, theirs["context"].numpy())
    np.testing.assert_array_equal(future, theirs["future_covariates"].numpy())


def test_graph_calls_hold_whole_groups_within_the_row_limit():
    """Series are forecast in calls of at most call_rows rows (group attention costs rows squared),
    without changing an answer; a cross-learning group that cannot fit one call is refused."""
    from onnxship.forecasting.rollout import TooManyJointRows

    _, _, spec, model = exported("chronos2", max_output_patches=2)
    rng = np.random.default_rng(2)
    tasks = [SeriesTask(series(rng, n, variates=2)) for n in (40, 50, 60, 70, 80)]
    calls = []

    def counted(feed):
        calls.append(len(feed["context"]))
        return model.run_feed(feed)[0]

    for horizon, limit in ((20, 6), (48, 18)):  # one call's horizon; a rollout (9 paths per row)
        whole = forecast(run_of(model), spec, tasks, horizon)
        calls.clear()
        chunked = forecast(counted, spec, tasks, horizon, call_rows=limit)
        assert max(calls) <= limit and len(calls) >= 2
        assert_like_library(whole, chunked, ROLLOUT)
    with pytest.raises(TooManyJointRows):  # 10 rows learn from each other: 90 with their paths
        forecast(run_of(model), spec, tasks, 48, cross_learning=True, call_rows=18)


def test_a_known_covariate_without_future_values_is_the_librarys_none():
    """Known ahead but not given (the library's `None`): a NaN future row, in the known-future
    place of the row order, numeric or categorical."""
    family, est, spec, model = exported("chronos2")
    tasks = categorical_tasks(np.random.default_rng(9), 24)
    for task in tasks:
        task.future = {"day": None, "temp": None}
    served = forecast(run_of(model), spec, tasks, 24)
    assert_like_library(family.predict_tasks(est, tasks, 24), served, TOLERANCE["chronos2"])


def test_a_future_category_no_past_value_has_is_refused_naming_it():
    _, _, spec, model = exported("chronos2")
    tasks = categorical_tasks(np.random.default_rng(0), 12)
    tasks[1].future["day"] = np.array(["weekday"] * 5 + ["strike"] + ["weekday"] * 6, dtype=object)
    with pytest.raises(UnseenCategory) as raised:
        forecast(run_of(model), spec, tasks, 12)
    assert raised.value.args == (1, 5, "day")
