"""Parity for forecasters: does an ONNX forecast graph answer like the library's own predict?

Judged on rolling held-out windows of the test split, as one batch and one window at a time, and
on harder sets built from them: NaN holes in the context, short contexts (NaN-padded), and, for
a model with covariates, each covariate pattern (known future; past-only, i.e. the future
unknown; none at all). Each window is its own group, so batch 1 vs batch N also proves that
series in one batch do not mix; target and covariates share a group inside the graph. Per
output: max abs / rel difference and the share of windows within atol + rtol * |native|; task
metrics (weighted quantile loss, MASE) native vs ONNX.

The ONNX side answers through onnxship.forecasting (the rows, groups and rollout serving runs),
and at each horizon of `validate.horizons` besides the model's own: Chronos-2 forecasts a shorter
horizon with fewer output patches, and a horizon beyond one call rolls forward, so each horizon
is a parity case of its own (`horizons` in the report; the lossless variants must pass them all).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnxship.contract import CHRONOS2, CONTEXT, FUTURE, PAST, ForecastSpec
from onnxship.forecasting.rollout import forecast_windows
from onnxship.parity.rows import diff_histogram, row_diff, verdict
from onnxship.runtime import InferenceSettings, OnnxModel
from onnxship.scoring import GATED, forecast_metrics, metric_gate


@dataclass
class ForecastCase:
    spec: ForecastSpec
    tolerance: dict[str, float]
    gates: Any
    settings: InferenceSettings
    season: int
    truth: np.ndarray  # [n, H] of the test windows
    sets: dict[str, dict[str, np.ndarray]]  # name -> feed; "test" first
    native: dict[str, np.ndarray]  # name -> quantiles [n, H, Q]
    native_metrics: dict[str, float]
    # h -> (windows h ahead, native [n, h, Q]): the model's other served horizons
    horizons: dict[int, tuple[dict[str, np.ndarray], np.ndarray]] = dataclasses.field(default_factory=dict)

    def check(self, path: Path, lossy: bool) -> dict:
        return check_forecast_variant(path, lossy, self)

    def set_sizes(self) -> dict[str, int]:
        """Windows per hostile set."""
        return {k: len(f["context"]) for k, f in self.sets.items() if k != "test"}

    def fan(self) -> dict | None:
        """Native's side of the fan chart (reports/plots)."""
        return fan_chart(self)


NARROW = 61  # values of context in the narrow set: fewer than any served context, not whole patches


