"""optimize: exported graph -> models/optimized/<model>/<variant>.onnx + optimize.json.

`base` is the exported graph unchanged; every configured variant chains passes (conf/optimize),
each pass's options checked before any work starts. A pass that fails marks its variant failed
(reported, never registered); the others go on. Timings and tracebacks go to MLflow, not into
optimize.json (a cached output).
"""

from __future__ import annotations

import shutil
import traceback
from pathlib import Path

from omegaconf import DictConfig

from onnxship.contract import BASE_VARIANT, EXPORT_REPORT, NATIVE_META, ONNX_FILE, OPTIMIZE_REPORT
from onnxship.errors import ConfigError
from onnxship.io import atomic_dir, read_json, sha256_file, write_json
from onnxship.passes import PassContext, apply_chain, for_family, plan
from onnxship.pipeline.config import as_plain, model_spec
from onnxship.pipeline.runner import Outcome, main, stage
from onnxship.pipeline.workload import workload


def variants(cfg: DictConfig) -> dict:
    """conf/optimize's variants for this model's family, or the subset a zoo entry names
    (`variants:`; e.g. a release-size forecaster, where each variant costs minutes to write,
    check and time)."""
    entry = model_spec(cfg)
    chosen = entry.get("variants")
    if chosen is None:
        return for_family(as_plain(cfg.optimize.variants), entry["family"])
    unknown = sorted(set(chosen) - set(cfg.optimize.variants))
    if unknown:
        raise ConfigError(f"zoo.models.{cfg.model}.variants: not in optimize.variants: {unknown}")
    return {v: as_plain(cfg.optimize.variants[v]) for v in chosen}


def context(cfg: DictConfig) -> PassContext:
    """What passes may need beyond the graph: calibration inputs from the validation split."""
    entry = model_spec(cfg)
    meta = read_json(Path(cfg.paths.native) / cfg.model / NATIVE_META)

    def calibration(limit: int) -> list[dict]:
        return workload(cfg).calibration_feeds(entry, meta, limit)

    return PassContext(family=entry["family"], calibration=calibration)


@stage("optimize", lambda cfg: {"optimize": variants(cfg)})
def run(cfg: DictConfig, _run) -> Outcome:
    name = cfg.model
    chains = plan(variants(cfg))
    export = read_json(Path(cfg.paths.onnx) / name / EXPORT_REPORT)
    report: dict = {"model": name, "export_status": export["status"], "variants": {}}
    logged: dict = {}
    with atomic_dir(Path(cfg.paths.optimized) / name) as out:
        if export["status"] == "ok":
            ctx = context(cfg)
            src = Path(cfg.paths.onnx) / name / ONNX_FILE
            shutil.copyfile(src, out / f"{BASE_VARIANT}.onnx")
            report["variants"][BASE_VARIANT] = {"status": "ok", "passes": [], "lossy": False}
            for variant, chain in chains.items():
                entry: dict = {"lossy": any(p.lossy for p, _ in chain)}
                try:
                    entry["passes"], seconds = apply_chain(src, out / f"{variant}.onnx", chain, ctx)
                    entry["status"] = "ok"
                    logged[variant] = {"seconds": seconds}
                except Exception as err:
                    entry |= {"status": "failed", "reason": f"{type(err).__name__}: {err}"}
                    logged[variant] = {"traceback": traceback.format_exc(limit=3)}
                report["variants"][variant] = entry
            for variant, entry in report["variants"].items():
                if entry["status"] == "ok":
                    path = out / f"{variant}.onnx"
                    entry |= {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        write_json(out / OPTIMIZE_REPORT, report)
    for variant, entry in report["variants"].items():
        logged.setdefault(variant, {}).update({k: entry[k] for k in ("status", "bytes") if k in entry})
    states = ", ".join(f"{v}={e['status']}" for v, e in report["variants"].items())
    return Outcome(report, states or "skipped (export failed)", logged=logged)


if __name__ == "__main__":
    main(run)
