"""Tests compose the real conf/ with Hydra and shrink it (tiny models, tmp paths, short timings)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from onnxship.pipeline.config import compose_config

ROOT = Path(__file__).resolve().parents[1]

TINY = ["experiment=smoke"]  # conf/experiment/smoke.yaml


def tiny_config(tmp_path: Path, extra: list[str] = ()) -> DictConfig:
    """The real config, shrunk, writing everything (MLflow store included) under tmp_path."""
    overrides = [
        *TINY,
        f"paths.prepared={tmp_path}/data/prepared",
        f"paths.native={tmp_path}/models/native",
        f"paths.onnx={tmp_path}/models/onnx",
        f"paths.optimized={tmp_path}/models/optimized",
        f"paths.checkpoints={tmp_path}/models/checkpoints",
        f"paths.reports={tmp_path}/reports",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
        f"tracking.artifact_root={tmp_path}/mlartifacts",
        *extra,
    ]
    return compose_config(overrides, config_dir=ROOT / "conf")


def with_model(cfg: DictConfig, name: str) -> DictConfig:
    cfg = cfg.copy()
    OmegaConf.update(cfg, "model", name)
    return cfg


@pytest.fixture(scope="session", autouse=True)
def _migrated_sqlite_stores(tmp_path_factory):
    """A new SQLite MLflow store is created by running MLflow's schema migrations (about 3 s);
    the suite creates a hundred-odd. This process migrates one store once, then fills each new
    store of the tests' own process with a copy of it (SQLite's backup API): the same schema,
    made by MLflow's own migrations. Stores created by the processes the tests start (stages,
    `dvc repro`, watchers, servers) still migrate themselves, so that path stays tested."""
    import sqlite3
    from contextlib import closing

    import mlflow.store.db.utils as db_utils
    import mlflow.store.model_registry.sqlalchemy_store as registry_store
    import sqlalchemy

    migrate = db_utils._initialize_tables
    template = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    migrate(sqlalchemy.create_engine(f"sqlite:///{template}"))

    def from_template(engine) -> None:
        if engine.url.get_backend_name() != "sqlite" or not engine.url.database:
            return migrate(engine)
        target = engine.url.database
        with closing(sqlite3.connect(template)) as source, closing(sqlite3.connect(target)) as copy:
            source.backup(copy)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(db_utils, "_initialize_tables", from_template)
        patch.setattr(registry_store, "_initialize_tables", from_template)  # imported by name there
        yield


@pytest.fixture(autouse=True)
def _no_env_tracking(monkeypatch):
    """Each test's config decides the MLflow store, whatever the developer's environment says."""
    from onnxship.pipeline import tracking

    monkeypatch.setattr(tracking, "USER_ENV", {})
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)  # mlflow.set_registry_uri sets it
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)


@pytest.fixture(scope="session", autouse=True)
def _working_tree_stays_clean():
    """Tests write under tmp dirs only; MLflow's default artifact folder (./mlruns) must not appear."""
    existed = (ROOT / "mlruns").exists()
    yield
    assert existed or not (ROOT / "mlruns").exists(), "a test logged MLflow artifacts into ./mlruns"


SMOKE_COPY = ["conf", "onnxship", "stages", "serving", "tools", "dvc.yaml", "params.yaml", "pyproject.toml"]
SMOKE_COPY += ["pipeline"]  # the per-model stages' dvc.yaml files (their locks are left behind)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the marks to group the tests
def pytest_collection_modifyitems(items) -> None:
    """Under `pytest -n 2 --dist loadgroup` (make test) every test that reads the shared smoke run
    goes to one worker, so it is built once; the other tests share the second worker."""
    for item in items:
        if "smoke_build" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("pipeline"))


def sh(cmd: list[str], cwd: Path, **env: str):
    """Run a command as a user would (this venv first on PATH); fail the test with its output."""
    import os
    import subprocess
    import sys

    full = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **env}
    # mlflow.set_*_uri write these variables: a test that ran a stage in this process leaves them set
    full.pop("MLFLOW_TRACKING_URI", None)
    full.pop("MLFLOW_REGISTRY_URI", None)
    done = subprocess.run(cmd, cwd=cwd, env=full, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="session")
