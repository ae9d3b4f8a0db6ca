"""validate: native vs every ONNX variant, on the whole test split and on hostile inputs.

reports/validate/<model>.json holds, per variant, max/mean absolute diff, max relative diff, share
of rows within tolerance, the task metric native vs ONNX, and a verdict with its reasons
(onnxship.parity). A variant that fails is never packaged.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from omegaconf import DictConfig

from onnxship import families
from onnxship.contract import BASE_VARIANT, OPTIMIZE_REPORT
from onnxship.data import load_split
from onnxship.hostile import build_sets
from onnxship.io import read_json
from onnxship.metrics import task_metrics
from onnxship.parity import ParityCase, check_variant, compact_metrics
from onnxship.pipeline.config import as_plain, prepared_dir
from onnxship.pipeline.runner import Outcome, main, stage
from onnxship.runtime import InferenceSettings


def parity_case(cfg: DictConfig, family, est, tolerance: dict, optimized: Path) -> ParityCase:
    X_test, y_test, schema = load_split(prepared_dir(cfg), "test")
    task = schema["task"]
    templates = X_test[: int(cfg.validate.hostile.rows)]
    base = onnx.load(str(optimized / f"{BASE_VARIANT}.onnx"))
    # hostile sets are built on flat rows; tensor inputs (images) go back to their shape after
    flat = templates.reshape(len(templates), -1)
    hostile = build_sets(flat, base, family.takes_missing_values(est), cfg.validate.hostile, cfg.seed)
    hostile = {k: rows.reshape(len(rows), *X_test.shape[1:]) for k, rows in hostile.items()}
    native_test = family.predict(est, X_test, task)
    return ParityCase(
        task=task,
        tolerance=tolerance,
        gates=cfg.validate,
        settings=InferenceSettings.from_mapping(cfg.runtime),
        X_test=X_test,
        y_test=y_test,
        templates=templates,
        hostile=hostile,
        native_test=native_test,
        native_metrics=task_metrics(task, y_test, native_test),
        native_hostile={k: family.predict(est, X, task) for k, X in hostile.items()},
    )


@stage("validate", lambda cfg: {"validate": as_plain(cfg.validate), "runtime": as_plain(cfg.runtime)})
def run(cfg: DictConfig, _run) -> Outcome:
    name = cfg.model
    optimized = Path(cfg.paths.optimized) / name
    opt = read_json(optimized / OPTIMIZE_REPORT)
    family, est, meta = families.load_native(Path(cfg.paths.native) / name)
    tol = dict(cfg.validate.tolerance.get(meta["family"], cfg.validate.tolerance.default))
    report: dict = {"model": name, "family": meta["family"], "tolerance": tol, "variants": {}}
    if opt["export_status"] == "ok":
        case = parity_case(cfg, family, est, tol, optimized)
        report["native_metrics"] = case.native_metrics
        report["hostile_rows"] = {k: len(v) for k, v in case.hostile.items()}
        for variant, entry in opt["variants"].items():
            if entry["status"] != "ok":
                report["variants"][variant] = {
                    "verdict": "fail",
                    "reasons": [f"optimize failed: {entry['reason']}"],
                }
                continue
            try:
                report["variants"][variant] = check_variant(
                    optimized / f"{variant}.onnx", entry["lossy"], case
                )
            except Exception as err:  # a graph ONNX Runtime cannot load or run fails alone
                report["variants"][variant] = {"verdict": "fail", "reasons": [f"{type(err).__name__}: {err}"]}
            # which file was judged: package registers only this exact file
            report["variants"][variant]["sha256"] = entry["sha256"]
    else:
        report["skipped"] = "export failed"
    report["passed"] = [v for v, e in report["variants"].items() if e["verdict"] == "pass"]
    reports = Path(cfg.paths.reports) / "validate"
    verdicts = "; ".join(
        f"{v}: {e['verdict']}" + ("" if e["verdict"] == "pass" else f" ({'; '.join(e['reasons'])})")
        for v, e in report["variants"].items()
    )
    return Outcome(
        report,
        verdicts or report.get("skipped", ""),
        writes={reports / f"{name}.json": report, reports / f"{name}.metrics.json": compact_metrics(report)},
        logged={
            v: {"passed": e["verdict"] == "pass", **e.get("sets", {})} for v, e in report["variants"].items()
        },
    )


if __name__ == "__main__":
    main(run)
