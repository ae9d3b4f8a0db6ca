"""validate: native vs every ONNX variant, on the whole test split and on hostile inputs.

reports/validate/<model>.json holds, per variant, max/mean absolute diff, max relative diff, share
of rows within tolerance, the task metric native vs ONNX, and a verdict with its reasons.
A variant that fails is never packaged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from omegaconf import DictConfig

from serving.runtime import InferenceSettings, OnnxModel
from stages import families
from stages.common.config import as_plain, model_spec, run_stage
from stages.common.io import read_json, write_json
from stages.common.tracking import log_report, stage_run
from stages.families import Prediction
from stages.hostile import build_sets
from stages.metrics import PRIMARY, task_metrics
from stages.optimize import OPTIMIZE_FILE
from stages.prepare import load_split


def onnx_prediction(model: OnnxModel, X: np.ndarray, task: str) -> Prediction:
    out = model.run(X)
    if task == "regression":
        return Prediction(out["prediction"].reshape(-1).astype(np.float64))
    return Prediction(out["label"].reshape(-1).astype(np.int64), out["probabilities"].astype(np.float64))


def row_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| where equal values (NaN and infinities included) give 0 and NaN on one side gives inf."""
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - b)
    return np.where(same, 0.0, np.where(np.isnan(diff), np.inf, diff))


def outputs_of(pred: Prediction, rows: int) -> np.ndarray:
    """What parity is judged on: probabilities for classifiers, values for regressors."""
    return (pred.values if pred.proba is None else pred.proba).reshape(rows, -1)


