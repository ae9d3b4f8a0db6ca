"""MLflow tracking for stages: one run per model per stage, in one experiment per model, so runs
of a model from different pipeline runs sit side by side in the UI (filter by tags.stage)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from onnxship import store
from onnxship.io import sha256_file, write_json
from onnxship.pipeline.dvc_files import locks_sha256
from onnxship.pipeline.lineage import pipeline_run_id, source_state

# The user's MLFLOW_* variables, read once at import: mlflow.set_tracking_uri() writes that variable
# itself, so reading it later would pin every later call to the first store configured.
USER_ENV = {k: os.environ[k] for k in (store.TRACKING_ENV, store.REGISTRY_ENV) if k in os.environ}


def tracking_uri(cfg: DictConfig) -> str:
    return store.tracking_uri(cfg.tracking.uri, USER_ENV)


def configure(cfg: DictConfig) -> MlflowClient:
    uri = tracking_uri(cfg)
    # The registry lives in the same store (SQLite file or tracking server) unless the user says
    # otherwise; set both every time: set_*_uri are process-global, and a registry URI left from an
    # earlier configure() would send versions to the previous store.
    registry = store.registry_uri(uri, USER_ENV)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(registry)
    return MlflowClient(tracking_uri=uri, registry_uri=registry)


def experiment_id(cfg: DictConfig, name: str) -> str:
    client = configure(cfg)
    full = f"{cfg.tracking.experiment_prefix}{name}"
    found = client.get_experiment_by_name(full)
    if found is not None:
        return found.experiment_id
    location = None
    uri = tracking_uri(cfg)
    if not uri.startswith(("http://", "https://", "databricks")):
        location = Path(cfg.tracking.artifact_root).resolve().as_uri()
    return client.create_experiment(full, artifact_location=location)


def lineage_tags(stage: str, model: str | None) -> dict[str, str]:
    """What a stage run ran (commit, clean or the diff's digest, params) and which pipeline run
    it was part of (onnxship.pipeline.lineage)."""
    tags = {"stage": stage, "dvc_stage": f"{stage}@{model}" if model else stage}
    tags |= source_state() | {"pipeline_run": pipeline_run_id()}
    if model:
        tags["model"] = model
    if Path("params.yaml").exists():
        tags["params_sha256"] = sha256_file("params.yaml")
    if Path("dvc.lock").exists():  # the pipeline's locks as this stage starts: what ran upstream
        tags["dvc_lock_sha256"] = locks_sha256(Path.cwd())
    return tags


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, DictConfig):
        data = OmegaConf.to_container(data, resolve=True)
    out: dict[str, Any] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    else:
        out[prefix] = data
    return out


def numeric_metrics(data: Mapping[str, Any]) -> dict[str, float]:
    """Keep the finite numbers of a flat dict (MLflow metrics must be numbers)."""
    out = {}
    for key, value in flatten(data).items():
        if isinstance(value, bool) or (
            isinstance(value, (int, float)) and value == value and abs(value) != float("inf")
        ):
            out[key] = float(value)
    return out


@contextmanager
def stage_run(cfg: DictConfig, stage: str, model: str | None, params: Mapping[str, Any]) -> Iterator[Any]:
    """Start a run named after the stage, tagged with lineage, params = the resolved config slice."""
    exp = experiment_id(cfg, model or "pipeline")
    with mlflow.start_run(experiment_id=exp, run_name=stage, tags=lineage_tags(stage, model)) as run:
        flat = {k: ("null" if v is None else str(v)[:6000]) for k, v in flatten(params).items()}
        for start in range(0, len(flat), 100):
            mlflow.log_params(dict(list(flat.items())[start : start + 100]))
        with tempfile.TemporaryDirectory() as tmp:
            resolved = Path(tmp) / "config.yaml"
            resolved.write_text(OmegaConf.to_yaml(cfg, resolve=True))
            mlflow.log_artifact(str(resolved))
        yield run


def log_report(report: Mapping[str, Any], name: str) -> None:
    """Log a stage's report: numeric leaves as metrics, the whole dict as a JSON artifact."""
    metrics = numeric_metrics(report)
    if metrics:
        mlflow.log_metrics(metrics)
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.log_artifact(str(write_json(Path(tmp) / name, report)))
