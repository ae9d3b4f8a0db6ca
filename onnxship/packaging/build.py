"""Packaging into the MLflow Model Registry: which variant, what a version's folder holds, the
lineage tags, and registration.

A version's artifact folder is an MLflow `onnx` flavor model (model.onnx + MLmodel) plus
onnxship.json (features, I/O names and shapes, variant, inference settings, gates, parity figures,
latency, sha256 of model.onnx: serving checks it) and the model's validation and benchmark reports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx

from onnxship.contract import METADATA_FILE, MODEL_FILE, NATIVE, bench_cell, describe_io, timed_runtimes
from onnxship.io import sha256_file, write_json
from onnxship.packaging.choice import regime_table
from onnxship.runtime import InferenceSettings, OnnxModel
from onnxship.version.manifest import GATES, file_manifest, manifest_tags
from onnxship.version.schema import parse_metadata


def gates_for(variant: str, export: dict, validation: dict, bench: dict, onnx_sha256: str) -> dict[str, bool]:
    """Each gate also checks that its report judged this exact file (sha256)."""
    judged = validation["variants"][variant]
    passed = {
        "export": export["status"] == "ok",
        "parity": judged["verdict"] == "pass" and judged.get("sha256") == onnx_sha256,
        "benchmark": timed_runtimes(bench)[variant].get("sha256") == onnx_sha256,
    }
    return {gate: passed[gate] for gate in GATES}  # every gate serving requires, in its order


def version_metadata(
    name: str,
    variant: str,
    graph: onnx.ModelProto,
    native_meta: dict,
    validation: dict,
    bench: dict,
    gates: dict[str, bool],
    settings: InferenceSettings,
    batch: int,
) -> dict[str, Any]:
    """onnxship.json of a version (sha256 and bytes are added once model.onnx is written).
    `settings` are the tuned session settings serving applies; `regimes` the speed per batch size."""
    sets = validation["variants"][variant]["sets"]
    cell = bench_cell(bench, variant, batch)
    native_cell = bench_cell(bench, NATIVE, batch)
    return {
        "model": name,
        "variant": variant,
        "family": native_meta["family"],
        "task": native_meta["task"],
        "features": native_meta["features"],
        # typed columns: each column's type and known categories (serving checks requests by them)
        **{k: native_meta[k] for k in ("layout", "columns") if k in native_meta},
        "input_shape": native_meta.get("input_shape", [len(native_meta["features"])]),
        "classes": native_meta["classes"],
        "target": native_meta.get("target"),
        **{k: native_meta[k] for k in ("forecast", "speed_only") if k in native_meta},
        **describe_io(graph),
        "inference_settings": settings.as_dict(),
        "accepts_nan": "nan" in validation.get("hostile_rows", {}),
        **missing_categories(native_meta, sets),
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
        "target_batch_size": batch,
        "regimes": regime_table(validation, bench, variant),
    }


def missing_categories(native_meta: dict, sets: dict) -> dict[str, bool]:
    """A model of typed columns: whether serving takes a null category (validate found the graph
    answers a missing category as the native model answers None: onnxship.parity.columns)."""
    if native_meta.get("layout") != "columns":
        return {}
    from onnxship.parity.columns import ANSWERED_LIKE_NATIVE, MISSING_SET

    return {"accepts_missing_categories": bool(sets.get(MISSING_SET, {}).get(ANSWERED_LIKE_NATIVE, False))}


def build_version_dir(
    out: Path,
    graph: onnx.ModelProto,
    metadata: dict,
    settings: InferenceSettings,
    feeds: dict[str, np.ndarray],
) -> dict:
    """The MLflow onnx-flavor folder plus onnxship.json; returns the metadata with the file's sha256."""
    import mlflow.onnx
    from mlflow.models import infer_signature

    model = OnnxModel(graph.SerializeToString(), settings)
    inputs = {
        k: v if v.dtype.kind in "iOU" else v.astype(np.float32) for k, v in feeds.items()
    }  # ids stay int64, strings (typed columns) strings
    sample = dict(zip(model.output_names, model.run_feed(inputs), strict=True))
    mlflow.onnx.save_model(
        graph,
        str(out),
        signature=infer_signature(inputs if len(inputs) > 1 else next(iter(inputs.values())), sample),
        save_as_external_data=False,
        pip_requirements=["onnxruntime", "onnx"],
        onnx_execution_providers=list(settings.providers),
        onnx_session_options={
            "intra_op_num_threads": settings.intra_op_threads,
            "inter_op_num_threads": settings.inter_op_threads,
        },
        metadata={"onnxship_variant": metadata["variant"]},
    )
    metadata = metadata | {
        "sha256": sha256_file(out / MODEL_FILE),
        "bytes": (out / MODEL_FILE).stat().st_size,
    }
    write_json(out / METADATA_FILE, metadata)
    parse_metadata((out / METADATA_FILE).read_bytes())  # never register what serving would refuse
    return metadata


