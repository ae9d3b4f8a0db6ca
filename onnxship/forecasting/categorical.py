"""Categorical covariates (strings) encoded to numbers as chronos.chronos2.preprocess encodes
them for one `predict` call: the categories are those of every series' past values in the call,
sorted; a missing value is a category of its own. With one target per series, each value becomes
the series' smoothed mean target for its category (target encoding); with several, its
category's index (ordinal).

A future value never seen in any past value of the call is refused here (UnseenCategory): the
library would fall back to the series' mean target (or NaN, ordinal), a forecast built on a value
the model cannot know.
"""

from __future__ import annotations

import numpy as np

SMOOTH = 1.0  # the library's default smoothing of the target encoding


class UnseenCategory(ValueError):
    """A known-future value that no past value of the request has; args: (task index, step)."""


def categories(pasts: list[np.ndarray]) -> list[str]:
    """The distinct non-missing values of one covariate across the call, sorted as pandas sorts
    a categorical's strings (Python's order; NumPy's fixed-width strings would drop trailing NULs)."""
    return sorted({v for past in pasts for v in past if v is not None})


def codes(values: np.ndarray, known: list[str]) -> np.ndarray:
    """Index of each value among `known`; missing -> len(known) (its own slot); unseen -> -1."""
    index = {v: i for i, v in enumerate(known)}
    return np.array([len(known) if v is None else index.get(v, -1) for v in values], dtype=np.intp)


def target_encode(
    past_codes: list[np.ndarray], targets: list[np.ndarray], future_codes: list[np.ndarray | None], slots: int
) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Per series: (smooth * series mean + sum of its targets in the category) / (smooth + count),
    computed as the library does (bincount in float64, then float32)."""
    past_out, future_out = [], []
    for codes_, target, future in zip(past_codes, targets, future_codes, strict=True):
        observed = np.isfinite(target)
        values = np.where(observed, target, 0.0)
        one = np.zeros(len(target), dtype=np.intp)  # the library's per-series bincount, one series
        total = np.bincount(one, weights=values * observed, minlength=1)
        count = np.bincount(one, weights=observed.astype(float), minlength=1)
        mean = np.divide(total, count, out=np.zeros(1), where=count > 0)
        sums = np.bincount(codes_, weights=values * observed, minlength=slots)
        counts = np.bincount(codes_, weights=observed.astype(float), minlength=slots)
        lookup = (SMOOTH * np.repeat(mean, slots) + sums) / (SMOOTH + counts)
        past_out.append(lookup[codes_].astype(np.float32))
        future_out.append(None if future is None else lookup[future].astype(np.float32))
    return past_out, future_out


def encode(
    pasts: list[np.ndarray], futures: list[np.ndarray | None], targets: list[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """One categorical covariate over every series of a call: float32 (past, future) per series.
    `targets` are each series' one target row, or empty arrays when series have several targets
    (ordinal encoding)."""
    known = categories(pasts)
    past_codes = [codes(p, known) for p in pasts]
    future_codes = [None if f is None else codes(f, known) for f in futures]
    for task, future in enumerate(future_codes):
        if future is not None and (future < 0).any():
            raise UnseenCategory(task, int(np.argmax(future < 0)))
    if all(t.size for t in targets):
        # the library's slots: the categories, the missing one, and one for unseen values
        return target_encode(past_codes, targets, future_codes, len(known) + 2)
    as_float = [c.astype(np.float32) for c in past_codes]
    return as_float, [None if f is None else f.astype(np.float32) for f in future_codes]
