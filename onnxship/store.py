"""Which MLflow store an entry point talks to: one rule for the pipeline, the server's settings and
`onnxship-bench`. The user's MLFLOW_TRACKING_URI wins over the configured store (conf/tracking);
MLFLOW_REGISTRY_URI, when set, names a separate registry, else the registry is the same store."""

from __future__ import annotations

import os
from collections.abc import Mapping

TRACKING_ENV = "MLFLOW_TRACKING_URI"
REGISTRY_ENV = "MLFLOW_REGISTRY_URI"


def tracking_uri(configured: str, environ: Mapping[str, str] = os.environ) -> str:
    return environ.get(TRACKING_ENV) or configured


def registry_uri(tracking: str, environ: Mapping[str, str] = os.environ) -> str:
    return environ.get(REGISTRY_ENV) or tracking
