"""End to end: `dvc repro` in a temporary copy of the project on the smoke experiment, then a
second `dvc repro` that re-runs nothing, `dvc metrics show`, `dvc plots show`, and the registry."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e
COPY = ["conf", "stages", "serving", "dvc.yaml", "params.yaml", "pyproject.toml"]


def sh(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    for name in COPY:
        src = ROOT / name
        (
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
            if src.is_dir()
            else shutil.copy(src, root / name)
        )
    config = root / "conf" / "config.yaml"
    config.write_text(config.read_text().replace("  - experiment: null", "  - experiment: smoke"))
    sh(["git", "init", "-q"], root)
    sh(["dvc", "init", "-q"], root)
    shutil.copytree(ROOT / ".dvc" / "plots", root / ".dvc" / "plots", dirs_exist_ok=True)
    sh([sys.executable, "-m", "stages.params"], root)
    return root


def test_repro_registers_every_model_then_reruns_nothing(project: Path):
    first = sh(["dvc", "repro"], project)
    assert "Running stage 'package@stack_lightgbm'" in first.stdout
    client = MlflowClient(
        tracking_uri=f"sqlite:///{project}/mlflow.db", registry_uri=f"sqlite:///{project}/mlflow.db"
    )
    names = sorted(m.name for m in client.search_registered_models())
    assert names == ["catboost", "lightgbm", "stack_lightgbm", "stack_ridge", "xgboost"]
    for name in names:
        version = client.get_model_version_by_alias(name, "candidate")
        assert version.tags["parity_verdict"] == "pass" and version.tags["dvc_lock_sha256"] != "none"

    second = sh(["dvc", "repro"], project)
    assert "Running stage" not in second.stdout, second.stdout
    assert len(client.search_model_versions("name='xgboost'")) == 1

    metrics = sh(["dvc", "metrics", "show"], project).stdout
    assert "reports/validate/xgboost.metrics.json" in metrics and "b1_p50_ms" in metrics
    assert "test_max_abs_diff" in metrics and "reports/benchmark/stack_ridge.metrics.json" in metrics
    plots = sh(["dvc", "plots", "show", "-o", "plots_out"], project)
    html = (project / "plots_out" / "index.html").read_text()
    assert "p50 latency vs batch size" in html, plots.stdout
    assert (project / "reports" / "summary.md").read_text().count("@candidate") == 5


def test_stale_params_yaml_stops_a_stage(project: Path):
    zoo = project / "conf" / "zoo" / "tabular.yaml"
    original = zoo.read_text()
    zoo.write_text(original.replace("max_depth: 6", "max_depth: 5"))
    try:
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        done = subprocess.run(
            [sys.executable, "-m", "stages.train", "model=xgboost"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 1
        assert "params.yaml is out of step with conf/ (zoo.models.xgboost.params.max_depth)" in done.stderr
    finally:
        zoo.write_text(original)
