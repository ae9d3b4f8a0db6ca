"""Does the candidate answer a live request like the champion? Judged the way validate judges a
variant against native (onnxship/parity), with the champion's answer as the reference and the
candidate version's own tolerances (its metadata's `tolerance`):

- feature rows: a row agrees when every prediction (regressors) or probability (classifiers) is
  within atol + rtol * |champion|, and a classifier's labels agree;
- forecasts: a series agrees when every quantile is within atol + rtol * the series' largest
  |quantile| (float32 rounding scales with the window, not with each value).

Compared on the answers clients get (JSON values), so two versions with other feature orders,
other contexts or other quantile grids are still compared on what they would have said.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxship.parity.forecasts import compare_quantiles
from onnxship.parity.rows import row_diff

DEFAULT_TOLERANCE = {"atol": 1.0e-4, "rtol": 1.0e-5}  # conf/validate's default, for a version without one


@dataclass(frozen=True)
class Agreement:
    rows: int  # rows (or series) in the request
    rows_within: int  # of them, within tolerance
    labels_agree: int | None  # classifiers: rows whose labels agree
    max_abs_diff: float
    max_rel_diff: float
    why: str | None = None  # a reason the answers could not be compared value by value

    @property
    def within(self) -> bool:
        labels = self.labels_agree is None or self.labels_agree == self.rows
        return self.why is None and self.rows_within == self.rows and labels


def tolerance_of(metadata: dict[str, Any]) -> tuple[float, float]:
    found = metadata.get("tolerance")
    tolerance = found if isinstance(found, dict) else DEFAULT_TOLERANCE
    return float(tolerance.get("atol", DEFAULT_TOLERANCE["atol"])), float(
        tolerance.get("rtol", DEFAULT_TOLERANCE["rtol"])
    )


def disagreement(rows: int, why: str) -> Agreement:
    return Agreement(rows, 0, None, float("inf"), float("inf"), why)


def _within_rows(a: np.ndarray, b: np.ndarray, atol: float, rtol: float) -> tuple[int, float, float]:
    diff = row_diff(a, b)
    scale = np.abs(np.where(np.isfinite(a), a, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(diff == 0, 0.0, diff / np.maximum(scale, 1e-12))
    within = (diff <= atol + rtol * scale).all(axis=1)
    return int(within.sum()), float(diff.max(initial=0.0)), float(rel.max(initial=0.0))


def rows_agreement(champion: dict, candidate: dict, atol: float, rtol: float) -> Agreement:
    """Two /predict(/batch) answers ({"predictions"} or {"labels", "probabilities"}) of one request."""
    if "predictions" in champion:
        if "predictions" not in candidate:
            return disagreement(len(champion["predictions"]), "the candidate is a classifier")
        a = np.asarray(champion["predictions"], dtype=np.float64).reshape(-1, 1)
        b = np.asarray(candidate["predictions"], dtype=np.float64).reshape(-1, 1)
        within, max_abs, max_rel = _within_rows(a, b, atol, rtol)
        return Agreement(len(a), within, None, max_abs, max_rel)
    rows = len(champion["labels"])
    classes = list(champion["probabilities"][0]) if rows else []
    if "labels" not in candidate or (rows and list(candidate["probabilities"][0]) != classes):
        return disagreement(rows, "the candidate has other classes")
    a = np.array([[p[c] for c in classes] for p in champion["probabilities"]], dtype=np.float64)
    b = np.array([[p[c] for c in classes] for p in candidate["probabilities"]], dtype=np.float64)
    within, max_abs, max_rel = _within_rows(a.reshape(rows, -1), b.reshape(rows, -1), atol, rtol)
    labels = sum(x == y for x, y in zip(champion["labels"], candidate["labels"], strict=True))
    return Agreement(rows, within, labels, max_abs, max_rel)


def _series(answer: dict) -> list[dict]:
    return answer.get("forecasts", [answer])


def forecast_agreement(champion: dict, candidate: dict, atol: float, rtol: float) -> Agreement:
    """Two /forecast answers of one request: every series, every level asked for."""
    ours, theirs = _series(champion), _series(candidate)
    levels = list(ours[0]["quantiles"]) if ours else []
    if len(theirs) != len(ours) or any(list(t["quantiles"]) != levels for t in theirs):
        return disagreement(len(ours), "the candidate answered other series or levels")
    within, max_abs, max_rel = 0, 0.0, 0.0
    for mine, other in zip(ours, theirs, strict=True):
        a = np.asarray([mine["quantiles"][q] for q in levels], dtype=np.float64)
        b = np.asarray([other["quantiles"][q] for q in levels], dtype=np.float64)
        if a.shape != b.shape:
            return disagreement(len(ours), "the candidate answered another horizon or shape")
        found = compare_quantiles(a[None], b[None], atol, rtol)
        within += int(found["within_tolerance"] == 1.0)
        max_abs, max_rel = max(max_abs, found["max_abs_diff"]), max(max_rel, found["max_rel_diff"])
    return Agreement(len(ours), within, None, max_abs, max_rel)