def log_version(
    graph: onnx.ModelProto,
    metadata: dict,
    settings: InferenceSettings,
    feeds: dict[str, np.ndarray],
    evidence: dict[str, Any],
) -> tuple[dict, dict[str, str]]:
    """The version folder, with the evidence files beside the model, logged to the active run's
    `model` artifact path; returns the metadata with the model file's sha256, and the manifest
    (sha256 of every file logged) that the registry tags will vouch for."""
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        metadata = build_version_dir(folder, graph, metadata, settings, feeds)
        for file_name, content in evidence.items():
            write_json(folder / file_name, content)
        manifest = file_manifest(folder)
        mlflow.log_artifacts(str(folder), "model")
    return metadata, manifest


def version_tags(
    active: Any,
    native_meta: dict,
    metadata: dict,
    bench: dict,
    variant: str,
    batch: int,
    manifest: dict[str, str],
) -> dict:
    """Lineage on the registry version: what it was built from, what was registered, how fast;
    and what serving trusts: the sha256 of every file (manifest) and the gates."""
    cell = bench_cell(bench, variant, batch)
    return {
        # what was committed, whether the tree was clean (pipeline outputs aside), the diff's digest
        **{
            k: active.data.tags[k]
            for k in ("git_commit", "git_tree", "git_diff_sha256")
            if k in active.data.tags
        },
        "pipeline_run": active.data.tags.get("pipeline_run", ""),
        # the pipeline's locks (dvc.lock, pipeline/<stage>/dvc.lock) as the package stage started
        "dvc_lock_sha256": active.data.tags.get("dvc_lock_sha256", "none"),
        "params_sha256": active.data.tags.get("params_sha256", ""),
        "source_model_sha256": native_meta["native_sha256"],
        "onnx_sha256": metadata["sha256"],
        "variant": variant,
        "parity_verdict": "pass",  # only a variant whose parity gate passed is registered
        f"p50_ms_b{batch}": f"{cell['p50_ms']:.4f}",
        f"p99_ms_b{batch}": f"{cell['p99_ms']:.4f}",
        "package_run_id": active.info.run_id,  # the MLflow run holding the artifacts
        **manifest_tags(manifest, metadata["gates"]),
    }


def register(client: Any, name: str, description: str, source: str, run_id: str, tags: dict) -> int:
    """A new version of `name` (the registered model is created on first use)."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=description)
    return int(client.create_model_version(name, source=source, run_id=run_id, tags=tags).version)


def package_message(result: dict, registered_name: str, variant: str | None, reasons: list[str]) -> str:
    """The package stage's one line: what was registered (an ONNX variant, or natively) or why not."""
    if result.get("runtime") == "native":
        native = f"NATIVE ({result['native_reason']})"
        return f"{registered_name} v{result['version']} {native}, alias '{result['alias']}'"
    if result.get("native_refused"):
        return f"NOT registered ({'; '.join(reasons)}); no native fallback: {result['native_refused']}"
    if result["registered"]:
        alias = f"alias '{result['alias']}'" if "alias" in result else "no alias: " + "; ".join(reasons)
        return f"{registered_name} v{result['version']} ({variant}), {alias}"
    return f"NOT registered ({'; '.join(reasons)})"
