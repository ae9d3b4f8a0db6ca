"""validate: native vs every ONNX variant, on the whole test split and on hostile inputs.

reports/validate/<model>.json holds, per variant, max/mean absolute diff, max relative diff, share
of rows within tolerance, the task metric native vs ONNX, and a verdict with its reasons
(onnxship.parity.rows). A variant that fails is never packaged.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from onnxship import families
from onnxship.contract import OPTIMIZE_REPORT
from onnxship.io import read_json
from onnxship.parity.cases import parity_case
from onnxship.parity.rows import compact_metrics
from onnxship.pipeline.config import as_plain, model_spec
from onnxship.pipeline.runner import Outcome, main, stage
from onnxship.pipeline.workload import workload


@stage("validate", lambda cfg: {"validate": as_plain(cfg.validate), "runtime": as_plain(cfg.runtime)})
def run(cfg: DictConfig, _run) -> Outcome:
    name = cfg.model
    optimized = Path(cfg.paths.optimized) / name
    opt = read_json(optimized / OPTIMIZE_REPORT)
    family, est, meta = families.load_native(Path(cfg.paths.native) / name)
    tol = dict(cfg.validate.tolerance.get(meta["family"], cfg.validate.tolerance.default))
    report: dict = {"model": name, "family": meta["family"], "task": meta["task"], "tolerance": tol}
    report |= {"speed_only": bool(meta.get("speed_only")), "variants": {}}
    if opt["export_status"] == "ok":
        # feature rows / tensors, or forecast windows (onnxship/parity/cases.py)
        case = parity_case(workload(cfg), cfg, model_spec(cfg), family, est, meta, tol)
        report["native_metrics"] = case.native_metrics
        report["hostile_rows"] = case.set_sizes()
        if (fan := case.fan()) is not None:  # native's side of a forecaster's fan chart (reports/plots)
            report["fan"] = fan
        for variant, entry in opt["variants"].items():
            if entry["status"] != "ok":
                report["variants"][variant] = {
                    "verdict": "fail",
                    "reasons": [f"optimize failed: {entry['reason']}"],
                }
                continue
            try:
                path = optimized / f"{variant}.onnx"
                report["variants"][variant] = case.check(path, entry["lossy"])
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
