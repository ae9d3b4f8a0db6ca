"""optimize: exported graph -> models/optimized/<model>/<variant>.onnx + optimize.json.

`base` is the exported graph unchanged; every configured variant chains passes (conf/optimize).
A pass that fails marks its variant failed (reported, never registered); the others go on.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import traceback
from pathlib import Path

import onnx
from omegaconf import DictConfig

from stages import passes
from stages.common.config import as_plain, model_spec, run_stage
from stages.common.io import atomic_dir, read_json, sha256_file, write_json
from stages.common.tracking import log_report, stage_run
from stages.export import EXPORT_FILE, ONNX_FILE

OPTIMIZE_FILE, BASE = "optimize.json", "base"


def plan(variants: DictConfig) -> dict[str, list[tuple[passes.Pass, dict]]]:
    """Resolve every variant's passes and options before any work starts."""
    out = {}
    for variant, steps in variants.items():
        if variant == BASE:
            raise passes.ConfigError("optimize.variants: 'base' is reserved for the exported graph")
        chain = []
        for step in steps:
            step = dict(step)
            name = step.pop("pass", None)
            if not name:
                raise passes.ConfigError(f"optimize.variants.{variant}: each step needs `pass: <name>`")
            pass_ = passes.get(name)
            chain.append((pass_, pass_.check(step)))
        out[variant] = chain
    return out


def apply_chain(src: Path, dst: Path, chain: list[tuple[passes.Pass, dict]]) -> list[dict]:
    steps, current = [], src
    nodes = len(onnx.load(str(src)).graph.node)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (pass_, options) in enumerate(chain):
            target = Path(tmp) / f"step{i}.onnx"
            started = time.perf_counter()
            did = pass_.run(current, target, options)
            onnx.checker.check_model(str(target))
            nodes_after = len(onnx.load(str(target)).graph.node)
            steps.append(
                {
                    "pass": pass_.name,
                    **options,
                    **did,
                    "seconds": round(time.perf_counter() - started, 3),
                    "nodes_before": nodes,
                    "nodes_after": nodes_after,
                }
            )
            current, nodes = target, nodes_after
        shutil.copyfile(current, dst)
    return steps


def run(cfg: DictConfig) -> dict:
    name = cfg.model
    model_spec(cfg, name)
    chains = plan(cfg.optimize.variants)
    export = read_json(Path(cfg.paths.onnx) / name / EXPORT_FILE)
    report: dict = {"model": name, "export_status": export["status"], "variants": {}}
    with atomic_dir(Path(cfg.paths.optimized) / name) as out:
        if export["status"] == "ok":
            src = Path(cfg.paths.onnx) / name / ONNX_FILE
            shutil.copyfile(src, out / f"{BASE}.onnx")
            report["variants"][BASE] = {"status": "ok", "passes": [], "lossy": False}
            for variant, chain in chains.items():
                entry: dict = {"lossy": any(p.lossy for p, _ in chain)}
                try:
                    entry["passes"] = apply_chain(src, out / f"{variant}.onnx", chain)
                    entry["status"] = "ok"
                except Exception as err:
                    entry |= {
                        "status": "failed",
                        "reason": f"{type(err).__name__}: {err}",
                        "traceback": traceback.format_exc(limit=3),
                    }
                report["variants"][variant] = entry
            for variant, entry in report["variants"].items():
                if entry["status"] == "ok":
                    path = out / f"{variant}.onnx"
                    entry |= {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
        write_json(out / OPTIMIZE_FILE, report)
    with stage_run(cfg, "optimize", name, {"optimize": as_plain(cfg.optimize)}):
        log_report(
            {v: {k: e[k] for k in ("status", "bytes") if k in e} for v, e in report["variants"].items()},
            OPTIMIZE_FILE,
        )
    states = (
        ", ".join(f"{v}={e['status']}" for v, e in report["variants"].items()) or "skipped (export failed)"
    )
    print(f"optimize {name}: {states}")
    return report


if __name__ == "__main__":
    run_stage(run)
