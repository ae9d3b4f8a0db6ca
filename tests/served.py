"""The serving tests' shared registry and server: a copy of the shared smoke run's MLflow store
with every model (plus a toy forecaster and a real tiny Chronos-2) promoted to `champion`, and a
real uvicorn server over it. test_serving, test_fuzz, test_postgres and test_s3 import from here."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from onnxship.contract import ForecastSpec, ModelIO
from serving.registry.promote import promote
from tests import services, toy_forecaster
from tests.services import stop

MODELS = ["xgboost", "catboost", "stack_ridge", "mlp", "cnn", "toy_forecaster", "chronos2"]


MODELS += ["chronos2_covariates", "chronos_bolt_zero_shot"]  # registered by the pipeline itself
MODELS += ["diamonds_pipeline"]  # typed columns: numbers and string categories, one input each
MODELS += ["chronos2_open"]  # the tiny Chronos-2 declaring no covariates: it takes any, as zero-shot


CHRONOS_COVARIATES = [{"name": "temperature", "future": True}, {"name": "workday", "future": False}]


FORECASTER = toy_forecaster.metadata(
    context_length=32,
    horizon=6,
    levels=[0.1, 0.5, 0.9],
    covariates=[{"name": "temperature", "future": True}, {"name": "load", "future": False}],
)


@pytest.fixture(scope="session")
def _registry_template(tiny_pipeline, tmp_path_factory) -> Path:
    """The store `registry` copies, built once per test worker (about 20 s: a tiny Chronos-2
    exported, three versions registered, every model promoted through its checks)."""
    cfg, _ = tiny_pipeline
    db = tmp_path_factory.mktemp("registry-template") / "mlflow.db"
    shutil.copy(cfg.tracking.uri.removeprefix("sqlite:///"), db)
    uri = f"sqlite:///{db}"
    toy_forecaster.register(uri, "toy_forecaster", FORECASTER)
    family, est, spec = tiny_chronos2()
    meta = chronos_metadata(est)
    graph = family.to_onnx(est, ModelIO.forecast(spec), 17)
    toy_forecaster.register(uri, "chronos2", meta, graph, lambda s, feed: family.forecast(est, feed, s))
    # the same graph: Chronos-2 takes covariates as rows, so declaring none changes only the metadata
    open_meta = chronos_metadata(est, covariates=[]) | {"model": "chronos2_open"}
    toy_forecaster.register(
        uri, "chronos2_open", open_meta, graph, lambda s, feed: family.forecast(est, feed, s)
    )
    for name in MODELS:
        promote(name, None, "champion", uri)
    return db


@pytest.fixture(scope="module")
def registry(_registry_template: Path, tmp_path_factory) -> str:
    """A copy of the pipeline's MLflow store with every model promoted to `champion`, one per test
    module: what a module's tests register, promote or break stays in it. Versions' files are
    shared (they live beside the template, and no test changes a registered file)."""
    db = tmp_path_factory.mktemp("registry") / "mlflow.db"
    shutil.copy(_registry_template, db)
    return f"sqlite:///{db}"


def tiny_chronos2():
    """A real Chronos-2 (tiny, random weights, the library's own classes) and its forecast spec."""
    from onnxship import families

    family = families.get("chronos2")
    est = family.build(family.tiny_spec, {}, "forecast", seed=0)
    return family, est, ForecastSpec.from_metadata(chronos_metadata(est))


def chronos_metadata(est, covariates: list[dict] = CHRONOS_COVARIATES) -> dict:
    """A version's metadata for the tiny Chronos-2: its graph, served up to 4 x one call."""
    from tests.builders import spec_of

    spec = spec_of(est, 24, [(c["name"], c["future"]) for c in covariates], context_length=64)
    meta = toy_forecaster.metadata(
        context_length=64, horizon=24, levels=[float(q) for q in est.quantiles], covariates=covariates
    )
    return meta | {"model": "chronos2", "family": "chronos2", "forecast": spec.as_metadata()}


def start_server(
    registry: str, tmp_path_factory, wait_ready: bool = True, models=MODELS, **settings: str
) -> dict:
    """A real server over `registry` serving this module's models (xgboost by default)."""
    return services.start_server(
        registry, tmp_path_factory, models, wait_ready, default_model="xgboost", **settings
    )


@pytest.fixture(scope="module")
def server(registry, tmp_path_factory):
    started = start_server(registry, tmp_path_factory)
    yield started
    stop(started)


def served_version(server, name: str) -> str:
    return httpx.get(f"{server['url']}/models/{name}").json()["version"]


def registry_errors(server) -> float:
    for line in httpx.get(f"{server['url']}/metrics").text.splitlines():
        if line.startswith("onnxship_registry_poll_errors_total "):
            return float(line.split()[-1])
    return 0.0