def compare(native: Prediction, other: Prediction, atol: float, rtol: float) -> dict:
    """Row-wise parity: a row is within when every output value is within atol + rtol*|native|."""
    a, b = outputs_of(native, len(native.values)), outputs_of(other, len(other.values))
    diff = row_diff(a, b)
    scale = np.abs(np.where(np.isfinite(a), a, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(diff == 0, 0.0, diff / np.maximum(scale, 1e-12))
    within = (diff <= atol + rtol * scale).all(axis=1)
    out = {
        "rows": len(a),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "max_rel_diff": float(rel.max()),
        "within_tolerance": float(within.mean()),
    }
    if native.proba is not None:
        out["label_agreement"] = float(np.mean(native.values == other.values))
    return out


def check_variant(path: Path, lossy: bool, ctx: dict) -> dict:
    cfg, task, tol = ctx["cfg"], ctx["task"], ctx["tol"]
    model = OnnxModel(path, ctx["settings"])
    gates = cfg.validate
    reasons: list[str] = []
    pred = onnx_prediction(model, ctx["X_test"], task)
    test = compare(ctx["native_test"], pred, tol["atol"], tol["rtol"])
    metrics = task_metrics(task, ctx["y_test"], pred)
    key = PRIMARY[task]
    change = abs(metrics[key] - ctx["native_metrics"][key]) / max(abs(ctx["native_metrics"][key]), 1e-12)
    test |= {
        f"{key}_native": ctx["native_metrics"][key],
        f"{key}_onnx": metrics[key],
        "metric_rel_change": change,
    }
    if change > gates.max_metric_rel_change:
        reasons.append(f"test {key} moved {change:.2%} (> {gates.max_metric_rel_change:.0%})")
    if task == "classification" and test["label_agreement"] < gates.min_label_agreement:
        reasons.append(f"test label agreement {test['label_agreement']:.4f} < {gates.min_label_agreement}")
    if not lossy and test["within_tolerance"] < gates.min_within_test:
        reasons.append(
            f"test rows within tolerance {test['within_tolerance']:.4%} < {gates.min_within_test:.2%}"
        )
    sets = {"test": test}
    for name, X in ctx["hostile"].items():
        try:
            sets[name] = compare(
                ctx["native_hostile"][name], onnx_prediction(model, X, task), tol["atol"], tol["rtol"]
            )
        except Exception as err:  # e.g. the runtime refusing input the native model took
            sets[name] = {"rows": len(X), "error": f"{type(err).__name__}: {err}", "within_tolerance": 0.0}
        if "error" in sets[name]:
            reasons.append(f"{name}: ONNX Runtime refused what the native model took ({sets[name]['error']})")
        elif not lossy and sets[name]["within_tolerance"] < gates.min_within_hostile:
            reasons.append(
                f"{name} rows within tolerance {sets[name]['within_tolerance']:.2%} "
                f"< {gates.min_within_hostile:.0%}"
            )
    rows = ctx["templates"]
    one_by_one = np.vstack([outputs_of(onnx_prediction(model, row[None, :], task), 1) for row in rows])
    together = outputs_of(onnx_prediction(model, ctx["templates"], task), len(ctx["templates"]))
    batch_diff = float(row_diff(one_by_one, together).max())
    sets["batch_consistency"] = {"rows": len(ctx["templates"]), "max_abs_diff": batch_diff}
    if batch_diff > tol["atol"]:
        reasons.append(f"batch 1 vs batch N differ by {batch_diff:.3g} (> atol {tol['atol']})")
    return {
        "verdict": "pass" if not reasons else "fail",
        "reasons": reasons,
        "lossy": lossy,
        "onnx_metrics": metrics,
        "sets": sets,
    }


def compact_metrics(report: dict) -> dict:
    """The figures `dvc metrics show` lists per variant (the full report has every set)."""
    out = {}
    for variant, entry in report["variants"].items():
        sets = entry.get("sets", {})
        test = sets.get("test", {})
        hostile = [s["within_tolerance"] for k, s in sets.items() if "within_tolerance" in s and k != "test"]
        out[variant] = {
            "passed": entry["verdict"] == "pass",
            "test_max_abs_diff": test.get("max_abs_diff"),
            "test_within_tolerance": test.get("within_tolerance"),
            "test_metric_rel_change": test.get("metric_rel_change"),
            "hostile_min_within_tolerance": min(hostile) if hostile else None,
        }
    return out


def run(cfg: DictConfig) -> dict:
    name = cfg.model
    model_spec(cfg, name)
    optimized = Path(cfg.paths.optimized) / name
    opt = read_json(optimized / OPTIMIZE_FILE)
    family, est, meta = families.load_native(Path(cfg.paths.native) / name)
    tol = dict(cfg.validate.tolerance.get(meta["family"], cfg.validate.tolerance.default))
    report: dict = {"model": name, "family": meta["family"], "tolerance": tol, "variants": {}}
    if opt["export_status"] == "ok":
        X_test, y_test, schema = load_split(cfg.paths.prepared, "test")
        task = schema["task"]
        templates = X_test[: int(cfg.validate.hostile.rows)]
        hostile = build_sets(
            templates,
            onnx.load(str(optimized / "base.onnx")),
            families.accepts_nan(family, est),
            cfg.validate.hostile,
            cfg.seed,
        )
        native_test = family.predict(est, X_test, task)
        ctx = {
            "cfg": cfg,
            "task": task,
            "tol": tol,
            "X_test": X_test,
            "y_test": y_test,
            "settings": InferenceSettings.from_mapping(cfg.runtime),
            "templates": templates,
            "hostile": hostile,
            "native_test": native_test,
            "native_metrics": task_metrics(task, y_test, native_test),
            "native_hostile": {k: family.predict(est, X, task) for k, X in hostile.items()},
        }
        report["native_metrics"] = ctx["native_metrics"]
        report["hostile_rows"] = {k: len(v) for k, v in hostile.items()}
        for variant, entry in opt["variants"].items():
            if entry["status"] != "ok":
                report["variants"][variant] = {
                    "verdict": "fail",
                    "reasons": [f"optimize failed: {entry['reason']}"],
                }
                continue
            try:
                checked = check_variant(optimized / f"{variant}.onnx", entry["lossy"], ctx)
                report["variants"][variant] = checked
            except Exception as err:  # a graph ONNX Runtime cannot load or run fails alone
                report["variants"][variant] = {"verdict": "fail", "reasons": [f"{type(err).__name__}: {err}"]}
            # which file was judged: package registers only this exact file
            report["variants"][variant]["sha256"] = entry["sha256"]
    else:
        report["skipped"] = "export failed"
    report["passed"] = [v for v, e in report["variants"].items() if e["verdict"] == "pass"]
    write_json(Path(cfg.paths.reports) / "validate" / f"{name}.json", report)
    write_json(Path(cfg.paths.reports) / "validate" / f"{name}.metrics.json", compact_metrics(report))
    with stage_run(
        cfg, "validate", name, {"validate": as_plain(cfg.validate), "runtime": as_plain(cfg.runtime)}
    ):
        log_report(
            {
                v: {"passed": e["verdict"] == "pass", **e.get("sets", {})}
                for v, e in report["variants"].items()
            },
            f"validate_{name}.json",
        )
    for variant, entry in report["variants"].items():
        why = "" if entry["verdict"] == "pass" else f" ({'; '.join(entry['reasons'])})"
        print(f"validate {name}/{variant}: {entry['verdict']}{why}")
    return report


if __name__ == "__main__":
    run_stage(run)
