"""A zoo entry's data as the per-model stages read it (onnxship.data.workloads: feature rows /
tensors, or a series), found from the stage's config. Its own module, not config.py: every stage
imports the config, and only the stages that read a model's data should re-run when data/ changes."""

from __future__ import annotations

from omegaconf import DictConfig

from onnxship.data.workloads import Columns, Rows, Series, workload_at
from onnxship.pipeline.config import prepared_dir


def workload(cfg: DictConfig, name: str | None = None) -> Rows | Columns | Series:
    return workload_at(prepared_dir(cfg, name))
