"""The statistics behind every latency figure, proved against known distributions: the exact
bootstrap interval of a percentile agrees with resampling, covers the true percentile about as
often as it claims, narrows as samples grow; measurement stops when the interval is tight or the
budget ends; interleaving lets drift hit every runtime alike."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import lognorm

from onnxship.measure.intervals import interleaved, measure_until, monte_carlo_interval, percentile_interval

LATENCY = lognorm(s=0.5, scale=1.0)  # right-skewed, like request latencies


def coverage(interval_of, q: float, trials: int = 400, n: int = 2000) -> float:
    truth = LATENCY.ppf(q / 100)
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(trials):
        low, high = interval_of(LATENCY.rvs(size=n, random_state=rng), q)
        hits += low <= truth <= high
    return hits / trials


def order_statistic(x, q):
    i = percentile_interval(x, q)
    assert i.low <= i.estimate <= i.high
    return i.low, i.high


@pytest.mark.parametrize("q", [50, 99])
def test_the_interval_covers_the_true_percentile_at_least_as_often_as_it_claims(q):
    assert 0.94 <= coverage(order_statistic, q) <= 0.995


def test_the_bootstrap_would_have_covered_the_p99_less_often():
    """Why the order-statistic interval and not the bootstrap the issue named: at p99 the
    percentile bootstrap falls short of its 95 %."""
    bootstrap = coverage(lambda x, q: monte_carlo_interval(x, q, resamples=300), 99, trials=120)
    assert bootstrap < 0.94 <= coverage(order_statistic, 99, trials=120)


def test_at_the_median_both_methods_agree():
    x = LATENCY.rvs(size=800, random_state=1)
    exact = percentile_interval(x, 50)
    low, high = monte_carlo_interval(x, 50, resamples=2000)
    width = exact.high - exact.low
    assert abs(exact.low - low) <= 0.25 * width and abs(exact.high - high) <= 0.25 * width


def test_more_samples_give_a_narrower_interval_and_the_figure_says_how_many():
    rng = np.random.default_rng(3)
    small = percentile_interval(LATENCY.rvs(size=200, random_state=rng), 99)
    large = percentile_interval(LATENCY.rvs(size=20_000, random_state=rng), 99)
    assert large.relative_half_width < small.relative_half_width / 3
    assert large.as_dict()["n"] == 20_000 and set(large.as_dict()) >= {"p99", "ci_low", "ci_high"}


def fake_clock():
    """A clock that advances one second per call: budgets count rounds, not wall time."""
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0
        return now[0]

    return clock


def test_measurement_stops_when_the_interval_is_tight_or_the_budget_ends():
    rng = np.random.default_rng(5)
    steady, interval, why = measure_until(
        lambda: list(rng.normal(1.0, 0.01, 200)), budget_s=100, clock=fake_clock()
    )
    assert why == "converged" and interval.relative_half_width <= 0.10 and steady.rounds < 5
    wild, interval, why = measure_until(
        lambda: list(rng.pareto(1.1, 50) + 1), target=0.01, budget_s=10, clock=fake_clock()
    )
    assert why == "budget" and interval.relative_half_width > 0.01 and wild.rounds <= 10


def test_interleaving_lets_drift_hit_both_runtimes_alike():
    """The machine slows down 3x over the run. Timed one after the other, A (the faster runtime,
    measured first) would look far faster than it is; interleaved, the ratio stays near 2."""
    rng = np.random.default_rng(11)
    t = [0]

    def runner(base: float):
        def run() -> list[float]:
            t[0] += 1
            slowdown = 1 + 2 * min(t[0], 40) / 40
            return list(base * slowdown * rng.lognormal(0, 0.05, 50))

        return run

    result = interleaved(
        {"a": runner(1.0), "b": runner(2.0)}, q=50, target=0.0, budget_s=40, clock=fake_clock()
    )
    ratio = result["b"][1].estimate / result["a"][1].estimate
    assert 1.8 < ratio < 2.2, ratio
    assert result["a"][0].rounds == result["b"][0].rounds
