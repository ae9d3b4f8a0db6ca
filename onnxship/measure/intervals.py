"""How certain a latency figure is, and when to stop measuring (issue 11's statistics, one place).

A percentile of timing samples gets a distribution-free confidence interval from order
statistics: the number of samples below the true q-th percentile is Binomial(n, q/100), so the
r-th and s-th smallest samples, with r and s the binomial's alpha/2 and 1-alpha/2 quantiles,
bracket it with at least the stated confidence, whatever the latency distribution. Deterministic,
O(n log n). The issue asked for a bootstrap interval; on right-skewed latencies the percentile
bootstrap covered the true p99 only ~90 % of the time at a nominal 95 % with 2,000 samples (the
p99 is then the 20th largest value and resampling cannot reach beyond the sample). The
order-statistic interval kept its 95 % (tests/test_stats.py measures both), so it is used, and
`monte_carlo_interval` (the bootstrap) stays as the check.

`measure_until` and `interleaved` drive measurement: rounds of samples until each interval is
within ±`target` of its estimate or the time budget ends. Interleaving rounds (A, B, B, A, …)
lets machine noise hit every runtime alike, so their ratio means something.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

CONFIDENCE = 0.95
TARGET = 0.10  # stop once the interval is within ±10 % of the estimate


def quantile_index(n: int, q: float) -> int:
    """1-based rank of the q-th percentile among n sorted samples (nearest rank, ceil(q/100 * n))."""
    return min(n, max(1, math.ceil(q / 100 * n)))


@dataclass(frozen=True)
class Interval:
    """A percentile of samples with its order-statistic confidence interval."""

    q: float
    estimate: float
    low: float
    high: float
    n: int
    confidence: float = CONFIDENCE

    @property
    def relative_half_width(self) -> float:
        """Half the interval's width over the estimate (inf when there is no estimate or no
        interval yet)."""
        if self.estimate <= 0 or not all(map(math.isfinite, (self.estimate, self.low, self.high))):
            return math.inf
        return max(self.estimate - self.low, self.high - self.estimate) / self.estimate

    def as_dict(self) -> dict:
        return {
            f"p{self.q:g}": self.estimate,
            "ci_low": self.low,
            "ci_high": self.high,
            "ci_confidence": self.confidence,
            "n": self.n,
        }


def percentile_interval(samples: np.ndarray, q: float, confidence: float = CONFIDENCE) -> Interval:
    """The q-th percentile (nearest rank) of `samples` and its order-statistic interval. With too
    few samples the upper end is the largest sample and the interval is wide: its relative
    half-width says so."""
    from scipy.stats import binom  # here, not at the top: timing workers import this module

    x = np.sort(np.asarray(samples, dtype=float))
    n = len(x)
    if n == 0:
        return Interval(q, math.nan, math.nan, math.nan, 0, confidence)
    alpha = (1 - confidence) / 2
    # ranks (1-based) r <= s with P(r <= B < s) >= confidence, B ~ Binomial(n, q): samples below
    r = max(1, int(binom.ppf(alpha, n, q / 100)))
    s = min(n, int(binom.ppf(1 - alpha, n, q / 100)) + 1)
    return Interval(q, float(x[quantile_index(n, q) - 1]), float(x[r - 1]), float(x[s - 1]), n, confidence)


def monte_carlo_interval(
    samples: np.ndarray, q: float, confidence: float = CONFIDENCE, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """The same interval by resampling: slow, kept to check the exact one against."""
    x = np.asarray(samples, dtype=float)
    rng = np.random.default_rng(seed)
    k = quantile_index(len(x), q)
    stats = np.array([np.sort(rng.choice(x, len(x)))[k - 1] for _ in range(resamples)])
    alpha = (1 - confidence) / 2
    return float(np.quantile(stats, alpha, method="inverted_cdf")), float(
        np.quantile(stats, 1 - alpha, method="inverted_cdf")
    )


@dataclass
class Series:
    """Samples of one runtime, collected over rounds."""

    samples: list[float] = field(default_factory=list)
    rounds: int = 0
    round_p50s: list[float] = field(default_factory=list)  # each round's median

    def interval(self, q: float) -> Interval:
        return percentile_interval(np.asarray(self.samples), q)

    def add_round(self, samples: list[float]) -> None:
        self.samples.extend(samples)
        self.rounds += 1
        self.round_p50s.append(float(np.median(samples)))


# the fewest rounds whose median a [smallest, largest] interval brackets with >= 95 %
# (1 - 2 * 0.5**6 = 96.9 %); fewer rounds cannot make the statement at all
MIN_PAIRED_ROUNDS = 6


def paired_ratio_interval(numerator: list[float], denominator: list[float]) -> Interval:
    """The median of per-round ratios (numerator's round p50 / denominator's, the two timed in the
    same round) and its order-statistic interval. The samples within a round are not independent:
    on a machine whose speed changes for tens of milliseconds at a time, a whole round runs slow
    together, so an interval over all samples is narrower than the spread between runs; a ratio
    per round cancels what both runtimes of the round shared. Fewer than MIN_PAIRED_ROUNDS: an
    interval of NaNs (no statement)."""
    ratios = np.asarray(numerator, dtype=float) / np.asarray(denominator, dtype=float)
    if len(ratios) < MIN_PAIRED_ROUNDS:
        middle = float(np.median(ratios)) if len(ratios) else math.nan
        return Interval(50, middle, math.nan, math.nan, len(ratios))
    return percentile_interval(ratios, 50)


def measure_until(
    round_of_samples: Callable[[], list[float]],
    q: float = 99,
    target: float = TARGET,
    budget_s: float = 10.0,
    min_samples: int = 100,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[Series, Interval, str]:
    """Rounds until the q-th percentile's interval is within ±target, or the budget ends; returns
    the samples, the interval and why it stopped ("converged" or "budget")."""
    return interleaved({"only": round_of_samples}, q, target, budget_s, min_samples, clock)["only"]


def interleaved(
    runners: dict[str, Callable[[], list[float]]],
    q: float = 99,
    target: float = TARGET,
    budget_s: float = 10.0,
    min_samples: int = 100,
    clock: Callable[[], float] = time.perf_counter,
    min_rounds: int = 1,
    pair_with: str | None = None,
) -> dict[str, tuple[Series, Interval, str]]:
    """Rounds of every runner in turn, the order reversed each round (A B, B A, …), until every
    runner's interval is within ±target or the budget ends, either only after `min_rounds`. Runners
    that converged keep running while others have not: dropping them would let later noise hit
    the others only. With `pair_with` (a runner's name), every other runner's ratio to it, round
    by round (paired_ratio_interval), must be within ±target too."""
    series = {name: Series() for name in runners}
    names = list(runners)
    # the intervals import scipy on first use (~0.5 s): not inside the first measurement's budget,
    # which it used to spend, leaving the first batch size 2-3 rounds
    from scipy.stats import binom  # noqa: F401

    started = clock()
    while True:
        for name in names:
            series[name].add_round(runners[name]())
        names.reverse()
        intervals = {name: s.interval(q) for name, s in series.items()}
        if pair_with is not None:
            base = series[pair_with].round_p50s
            ratios = [paired_ratio_interval(base, s.round_p50s) for n, s in series.items() if n != pair_with]
        else:
            ratios = []
        enough = series[names[0]].rounds >= min_rounds  # interleaving needs rounds to mean anything
        done = (
            enough
            and all(len(s.samples) >= min_samples for s in series.values())
            and all(i.relative_half_width <= target for i in [*intervals.values(), *ratios])
        )
        spent = clock() - started >= budget_s and enough
        if done or spent:
            why = "converged" if done else "budget"
            return {name: (series[name], intervals[name], why) for name in runners}
