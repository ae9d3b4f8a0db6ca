"""Registering version folders the way the package stage does (files logged to a run, a version
whose tags vouch for them), and, for the attacks, with one thing changed."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from onnxship.version.manifest import file_manifest, manifest_tags

Tags = dict[str, str]


def trust_tags(folder: Path, run_id: str) -> Tags:
    """The tags the package stage writes for a version folder logged by run `run_id`."""
    metadata = json.loads((folder / "onnxship.json").read_text())
    manifest = file_manifest(folder)
    return {
        "onnx_sha256": manifest["model.onnx"],
        "parity_verdict": "pass" if all(metadata["gates"].values()) else "fail",
        "variant": str(metadata.get("variant", "base")),
        "package_run_id": run_id,
        **manifest_tags(manifest, metadata["gates"]),
    }


def scratch_dir(uri: str, prefix: str) -> Path:
    """A new folder beside a SQLite store (a test's tmp_path, which pytest cleans up), or in the
    system's temp folder for a store elsewhere."""
    db = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=db.parent if db and db.is_absolute() else None))


def register_folder(
    uri: str,
    name: str,
    folder: Path,
    retag: Callable[[Tags], Tags] | None = None,
    after_tagging: Callable[[Path], None] | None = None,
) -> str:
    """Log `folder` to a new run and register it as a new version of `name`, with the package
    stage's tags (`retag` may change them); `after_tagging` changes the files after the manifest
    was taken, as someone with write access to the artifact store would."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    mlflow.set_tracking_uri(uri)
    experiment = f"onnxship/{name}"
    if client.get_experiment_by_name(experiment) is None:
        # artifacts beside the store: MLflow's default (./mlruns) would land in the working tree
        client.create_experiment(experiment, artifact_location=scratch_dir(uri, "artifacts-").as_uri())
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name="test-version") as run:
        tags = trust_tags(folder, run.info.run_id)
        if after_tagging:
            after_tagging(folder)
        mlflow.log_artifacts(str(folder), "model")
    if retag:
        tags = retag(tags)
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(name)
    version = client.create_model_version(name, f"{run.info.artifact_uri}/model", run.info.run_id, tags=tags)
    return str(version.version)


def champion_registry(root: Path, graphs: dict[str, tuple]) -> str:
    """A fresh SQLite registry under `root` with one version per model, aliased `champion`:
    graphs maps a model name to (ONNX graph, task)."""
    from mlflow.tracking import MlflowClient

    from tests import tiny_versions

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    for name, (graph, task) in graphs.items():
        version = register_folder(uri, name, tiny_versions.write_version(root / name / "v1", graph, task))
        client.set_registered_model_alias(name, "champion", version)
    return uri
