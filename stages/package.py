"""package: the best variant that passed every gate -> MLflow Model Registry.

One registered model per zoo model, one version per pipeline run. The version's artifact folder is
an MLflow `onnx` flavor model (model.onnx + MLmodel) plus onnxship.json: feature names, I/O names and
shapes, variant, inference settings, gates and the sha256 of model.onnx (serving checks it), and the
model's validation.json and benchmark.json reports.
Alias `candidate` moves to the new version only when every gate passed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from omegaconf import DictConfig

from serving.runtime import InferenceSettings
from stages.common.config import as_plain, model_spec, run_stage
from stages.common.io import read_json, sha256_file, write_json
from stages.common.tracking import configure, log_report, stage_run
from stages.export import EXPORT_FILE, describe_io

METADATA_FILE = "onnxship.json"


def choose_variant(
    validation: dict, bench: dict, batch_size: int, min_gain: float
) -> tuple[str | None, list[str]]:
    """The fastest variant (p50 at `batch_size`) among those that passed validation, but the plain
    export unless a variant beats it by `min_gain` (so timing noise does not pick the graph);
    reasons when none passed."""
    passed = [v for v in validation.get("passed", []) if v in bench.get("runtimes", {})]
    if not passed:
        failed = {v: e.get("reasons") for v, e in validation.get("variants", {}).items()}
        return None, [validation.get("skipped") or f"no variant passed validation: {failed}"]

    def p50(variant: str) -> float:
        return bench["runtimes"][variant]["batches"][str(batch_size)]["p50_ms"]

    fastest = min(passed, key=p50)
    if "base" in passed and p50("base") < p50(fastest) * min_gain:
        return "base", []
    return fastest, []


def build_version_dir(
    out: Path, model: onnx.ModelProto, metadata: dict, settings: InferenceSettings, X: np.ndarray
) -> dict:
    import mlflow.onnx
    from mlflow.models import infer_signature

    from serving.runtime import OnnxModel

    sample = OnnxModel(model.SerializeToString(), settings).run(X[:5])
    signature = infer_signature(X[:5].astype(np.float32), sample)
    mlflow.onnx.save_model(
        model,
        str(out),
        signature=signature,
        save_as_external_data=False,
        pip_requirements=["onnxruntime", "onnx"],
        onnx_execution_providers=list(settings.providers),
        onnx_session_options={
            "intra_op_num_threads": settings.intra_op_threads,
            "inter_op_num_threads": settings.inter_op_threads,
        },
        metadata={"onnxship_variant": metadata["variant"]},
    )
    metadata["sha256"] = sha256_file(out / "model.onnx")
    metadata["bytes"] = (out / "model.onnx").stat().st_size
    write_json(out / METADATA_FILE, metadata)
    return metadata


def run(cfg: DictConfig) -> dict:
    import mlflow

    from stages.prepare import load_split

    name = cfg.model
    model_spec(cfg, name)
    reports = Path(cfg.paths.reports)
    native_meta = read_json(Path(cfg.paths.native) / name / "meta.json")
    export = read_json(Path(cfg.paths.onnx) / name / EXPORT_FILE)
    validation = read_json(reports / "validate" / f"{name}.json")
    bench = read_json(reports / "benchmark" / f"{name}.json")
    registered_name = f"{cfg.package.registered_model_prefix}{name}"
    batch = int(cfg.package.select_batch_size)
    variant, reasons = choose_variant(validation, bench, batch, float(cfg.package.min_gain_over_base))
    result: dict = {
        "model": name,
        "registered_model": registered_name,
        "registered": False,
        "variant": variant,
    }
    client = configure(cfg)
    with stage_run(cfg, "package", name, {"package": as_plain(cfg.package)}) as run_:
        if variant is None:
            result["reasons"] = reasons
        else:
            cell = bench["runtimes"][variant]["batches"][str(batch)]
            native_cell = bench["runtimes"]["native"]["batches"][str(batch)]
            sets = validation["variants"][variant]["sets"]
            settings = InferenceSettings.from_mapping(cfg.runtime)
            onnx_path = Path(cfg.paths.optimized) / name / f"{variant}.onnx"
            actual = sha256_file(onnx_path)
            # each gate also checks that its report judged this exact file
            gates = {
                "export": export["status"] == "ok",
                "parity": validation["variants"][variant]["verdict"] == "pass"
                and validation["variants"][variant].get("sha256") == actual,
                "benchmark": bench["runtimes"][variant].get("sha256") == actual,
            }
            if not gates["parity"]:
                result["reasons"] = [f"{variant}: validated file and file to register differ (sha256)"]
            else:
                X, _, schema = load_split(cfg.paths.prepared, "test")
                graph = onnx.load(str(onnx_path))  # loaded once: metadata and the MLflow folder share it
                metadata = {
                    "model": name,
                    "variant": variant,
                    "family": native_meta["family"],
                    "task": schema["task"],
                    "features": schema["features"],
                    "classes": schema["classes"],
                    "target": schema["target"],
                    **describe_io(graph),
                    "inference_settings": settings.as_dict(),
                    "accepts_nan": "nan" in validation.get("hostile_rows", {}),
                    "gates": gates,
                    "tolerance": validation["tolerance"],
                    "parity": {
                        "test_max_abs_diff": sets["test"]["max_abs_diff"],
                        "test_within_tolerance": sets["test"]["within_tolerance"],
                    },
                    "latency_ms": {
                        f"b{batch}_p50": cell["p50_ms"],
                        f"b{batch}_p99": cell["p99_ms"],
                        f"native_b{batch}_p50": native_cell["p50_ms"],
                    },
                    "source_model_sha256": native_meta["native_sha256"],
                }
                with tempfile.TemporaryDirectory() as tmp:
                    version_dir = Path(tmp) / "model"
                    metadata = build_version_dir(version_dir, graph, metadata, settings, X)
                    # the evidence travels with the version (serving's GET /benchmark reads it)
                    write_json(version_dir / "benchmark.json", bench)
                    write_json(version_dir / "validation.json", validation)
                    mlflow.log_artifacts(str(version_dir), "model")
                tags = {
                    "git_commit": run_.data.tags.get("git_commit", ""),
                    "dvc_lock_sha256": sha256_file("dvc.lock") if Path("dvc.lock").exists() else "none",
                    "params_sha256": run_.data.tags.get("params_sha256", ""),
                    "source_model_sha256": native_meta["native_sha256"],
                    "onnx_sha256": metadata["sha256"],
                    "variant": variant,
                    "parity_verdict": "pass" if gates["parity"] else "fail",
                    f"p50_ms_b{batch}": f"{cell['p50_ms']:.4f}",
                    f"p99_ms_b{batch}": f"{cell['p99_ms']:.4f}",
                    "package_run_id": run_.info.run_id,  # the MLflow run holding the artifacts
                }
                try:
                    client.get_registered_model(registered_name)
                except mlflow.exceptions.MlflowException:
                    client.create_registered_model(
                        registered_name, description=f"onnxship model '{name}' ({native_meta['family']})"
                    )
                version = client.create_model_version(
                    registered_name,
                    source=f"{run_.info.artifact_uri}/model",
                    run_id=run_.info.run_id,
                    tags=tags,
                )
                result |= {
                    "registered": True,
                    "version": int(version.version),
                    "run_id": run_.info.run_id,
                    "sha256": metadata["sha256"],
                    "gates": gates,
                    "tags": tags,
                }
                if all(gates.values()):
                    client.set_registered_model_alias(registered_name, cfg.package.alias, version.version)
                    result["alias"] = cfg.package.alias
                else:
                    result["reasons"] = [f"gate failed: {g}" for g, ok in gates.items() if not ok]
        write_json(reports / "package" / f"{name}.json", result)
        log_report(
            {"registered": result["registered"], "version": result.get("version", 0)}, f"package_{name}.json"
        )
    if result["registered"]:
        print(
            f"package {name}: {registered_name} v{result['version']} ({variant})"
            + (
                f" alias '{result['alias']}'"
                if "alias" in result
                else " (no alias: " + "; ".join(result["reasons"]) + ")"
            )
        )
    else:
        print(f"package {name}: NOT registered ({'; '.join(result['reasons'])})")
    return result


if __name__ == "__main__":
    run_stage(run)