def hostile_feeds(feed: dict[str, np.ndarray], spec: ForecastSpec, rng: np.random.Generator) -> dict:
    """Harder variants of the test windows."""
    out = {}
    holes = {k: v.copy() for k, v in feed.items()}
    holes[CONTEXT][rng.random(holes[CONTEXT].shape) < 0.1] = np.nan
    out["nan_holes"] = holes
    short = {k: v.copy() for k, v in feed.items()}
    lengths = rng.integers(8, max(9, spec.context_length // 4), size=len(short[CONTEXT]))
    for row, n in enumerate(lengths):
        short[CONTEXT][row, : spec.context_length - n] = np.nan
        if PAST in short:
            short[PAST][row, : spec.context_length - n] = np.nan
    out["short_context"] = short
    if spec.graph.rolls_forward:
        # the server sends the request's own width (the library pads a batch to its longest
        # series only): a variant that froze the exported width must fail here, not in serving
        out["narrow_context"] = {
            k: v[:, -NARROW:].copy() if k in (CONTEXT, PAST) else v for k, v in feed.items()
        }
    if spec.covariates:
        past_only = {k: v.copy() for k, v in feed.items()}
        past_only[FUTURE][:] = np.nan
        out["covariates_past_only"] = past_only
        none = {k: v.copy() for k, v in feed.items()}
        none[PAST][:] = np.nan
        none[FUTURE][:] = np.nan
        out["covariates_none"] = none
    return out


def compare_quantiles(native: np.ndarray, onnx: np.ndarray, atol: float, rtol: float) -> dict:
    """A window is within when every quantile is within atol + rtol * (the window's largest
    |quantile|): float32 rounding scales with the window's values, not with each value (a
    quantile near zero in a window of thousands carries the same absolute error)."""
    diff = row_diff(native.astype(np.float64), onnx.astype(np.float64))
    scale = np.abs(native.astype(np.float64))
    rel = np.where(diff == 0, 0.0, diff / np.maximum(scale, 1e-12))
    window_scale = np.nanmax(scale.reshape(len(native), -1), axis=1)
    within = (diff.reshape(len(native), -1) <= (atol + rtol * window_scale)[:, None]).all(axis=1)
    return {
        "windows": len(native),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "max_rel_diff": float(rel.max()),
        "within_tolerance": float(within.mean()),
        "diff_histogram": diff_histogram(diff),
    }


FAN_WINDOW = -1  # the fan chart shows the latest test window
FAN_HISTORY = 3  # and this many forecast lengths of its context


def fan_chart(case: ForecastCase) -> dict:
    """Native's side of the fan chart: one test window's recent context, what happened, and the
    library's quantiles (each variant's entry carries its own, `fan_quantiles`)."""
    spec, context = case.spec, case.sets["test"][CONTEXT][FAN_WINDOW]
    tail = context[-FAN_HISTORY * spec.prediction_length :]
    return {
        "window": int(len(case.sets["test"][CONTEXT]) + FAN_WINDOW),
        "quantile_levels": list(spec.quantile_levels),
        "context_tail": [None if np.isnan(v) else round(float(v), 6) for v in tail],
        "truth": np.round(case.truth[FAN_WINDOW], 6).tolist(),
        "native_quantiles": np.round(case.native["test"][FAN_WINDOW], 6).tolist(),
    }


def onnx_forecast(
    model: OnnxModel, spec: ForecastSpec, windows: dict, horizon: int | None = None
) -> np.ndarray:
    """[n, horizon, Q]: the windows forecast through the graph as serving forecasts them."""
    return forecast_windows(lambda feed: model.run_feed(feed)[0], spec, windows, horizon)


def check_horizons(model: OnnxModel, case: ForecastCase, lossy: bool) -> tuple[dict, list[str]]:
    """Parity at each horizon of the case: {str(h): figures}, and the reasons a lossless variant fails."""
    tol, figures, reasons = case.tolerance, {}, []
    for horizon, (windows, native) in case.horizons.items():
        spec = dataclasses.replace(case.spec, prediction_length=horizon)
        try:
            out = onnx_forecast(model, spec, windows, horizon)
        except Exception as err:
            figures[str(horizon)] = {"windows": len(native), "error": f"{type(err).__name__}: {err}"[:300]}
            reasons.append(f"horizon {horizon}: ONNX Runtime failed")
            continue
        rolled = horizon > case.spec.graph.native_horizon
        # Chronos-2's rollout pools paths by sorted order: its own tolerance (conf/validate); Bolt's
        # linear order statistics keep the family's
        loose = rolled and case.spec.graph.layout == CHRONOS2
        at = (case.gates.get("rollout_tolerance") or tol) if loose else tol
        got = compare_quantiles(native, out, at["atol"], at["rtol"]) | {"rolled_forward": rolled}
        got.pop("diff_histogram")
        figures[str(horizon)] = got
        if not lossy and got["within_tolerance"] < case.gates.min_within_test:
            reasons.append(f"horizon {horizon}: windows within tolerance {got['within_tolerance']:.2%}")
    return figures, reasons


def check_forecast_variant(path: Path, lossy: bool, case: ForecastCase) -> dict:
    model = OnnxModel(path, case.settings)
    tol, gates, reasons = case.tolerance, case.gates, []
    sets: dict[str, dict] = {}
    onnx_test = None
    for name, feed in case.sets.items():
        try:
            out = onnx_forecast(model, case.spec, feed)
        except Exception as err:  # a graph that cannot run this input fails on it alone
            sets[name] = {"windows": len(feed[CONTEXT]), "error": f"{type(err).__name__}: {err}"}
            reasons.append(f"{name}: ONNX Runtime failed ({sets[name]['error'][:200]})")
            continue
        sets[name] = compare_quantiles(case.native[name], out, tol["atol"], tol["rtol"])
        threshold = gates.min_within_test if name == "test" else gates.min_within_hostile
        if not lossy and sets[name]["within_tolerance"] < threshold:
            reasons.append(
                f"{name} windows within tolerance {sets[name]['within_tolerance']:.2%} < {threshold:.0%}"
            )
        if name == "test":
            onnx_test = out
            # the fan chart's window (fan_chart): this variant's quantiles beside native's
            sets[name]["fan_quantiles"] = np.round(out[FAN_WINDOW], 6).tolist()
    metrics: dict[str, float] = {}
    if onnx_test is not None:
        metrics = forecast_metrics(onnx_test, case.truth, case.sets["test"], case.spec, case.season)
        figures, worse, worst = metric_gate(
            case.native_metrics, metrics, GATED["forecast"], gates.max_metric_rel_change
        )
        sets["test"] |= figures | {"metric_rel_worse": worst}
        reasons += worse
    if onnx_test is not None:
        # batch 1 vs batch N: each window alone must answer as in the batch (lossless), or keep
        # the metrics when sent alone (lossy: dynamic INT8 depends on the batch's ranges)
        test = case.sets["test"]
        rows = len(test[CONTEXT]) if lossy else min(8, len(test[CONTEXT]))
        one_by_one = np.concatenate(
            [onnx_forecast(model, case.spec, {k: v[i : i + 1] for k, v in test.items()}) for i in range(rows)]
        )
        batch_diff = float(row_diff(one_by_one.astype(np.float64), onnx_test[:rows].astype(np.float64)).max())
        sets["batch_consistency"] = {"windows": rows, "max_abs_diff": batch_diff}
        if lossy:
            alone = forecast_metrics(one_by_one, case.truth, test, case.spec, case.season)
            figures, worse, _ = metric_gate(
                case.native_metrics, alone, GATED["forecast"], gates.max_metric_rel_change
            )
            sets["test_one_by_one"] = {"windows": rows, **figures}
            reasons += [f"one window at a time: {r}" for r in worse]
        elif batch_diff > tol["atol"] + tol["rtol"] * float(np.abs(onnx_test[:rows]).max()):
            reasons.append(f"batch 1 vs batch {len(test[CONTEXT])} differ by {batch_diff:.3g}")
    if case.horizons:
        sets["horizons"], failed = check_horizons(model, case, lossy)
        reasons += failed
    return verdict(reasons, lossy, metrics, sets)
