"""Parity for models of typed columns (onnxship.data.columns): the native model reads a DataFrame,
the graph one input per column. Hostile sets target what categories and strings bring - values
never seen in training, missing ones, case and whitespace variants, unicode, very long strings,
numbers written as strings - beside the numeric sets of feature rows (missing, extreme).
Each is judged row by row against the native model, like the test split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from onnxship.contract import Prediction
from onnxship.data.columns import NUMBER, STRING, graph_feed
from onnxship.parity.rows import compare, outputs_of, row_diff, verdict
from onnxship.runtime import InferenceSettings, OnnxModel
from onnxship.scoring import GATED, metric_gate, task_metrics

UNSEEN = "onnxship-unseen-value"
MISSING_SET = "missing_categories"  # None and NaN categories: judged, and read by packaging
ANSWERED_LIKE_NATIVE = "answered_like_native"
LONG = 10_000  # characters of a very long string
# strings that read as numbers, booleans or nulls: categories all the same
NUMBER_LIKE = ("0", "1", "-1", "3.5", "1e30", "nan", "NaN", "None", "null", "true", "")
UNICODE = (
    "Idéal",  # an accent
    "Ide\u0301al",  # a combining accent: another code point sequence than the line above
    "理想",  # CJK
    "💎",  # beyond the basic plane (4 bytes in UTF-8)
    "\u202eIdeal",  # a right-to-left override
    "Ideal\x00tail",  # an embedded NUL: the graph must not cut the string there
    "\ufeffIdeal",  # a byte-order mark
)


def per_column(templates: pd.DataFrame, names: list[str], values: list[Any]) -> pd.DataFrame:
    """For each column, each value in turn, on a template row (cycling through the templates)."""
    rows = []
    for name in names:
        for value in values:
            row = templates.iloc[len(rows) % len(templates)].copy()
            row[name] = value
            rows.append(row)
    return pd.DataFrame(rows).reset_index(drop=True)


def variants_of_known(templates: pd.DataFrame, columns: list[dict]) -> pd.DataFrame:
    """Each known category written with other case or surrounding whitespace."""
    rows = []
    for col in columns:
        if col["type"] != STRING:
            continue
        for i, known in enumerate(col["categories"][:8]):
            for variant in (known.upper(), known.lower(), f" {known}", f"{known} ", f"\t{known}\n"):
                if variant == known:
                    continue
                row = templates.iloc[(len(rows) + i) % len(templates)].copy()
                row[col["name"]] = variant
                rows.append(row)
    return pd.DataFrame(rows).reset_index(drop=True)


def build_column_sets(
    templates: pd.DataFrame, columns: list[dict], accepts_nan: bool, cfg_hostile: Any, seed: int
) -> dict[str, pd.DataFrame]:
    """The hostile sets of a table of typed columns (each a DataFrame like the test split's)."""
    rng = np.random.default_rng(seed)
    strings = [c["name"] for c in columns if c["type"] == STRING]
    numbers = [c["name"] for c in columns if c["type"] == NUMBER]
    sets: dict[str, pd.DataFrame] = {}
    if strings:
        all_unseen = templates.assign(**{n: UNSEEN for n in strings})
        sets["unseen_categories"] = pd.concat([per_column(templates, strings, [UNSEEN]), all_unseen])
        all_missing = templates.assign(**{n: None for n in strings})
        sets[MISSING_SET] = pd.concat([per_column(templates, strings, [None, np.nan]), all_missing])
        sets["case_whitespace"] = variants_of_known(templates, columns)
        sets["unicode"] = per_column(templates, strings, list(UNICODE))
        sets["long_strings"] = per_column(templates, strings, ["x" * LONG, "Ideal" + " " * LONG])
        sets["numbers_as_strings"] = per_column(templates, strings, list(NUMBER_LIKE))
    if numbers:
        if accepts_nan:
            scattered = templates.copy()
            for name in numbers:
                scattered.loc[rng.random(len(scattered)) < 0.2, name] = np.nan
            sets["nan"] = pd.concat([per_column(templates, numbers, [np.nan]), scattered])
        sets["extreme"] = per_column(templates, numbers, [float(m) for m in cfg_hostile.magnitudes])
    # No float64 set (feature rows have one): a number column is float32 by the version's schema,
    # and the server rounds each number to it before any engine sees it, so both engines answer
    # the float32 value. (Fed raw float64 values a billionth off a training value, natively
    # HistGradientBoosting crosses its splits, which sit on training values - quantile bins full
    # of ties -, and no float32 graph can follow: docs/tables.md.)
    return {k: typed(v, columns) for k, v in sets.items()}


def typed(frame: pd.DataFrame, columns: list[dict]) -> pd.DataFrame:
    """Rows assembled one by one come back as objects: numbers as float32 again, strings as objects."""
    out = frame.reset_index(drop=True)
    for col in columns:
        out[col["name"]] = out[col["name"]].astype(np.float32 if col["type"] == NUMBER else object)
    return out


def onnx_answer(model: OnnxModel, frame: pd.DataFrame, columns: list[dict], task: str) -> Prediction:
    out = model.run_feed(graph_feed(frame, columns))
    if task == "regression":
        return Prediction(out[0].reshape(-1).astype(np.float64))
    return Prediction(out[0].reshape(-1).astype(np.int64), out[1].astype(np.float64))


@dataclass
class ColumnsCase:
    """What every variant of a model of typed columns is judged against, computed once."""

    task: str
    columns: list[dict]
    tolerance: dict[str, float]
    gates: Any
    settings: InferenceSettings
    X_test: pd.DataFrame
    y_test: np.ndarray
    templates: pd.DataFrame
    hostile: dict[str, pd.DataFrame]
    native_test: Prediction
    native_metrics: dict[str, float]
    native_hostile: dict[str, Prediction]

    @classmethod
    def build(
        cls,
        native: Callable[[pd.DataFrame], Prediction],
        X_test: pd.DataFrame,
        y_test: np.ndarray,
        columns: list[dict],
        hostile: dict[str, pd.DataFrame],
        templates: pd.DataFrame,
        **rest: Any,
    ) -> ColumnsCase:
        task = rest["task"]
        native_test = native(X_test)
        return cls(
            columns=columns,
            X_test=X_test,
            y_test=y_test,
            templates=templates,
            hostile=hostile,
            native_test=native_test,
            native_metrics=task_metrics(task, y_test, native_test),
            native_hostile={k: native(frame) for k, frame in hostile.items()},
            **rest,
        )

    def set_sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.hostile.items()}

    def fan(self) -> dict | None:
        return None

    def check(self, path: Path, lossy: bool) -> dict:
        """The verdict on one ONNX file: the test split, every hostile set, one row vs a batch."""
        task, tol, gates = self.task, self.tolerance, self.gates
        model = OnnxModel(path, self.settings)
        reasons: list[str] = []
        pred = onnx_answer(model, self.X_test, self.columns, task)
        test = compare(self.native_test, pred, tol["atol"], tol["rtol"])
        metrics = task_metrics(task, self.y_test, pred)
        figures, worse, worst = metric_gate(
            self.native_metrics, metrics, GATED[task], gates.max_metric_rel_change
        )
        test |= figures | {"metric_rel_worse": worst}
        reasons += worse
        exact = not lossy  # a lossy variant is held to the task metric alone
        if exact and task == "classification" and test["label_agreement"] < gates.min_label_agreement:
            reasons.append(
                f"test label agreement {test['label_agreement']:.4f} < {gates.min_label_agreement}"
            )
        if exact and test["within_tolerance"] < gates.min_within_test:
            reasons.append(
                f"test rows within tolerance {test['within_tolerance']:.4%} < {gates.min_within_test:.2%}"
            )
        sets = {"test": test}
        for name, frame in self.hostile.items():
            try:
                answer = onnx_answer(model, frame, self.columns, task)
                sets[name] = compare(self.native_hostile[name], answer, tol["atol"], tol["rtol"])
            except Exception as err:  # the runtime refusing input the native model took
                sets[name] = {
                    "rows": len(frame),
                    "error": f"{type(err).__name__}: {err}",
                    "within_tolerance": 0.0,
                }
                reasons.append(
                    f"{name}: ONNX Runtime refused what the native model took ({sets[name]['error']})"
                )
                continue
            within = sets[name]["within_tolerance"] >= gates.min_within_hostile
            if name == MISSING_SET:
                # a graph takes a missing category as "": where the native model answers its own
                # missing value (None) otherwise, the version is still sound, but serving refuses
                # a null category (422 naming the column) rather than answer unlike native
                sets[name][ANSWERED_LIKE_NATIVE] = within
            elif exact and not within:
                reasons.append(
                    f"{name} rows within tolerance {sets[name]['within_tolerance']:.2%} "
                    f"< {gates.min_within_hostile:.0%}"
                )
        alone = [
            outputs_of(onnx_answer(model, self.templates.iloc[[i]], self.columns, task), 1)
            for i in range(len(self.templates))
        ]
        together = outputs_of(onnx_answer(model, self.templates, self.columns, task), len(self.templates))
        batch_diff = float(row_diff(np.vstack(alone), together).max())
        sets["batch_consistency"] = {"rows": len(self.templates), "max_abs_diff": batch_diff}
        if exact and batch_diff > tol["atol"]:
            reasons.append(f"batch 1 vs batch N differ by {batch_diff:.3g} (> atol {tol['atol']})")
        return verdict(reasons, lossy, metrics, sets)
