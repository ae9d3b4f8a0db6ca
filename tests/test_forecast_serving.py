"""POST /forecast over a real server, against the library's own `predict` on the same inputs:
the served tiny Chronos-2 at every horizon, multivariate series and cross-learning batches,
categorical covariates; and the bad inputs of this contract, each a 422 naming the field, never
echoing it. (tests/test_forecast_contract.py proves the same contract graph-side, per zoo model.)
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from onnxship.contract import ForecastSpec
from serving.http.forecasting import parse
from tests.served import chronos_metadata, tiny_chronos2

pytestmark = pytest.mark.e2e

FAMILY, EST, SPEC = tiny_chronos2()
OPEN = ForecastSpec.from_metadata(chronos_metadata(EST, covariates=[]))  # served as chronos2_open
LEVELS = [float(q) for q in EST.quantiles]
TOLERANCE = {"atol": 1.0e-4, "rtol": 1.0e-5}  # conf/validate/default.yaml, chronos2


def numbers(rng, n: int, level: float = 5.0) -> list[float]:
    return (level + np.sin(np.arange(n) / 4) + rng.normal(0, 0.2, n)).round(3).tolist()


def served_quantiles(body: dict, multivariate: bool = False) -> np.ndarray:
    """[n_variates, horizon, levels] from one series' answer."""
    table = np.asarray([body["quantiles"][str(q)] for q in LEVELS], dtype=np.float64)
    table = table if multivariate else table[:, None, :]
    return table.transpose(1, 2, 0)


def assert_like_library(native: np.ndarray, served: np.ndarray) -> None:
    assert native.shape == served.shape
    bound = TOLERANCE["atol"] + TOLERANCE["rtol"] * float(np.abs(native).max())
    assert float(np.abs(native - served).max()) <= bound


