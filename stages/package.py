"""package: the best variant that passed every gate -> MLflow Model Registry.

One registered model per zoo model, one version per pipeline run (onnxship.packaging.build
says what a version holds). A variant that failed validation is never registered; alias
`candidate` moves to the new version only when every gate passed. With package.native_fallback,
a model no variant can carry is registered natively instead (onnxship/packaging/native.py).
"""

from __future__ import annotations

from pathlib import Path

import onnx
from omegaconf import DictConfig

from onnxship.contract import BENCHMARK_FILE, CANDIDATES_FILE, EXPORT_REPORT, NATIVE_META, VALIDATION_FILE
from onnxship.families import load_native
from onnxship.io import read_json, sha256_file
from onnxship.packaging.build import (
    gates_for,
    log_version,
    package_message,
    register,
    version_metadata,
    version_tags,
)
from onnxship.packaging.choice import candidate_table, choose_variant, tuned_settings
from onnxship.packaging.native import register_native
from onnxship.pipeline.config import as_plain, model_spec
from onnxship.pipeline.runner import Outcome, main, stage
from onnxship.pipeline.tracking import configure
from onnxship.pipeline.workload import workload
from onnxship.runtime import InferenceSettings


@stage("package", lambda cfg: {"package": as_plain(cfg.package)})
def run(cfg: DictConfig, active) -> Outcome:
    name, reports = cfg.model, Path(cfg.paths.reports)
    native_meta = read_json(Path(cfg.paths.native) / name / NATIVE_META)
    export = read_json(Path(cfg.paths.onnx) / name / EXPORT_REPORT)
    validation = read_json(reports / "validate" / f"{name}.json")
    bench = read_json(reports / "benchmark" / f"{name}.json")
    registered_name = f"{cfg.package.registered_model_prefix}{name}"
    batch = int(cfg.package.select_batch_size)
    variant, reasons = choose_variant(validation, bench, batch, float(cfg.package.min_gain_over_base))
    candidates = candidate_table(validation, bench)
    result: dict = {"model": name, "registered_model": registered_name, "registered": False,
                    "variant": variant, "target_batch_size": batch, "candidates": candidates}  # fmt: skip
    if variant is not None:
        onnx_path = Path(cfg.paths.optimized) / name / f"{variant}.onnx"
        gates = gates_for(variant, export, validation, bench, sha256_file(onnx_path))
        if not gates["parity"]:
            reasons = [f"{variant}: validated file and file to register differ (sha256)"]
    if variant is not None and gates["parity"]:
        feeds = workload(cfg).signature_feeds(model_spec(cfg), native_meta, 5)  # the signature's rows
        graph = onnx.load(str(onnx_path))  # loaded once: metadata and the MLflow folder share it
        # the session settings that made this variant fastest at the target batch size
        settings = InferenceSettings.from_mapping(
            as_plain(cfg.runtime) | tuned_settings(bench, variant, batch)
        )
        metadata = version_metadata(
            name, variant, graph, native_meta, validation, bench, gates, settings, batch
        )
        # the evidence travels with the version (serving's GET /benchmark reads it)
        evidence = {BENCHMARK_FILE: bench, VALIDATION_FILE: validation, CANDIDATES_FILE: candidates}
        metadata, manifest = log_version(graph, metadata, settings, feeds, evidence)
        tags = version_tags(active, native_meta, metadata, bench, variant, batch, manifest)
        client = configure(cfg)
        description = f"onnxship model '{name}' ({native_meta['family']})"
        source = f"{active.info.artifact_uri}/model"
        version = register(client, registered_name, description, source, active.info.run_id, tags)
        result |= {"registered": True, "version": version, "run_id": active.info.run_id}
        result |= {"sha256": metadata["sha256"], "gates": gates, "tags": tags, "regimes": metadata["regimes"]}
        if all(gates.values()):
            client.set_registered_model_alias(registered_name, cfg.package.alias, str(version))
            result["alias"] = cfg.package.alias
        else:
            reasons = [f"gate failed: {g}" for g, ok in gates.items() if not ok]
    if not result["registered"] and cfg.package.native_fallback:  # said plainly: runtime=native
        native = load_native(Path(cfg.paths.native) / name)
        client = configure(cfg)
        result |= register_native(
            client, active, registered_name, native, workload(cfg), export, reasons, cfg.package.alias
        )
    if reasons:
        result["reasons"] = reasons
    message = package_message(result, registered_name, variant, reasons)
    return Outcome(
        result,
        message,
        writes={reports / "package" / f"{name}.json": result},
        logged={"registered": result["registered"], "version": result.get("version", 0)},
    )


if __name__ == "__main__":
    main(run)