def smoke_build(tmp_path_factory) -> dict[str, Path]:
    """The one pipeline run the suite shares: the project on the smoke experiment in a git
    repository, one real `dvc repro`, everything committed (a user's clone after `make run` and a
    commit) -> "project"; and a snapshot of its outputs and MLflow store taken right then ->
    "outputs", for the tests that read or add to a pipeline's results, so the end-to-end tests
    (which edit, rebuild and re-run the project) and they never see each other's writes."""
    import os
    import shutil
    import sys

    if os.environ.get("PYTEST_XDIST_WORKER"):  # the workers share the parent of their base temp
        built = tmp_path_factory.getbasetemp().parent / "smoke-built-by"
        assert not built.exists(), (
            f"the smoke run was already built by {built.read_text()}: the tests that use it were not "
            "kept on one worker (pytest-xdist --dist loadgroup; pytest 9.2 breaks it, pytest-xdist#1386)"
        )
        built.write_text(os.environ["PYTEST_XDIST_WORKER"])
    root = tmp_path_factory.mktemp("smoke")
    project = root / "project"
    project.mkdir()
    for name in SMOKE_COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, project / name, ignore=shutil.ignore_patterns("__pycache__", "dvc.lock"))
        else:
            shutil.copy(src, project / name)
    config = project / "conf" / "config.yaml"
    config.write_text(config.read_text().replace("  - experiment: null", "  - experiment: smoke"))
    sh(["git", "init", "-q"], project)
    sh(["git", "config", "user.email", "test@example.invalid"], project)
    sh(["git", "config", "user.name", "test"], project)
    sh(["dvc", "init", "-q"], project)
    shutil.copy(ROOT / ".dvc" / "config", project / ".dvc" / "config")  # Hydra integration on
    shutil.copy(ROOT / ".dvcignore", project / ".dvcignore")  # bytecode is not code (stage `code`)
    shutil.copytree(ROOT / ".dvc" / "plots", project / ".dvc" / "plots", dirs_exist_ok=True)
    (project / ".gitignore").write_text("/mlflow.db\n/mlartifacts/\n__pycache__/\n")
    sh([sys.executable, "-m", "tools.params"], project)
    # as another machine would run it: OpenBLAS on another CPU's kernels, a Python hash seed that
    # flips set orders in the converters (test_e2e_dvc compares its outputs with the committed hashes)
    elsewhere = {"OPENBLAS_CORETYPE": "Sandybridge", "PYTHONHASHSEED": "20"}
    project.joinpath("first_repro.log").write_text(sh(["dvc", "repro"], project, **elsewhere).stdout)
    sh(["git", "add", "-A"], project)
    sh(["git", "commit", "-q", "-m", "smoke run"], project)
    outputs = root / "outputs"
    for part in ("data", "models", "reports", "mlartifacts"):
        shutil.copytree(project / part, outputs / part)
    shutil.copy(project / "mlflow.db", outputs / "mlflow.db")  # its artifact URIs name project/
    return {"project": project, "outputs": outputs}


@pytest.fixture(scope="session")
def pipeline_dir(smoke_build) -> Path:
    return smoke_build["outputs"]


@pytest.fixture(scope="session")
def tiny_pipeline(pipeline_dir: Path):
    """(config, {model: {"export": export.json}}) over the smoke run's outputs: prepare,
    checkpoint, train, export, optimize, validate, benchmark, package and summarize, whole zoo."""
    from onnxship.contract import EXPORT_REPORT
    from onnxship.io import read_json

    cfg = tiny_config(pipeline_dir)
    results = {
        name: {"export": read_json(Path(cfg.paths.onnx) / name / EXPORT_REPORT)} for name in cfg.zoo.models
    }
    return cfg, results


@pytest.fixture(scope="session")
def row(tiny_pipeline) -> dict:
    """One test-split row of features by name, as a /predict body carries it."""
    import pandas as pd

    cfg, _ = tiny_pipeline
    frame = pd.read_parquet(Path(cfg.paths.prepared) / "test.parquet")
    return {k: float(v) for k, v in frame.drop(columns="Demand").iloc[0].items()}


def packaging_into(tracking_uri: str, pipeline_dir: Path, tmp_path_factory, request) -> DictConfig:
    """The xgboost config over a copy of the tiny pipeline's outputs, packaging into another MLflow
    store; this process's MLflow URIs (which the package stage sets) are restored afterwards."""
    import shutil

    import mlflow

    work = tmp_path_factory.mktemp("pipeline-copy")
    for part in ("data", "models", "reports"):
        shutil.copytree(pipeline_dir / part, work / part)
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    request.addfinalizer(lambda: (mlflow.set_tracking_uri(previous[0]), mlflow.set_registry_uri(previous[1])))
    return with_model(tiny_config(work, [f"tracking.uri={tracking_uri}"]), "xgboost")


def modules_loaded_by(code: str) -> dict[str, str | None]:
    """Module name -> file of every module a fresh interpreter holds after running `code`."""
    import json
    import subprocess
    import sys

    script = (
        f"{code}\nimport json, sys\n"
        "print(json.dumps({n: getattr(m, '__file__', None) for n, m in list(sys.modules.items())}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# the serving tests' shared registry and server (tests/served.py), as fixtures for every module
from tests.served import _registry_template, registry, server  # noqa: E402, F401
