"""export: native model -> models/onnx/<model>/model.onnx + export.json.

A model that cannot be exported gets export.json with status "failed" and the reason (in reports
and MLflow); the stage still succeeds so the other models go on, and no later stage packages it.
export.json is a cached output: it holds only what the same inputs always give (no timings, no
tracebacks: those go to MLflow), so a fresh clone reproduces its bytes.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

import onnx
from omegaconf import DictConfig

from onnxship import families
from onnxship.contract import EXPORT_REPORT, NATIVE_META, ONNX_FILE, ModelIO, describe_io
from onnxship.graph import opset_of, standardize
from onnxship.io import atomic_dir, read_json, sha256_file, write_json
from onnxship.pipeline.config import as_plain, model_spec
from onnxship.pipeline.runner import Outcome, main, stage


def convert(meta: dict, native_dir: Path, opset: int) -> onnx.ModelProto:
    family = families.get(meta["family"])
    est = family.load_checked(native_dir / meta["native_file"], meta["task"])
    io = ModelIO.of_model(meta)
    model = standardize(family.to_onnx(est, io, opset), meta["task"], opset, keep_inputs=io.takes_columns)
    model.graph.name = meta["model"]  # onnxmltools names graphs with a random uuid: same input, other bytes
    onnx.checker.check_model(model, full_check=True)
    problems = io.mismatches(describe_io(model))
    if problems:
        raise ValueError("graph does not fit the contract: " + "; ".join(problems))
    return model


@stage("export", lambda cfg: {"export": as_plain(cfg.export), "family": model_spec(cfg).family})
def run(cfg: DictConfig, _run) -> Outcome:
    name = cfg.model
    native_dir = Path(cfg.paths.native) / name
    meta = read_json(native_dir / NATIVE_META)
    report = {
        "model": name,
        "family": meta["family"],
        "converter": families.get(meta["family"]).converter,
        "native_sha256": meta["native_sha256"],
    }
    logged: dict = {}
    started = time.perf_counter()
    with atomic_dir(Path(cfg.paths.onnx) / name) as out:
        try:
            model = convert(meta, native_dir, cfg.export.target_opset)
        except Exception as err:  # any converter failure is reported, never hidden
            report |= {"status": "failed", "reason": f"{type(err).__name__}: {err}"}
            logged["traceback"] = traceback.format_exc(limit=4)
        else:
            onnx.save(model, out / ONNX_FILE)
            report |= {
                "status": "ok",
                "opset": opset_of(model),
                "ml_opset": opset_of(model, "ai.onnx.ml"),
                "bytes": (out / ONNX_FILE).stat().st_size,
                "sha256": sha256_file(out / ONNX_FILE),
                "nodes": len(model.graph.node),
                **describe_io(model),
            }
            logged["seconds"] = round(time.perf_counter() - started, 3)
        write_json(out / EXPORT_REPORT, report)
    ok = report["status"] == "ok"
    return Outcome(
        report,
        "ok" if ok else f"FAILED ({report['reason']})",
        logged=report | logged,
        artifacts={Path(cfg.paths.onnx) / name / ONNX_FILE: "onnx"} if ok else {},
    )


if __name__ == "__main__":
    main(run)
