"""End to end: `dvc repro` in a temporary git copy of the project on the smoke experiment, then a
second `dvc repro` that re-runs nothing, `dvc metrics show`, `dvc plots show`, the registry; an
edit to core code marking exactly the stages that import it (once stage `code` re-hashed it);
`dvc exp run -S`; the smoke run's data/ and models/ hashes equal to those committed
(tests/smoke_hashes.json), and a forced stage writing the same bytes again."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from onnxship.pipeline.dvc_files import lock_files
from tests.conftest import ROOT, sh
from tools.check_lock import out_hashes

pytestmark = pytest.mark.e2e
SMOKE_HASHES = ROOT / "tests" / "smoke_hashes.json"


@pytest.fixture(scope="module")
def project(smoke_build) -> Path:
    """The suite's one smoke run (tests/conftest.py): a git repository after `dvc repro`, committed."""
    return smoke_build["project"]


def client_of(project: Path) -> MlflowClient:
    uri = f"sqlite:///{project}/mlflow.db"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def stage_runs(project: Path) -> list:
    client = client_of(project)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, max_results=5000)


def test_repro_registers_every_model_then_reruns_nothing(project: Path):
    zoo = yaml.safe_load((project / "params.yaml").read_text())["zoo"]["models"]
    last = f"Running stage 'pipeline/package/dvc.yaml:package@{list(zoo)[-1]}'"
    assert last in (project / "first_repro.log").read_text()
    client = client_of(project)
    assert sorted(m.name for m in client.search_registered_models()) == sorted(zoo)
    for name in zoo:
        version = client.get_model_version_by_alias(name, "candidate")
        assert version.tags["parity_verdict"] == "pass" and version.tags["dvc_lock_sha256"] != "none"

    # every stage run of that one `dvc repro` carries the same pipeline-run id
    assert len({r.data.tags["pipeline_run"] for r in stage_runs(project)}) == 1
    assert stage_runs(project)[0].data.tags["pipeline_run"].startswith("dvc-")

    second = sh(["dvc", "repro"], project)
    assert "Running stage" not in second.stdout, second.stdout
    assert len(client.search_model_versions("name='xgboost'")) == 1

    metrics = sh(["dvc", "metrics", "show"], project).stdout
    assert "reports/validate/xgboost.metrics.json" in metrics and "b1_p50_ms" in metrics
    assert "test_max_abs_diff" in metrics and "reports/benchmark/stack_ridge.metrics.json" in metrics
    plots = sh(["dvc", "plots", "show", "-o", "plots_out"], project)
    html = (project / "plots_out" / "index.html").read_text()
    assert "p50 latency vs batch size" in html, plots.stdout
    assert (project / "reports" / "summary.md").read_text().count("@candidate") == len(zoo)


def stale_stages(project: Path) -> set[str]:
    status = json.loads(sh(["dvc", "status", "--json"], project).stdout)
    # pipeline/<stage>/dvc.yaml's stages are named with their file: "pipeline/.../dvc.yaml:train@x"
    return {name.split(":")[-1].split("@")[0] for name in status}


# each edit, what it must mark stale and what it must leave fresh
EDITS = [
    ("onnxship/parity/hostile.py", {"validate"}, {"train", "export", "benchmark"}),
    (  # package loads the trained model to register it natively (package.native_fallback)
        "onnxship/families/stacking.py",
        {"train", "export", "validate", "benchmark", "package"},
        {"optimize"},
    ),
    ("onnxship/pipeline/runner.py", {"prepare", "train", "package", "summarize"}, set()),
    ("onnxship/passes/ort_graph.py", {"optimize"}, {"train", "validate"}),
]


def test_editing_core_code_marks_the_stages_that_use_it(project: Path):
    """Each edit in turn (the one before undone), so the project is re-hashed once per edit and
    once at the end: DVC's calls are most of this test's time."""
    originals = {edited: (project / edited).read_text() for edited, _, _ in EDITS}
    try:
        for i, (edited, stale, fresh) in enumerate(EDITS):
            (project / edited).write_text(originals[edited] + "\n# an edit\n")
            if not i:  # the code folders changed: only their digests are stale until `code` re-runs
                assert stale_stages(project) == {"code"}
            sh(["dvc", "repro", "-s", "code"], project)  # rewrites reports/code/<stage>.txt
            found = stale_stages(project)
            assert stale <= found, (edited, found)
            assert not fresh & found, (edited, found)
            (project / edited).write_text(originals[edited])  # undone before the next edit
    finally:  # the shared project as committed again, for the tests after this one, pass or fail
        for edited, text in originals.items():
            (project / edited).write_text(text)
        sh(["dvc", "repro", "-s", "code"], project)
    assert stale_stages(project) == set()


@pytest.mark.slow  # ~4 min: every train stage re-runs (zoo.models is train's param); make test-all
def test_dvc_exp_run_takes_a_parameter_and_exp_show_lists_it(project: Path):
    sh(
        ["dvc", "exp", "run", "--temp", "-n", "depth4", "-S", "zoo.models.xgboost.params.max_depth=4"],
        project,
    )
    shown = json.loads(sh(["dvc", "exp", "show", "--json"], project).stdout)
    text = json.dumps(shown)
    assert "depth4" in text
    assert '"max_depth": 4' in text, "the experiment's params are listed"
    assert "test_max_abs_diff" in text, "the experiment's metrics are listed"
    assert stale_stages(project) == set(), "--temp leaves the workspace as it was"


def test_the_smoke_run_reproduces_the_committed_hashes(project: Path):
    """Same commit, same bytes on any machine: the smoke run (tests/conftest.py, run as another
    machine would: OpenBLAS on another CPU's kernels, another Python hash seed) gives every data/
    and models/ output the hash committed in tests/smoke_hashes.json."""
    committed = json.loads(SMOKE_HASHES.read_text())
    produced = {}
    for lock in lock_files(project):  # dvc.lock and pipeline/<stage>/dvc.lock
        produced |= out_hashes(sh(["git", "show", f"HEAD:{lock.as_posix()}"], project).stdout)
    if produced != committed:
        observed = project / "smoke_hashes.observed.json"
        observed.write_text(json.dumps(dict(sorted(produced.items())), indent=1) + "\n")
        differ = sorted(p for p in set(committed) | set(produced) if committed.get(p) != produced.get(p))
        pytest.fail(
            f"{len(differ)} output(s) differ from tests/smoke_hashes.json: {differ}. If the change of "
            f"output is intended: cp {observed} tests/smoke_hashes.json"
        )


def test_a_forced_stage_rebuilds_the_same_bytes_under_a_new_pipeline_run(project: Path):
    """A forced re-run (a stage from scratch, under another hash seed) writes the committed bytes
    again and is recorded as a new pipeline run on the clean committed tree."""
    before = {r.info.run_id: r.data.tags["pipeline_run"] for r in stage_runs(project)}
    shutil.rmtree(project / "data")
    sh(["dvc", "repro", "--force", "--single-item", "prepare"], project, PYTHONHASHSEED="21")
    check = sh([sys.executable, "-m", "tools.check_lock"], project)
    assert "reproduced" in check.stdout
    # lineage: a new pipeline-run id for this repro; the committed tree counts as clean although
    # the repro rewrote dvc.lock
    new = [r for r in stage_runs(project) if r.info.run_id not in before]
    assert len(new) == 1
    assert new[0].data.tags["pipeline_run"] not in set(before.values())
    head = sh(["git", "rev-parse", "HEAD"], project).stdout.strip()
    assert {(r.data.tags["git_commit"], r.data.tags["git_tree"]) for r in new} == {(head, "clean")}
