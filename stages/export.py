"""export: native model -> models/onnx/<model>/model.onnx + export.json.

A model that cannot be exported gets export.json with status "failed" and the reason (in reports
and MLflow); the stage still succeeds so the other models go on, and no later stage packages it.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

import onnx
from omegaconf import DictConfig

from stages import families
from stages.common.config import model_spec, run_stage
from stages.common.io import atomic_dir, read_json, sha256_file, write_json
from stages.common.tracking import log_report, stage_run
from stages.onnx_graph import opset_of, standardize

EXPORT_FILE, ONNX_FILE = "export.json", "model.onnx"


def describe_io(model: onnx.ModelProto) -> dict:
    def spec(value: onnx.ValueInfoProto) -> dict:
        tensor = value.type.tensor_type
        shape = [d.dim_param or d.dim_value for d in tensor.shape.dim]
        return {
            "name": value.name,
            "dtype": onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name,
            "shape": shape,
        }

    return {"inputs": [spec(v) for v in model.graph.input], "outputs": [spec(v) for v in model.graph.output]}


def convert(meta: dict, native_dir: Path, opset: int) -> onnx.ModelProto:
    family = families.get(meta["family"])
    est = family.load_checked(native_dir / meta["native_file"], meta["task"])
    model = standardize(family.to_onnx(est, len(meta["features"]), meta["task"], opset), meta["task"], opset)
    onnx.checker.check_model(model, full_check=True)
    return model


def run(cfg: DictConfig) -> dict:
    name = cfg.model
    model_spec(cfg, name)
    native_dir = Path(cfg.paths.native) / name
    meta = read_json(native_dir / "meta.json")
    family = families.get(meta["family"])
    report = {
        "model": name,
        "family": meta["family"],
        "converter": family.converter,
        "native_sha256": meta["native_sha256"],
    }
    started = time.perf_counter()
    with atomic_dir(Path(cfg.paths.onnx) / name) as out:
        try:
            model = convert(meta, native_dir, cfg.export.target_opset)
        except Exception as err:  # any converter failure is reported, never hidden
            report |= {
                "status": "failed",
                "reason": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc(limit=4),
            }
        else:
            onnx.save(model, out / ONNX_FILE)
            report |= {
                "status": "ok",
                "opset": opset_of(model),
                "ml_opset": opset_of(model, "ai.onnx.ml"),
                "seconds": round(time.perf_counter() - started, 3),
                "bytes": (out / ONNX_FILE).stat().st_size,
                "sha256": sha256_file(out / ONNX_FILE),
                "nodes": len(model.graph.node),
                **describe_io(model),
            }
        write_json(out / EXPORT_FILE, report)
    with stage_run(cfg, "export", name, {"export": dict(cfg.export), "family": meta["family"]}):
        log_report({k: v for k, v in report.items() if k != "traceback"}, EXPORT_FILE)
        if report["status"] == "ok":
            import mlflow

            mlflow.log_artifact(str(Path(cfg.paths.onnx) / name / ONNX_FILE), "onnx")
    status = report["status"] if report["status"] == "ok" else f"FAILED ({report['reason']})"
    print(f"export {name}: {status}")
    return report


if __name__ == "__main__":
    run_stage(run)