def post(server: dict, request: dict) -> dict:
    r = httpx.post(f"{server['url']}/forecast", json=request, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("horizon", [1, 12, 24, 48, 96])
def test_each_horizon_answers_like_predict_at_that_horizon(server, horizon):
    """Not the first steps of one longer forecast: Chronos-2 forecasts fewer output patches for a
    shorter horizon, and that changes every step."""
    rng = np.random.default_rng(horizon)
    request = {
        "model": "chronos2",
        "context": numbers(rng, 60),
        "horizon": horizon,
        "past_covariates": {"temperature": numbers(rng, 60, 20), "workday": [1.0, 0.0] * 30},
        "future_covariates": {"temperature": numbers(rng, horizon, 20)},
    }
    body = post(server, request)
    assert body["horizon"] == horizon and body["quantile_levels"] == LEVELS
    native = FAMILY.predict_tasks(EST, parse(SPEC, request, 100).tasks, horizon)[0]
    assert_like_library(native, served_quantiles(body))


@pytest.mark.parametrize("cross_learning", [False, True])
def test_multivariate_batches_answer_like_predict_with_and_without_cross_learning(server, cross_learning):
    rng = np.random.default_rng(3)
    series = [{"context": [numbers(rng, n), numbers(rng, n, 2.0)]} for n in (40, 64, 52)]
    request = {"model": "chronos2_open", "series": series, "horizon": 20, "cross_learning": cross_learning}
    body = post(server, request)
    assert body["cross_learning"] is cross_learning and len(body["forecasts"]) == 3
    ask = parse(OPEN, request, 100)
    native = FAMILY.predict_tasks(EST, ask.tasks, 20, cross_learning=cross_learning)
    for expected, answer in zip(native, body["forecasts"], strict=True):
        assert_like_library(expected, served_quantiles(answer, multivariate=True))
    if cross_learning:  # the series did inform each other: the answer differs from the separate one
        apart = FAMILY.predict_tasks(EST, ask.tasks, 20)
        assert max(float(np.abs(a - b).max()) for a, b in zip(apart, native, strict=True)) > 1e-4


def test_categorical_covariates_answer_like_predict_with_dict_inputs(server):
    rng = np.random.default_rng(4)
    day = rng.choice(["weekday", "weekend", "holiday"], size=60).tolist()
    flag = [None if i % 7 == 0 else ("on" if i % 3 else "off") for i in range(60)]
    request = {
        "model": "chronos2_open",
        "context": numbers(rng, 60),
        "horizon": 16,
        "past_covariates": {"day": day, "flag": flag, "temperature": numbers(rng, 60, 20)},
        "future_covariates": {"day": rng.choice(["weekday", "weekend"], size=16).tolist()},
    }
    body = post(server, request)
    native = FAMILY.predict_tasks(EST, parse(OPEN, request, 100).tasks, 16)[0]
    assert_like_library(native, served_quantiles(body))


GOOD = {"model": "chronos2_open", "context": [17.25, 18.5, 19.75, 18.25], "horizon": 2}
SECRET = "<b>17.25</b>"  # a covariate name and value no error may repeat


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: {**b, "horizon": 0}, "horizon: must be an integer from 1 to 4096"),
        (lambda b: {**b, "horizon": 10**6}, "horizon: must be an integer from 1 to 4096"),
        (lambda b: {**b, "context": [[1.0, 2.0], [1.0]]}, "context: variates of different lengths (ragged)"),
        (
            lambda b: {
                "model": "chronos2_open",
                "series": [{"context": [[1.0, 2.0], [3.0, 4.0]]}, {"context": [1.0, 2.0]}],
            },
            "series[1].context: 1 variates, series[0] has 2",
        ),
        (
            lambda b: {**b, "model": "toy_forecaster", "context": [[1.0], [2.0]]},
            "this model forecasts one variate per series",
        ),
        (
            lambda b: {
                **b,
                "past_covariates": {SECRET: ["a", "b", "a", "b"]},
                "future_covariates": {SECRET: ["a", "c"]},
            },
            "future_covariates[0][1]: a category that no past value of this request has",
        ),
        (
            lambda b: {**b, "past_covariates": {SECRET: ["a", 1.5, "a", "b"]}},
            "past_covariates[0][1]: a categorical covariate takes strings or null only",
        ),
        (
            lambda b: {
                **b,
                "past_covariates": {SECRET: [1.0, 2.0, 3.0, 4.0]},
                "future_covariates": {SECRET: ["x", "y"]},
            },
            "future_covariates[0]: strings in one of past and future, numbers in the other",
        ),
        (
            lambda b: {**b, "future_covariates": {SECRET: [1.0, 2.0]}},
            "future_covariates: 1 name(s) with no past values",
        ),
        (lambda b: {**b, "cross_learning": True}, "cross_learning: needs a batch of series"),
        (
            lambda b: {
                **b,
                "model": "chronos_bolt_zero_shot",
                "series": [{"context": [1.0]}],
                "context": None,
                "cross_learning": True,
            },
            "cross_learning: this model forecasts each series on its own",
        ),
        (
            lambda b: {**b, "series": [{"context": [1.0]}]},
            "give `context` (one series) or `series` (a batch), not both",
        ),
        (
            lambda b: {
                "model": "chronos2_open",
                "series": [{"context": [1.0]}],
                "past_covariates": {SECRET: [1.0]},
            },
            "past_covariates: with `series`, each series gives its own",
        ),
        (
            lambda b: {"model": "chronos2_open", "series": [{"context": [1.0, 2.0]}] * 20, "horizon": 4096},
            "horizon: the answer would hold more than 1000000 numbers",
        ),
    ],
)
def test_bad_forecast_input_is_named_never_echoed(server, change, message):
    r = httpx.post(f"{server['url']}/forecast", json=change(GOOD), timeout=60)
    assert r.status_code == 422, r.text
    assert message in r.json()["error"], r.json()["error"]
    assert "17.25" not in r.text and "<b>" not in r.text


def test_a_cross_learning_group_beyond_one_call_is_refused_by_name():
    """Series that learn from each other share one graph call (9 rollout paths each beyond one
    call's horizon): a group beyond max_call_rows is a 422, before any graph runs."""
    from serving.http.forecasting import run
    from serving.http.values import InvalidInput

    request = {"series": [{"context": [1.0, 2.0]}] * 3, "horizon": 1100, "cross_learning": True}
    ask = parse(OPEN, request, 100)
    with pytest.raises(
        InvalidInput, match=r"cross_learning: 3 rows learn jointly, at most 2 \(18 per call, 9 paths"
    ):
        run(OPEN, lambda feed: pytest.fail("a graph ran"), ask, call_rows=18)
