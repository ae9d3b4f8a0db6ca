"""Warm starts (onnxship/pipeline/warm.py): a stage run that a fork server answers behaves like a new process:
the caller's directory, environment, arguments, standard streams and exit status; a killed caller
takes its stage with it; ONNXSHIP_WARM=0 and a missing server both run it cold."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from onnxship.pipeline import warm

PROBE = """
import json, os, sys, time
print("out", " ".join(sys.argv[1:]))
print("err line", file=sys.stderr)
with open("seen.json", "w") as f:
    json.dump({"cwd": os.getcwd(), "pid": os.getpid(), "pgid": os.getpgid(0), "argv": sys.argv[1:],
               "served": os.environ.get("ONNXSHIP_WARM_SERVED"), "mark": os.environ.get("PROBE_MARK"),
               "pin": os.environ.get("PROBE_PIN"),
               "run": os.environ.get("ONNXSHIP_PIPELINE_RUN"),
               "own": sorted(m for m in sys.modules if m.split(".")[0] == "onnxship")}, f)
if "--sleep" in sys.argv:
    time.sleep(60)
sys.exit(int(sys.argv[1]))
"""

CALL = "import sys; from onnxship.pipeline.warm import run; sys.exit(run('warm_probe', sys.argv[1:]))"


@pytest.fixture
def probe_dir(tmp_path: Path) -> Path:
    (tmp_path / "warm_probe.py").write_text(PROBE)
    return tmp_path


def probe_env(**extra: str) -> dict[str, str]:
    # a key of its own (no other test's server answers) and a light preload (seconds, not ten)
    return os.environ | {"ONNXSHIP_WARM_PRELOAD": "json", "PROBE_MARK": uuid.uuid4().hex} | extra


def call(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CALL, *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def wait_for_server(env: dict[str, str], seconds: float = 60) -> None:
    """The first call runs cold and starts the server; wait until it answers."""
    key = warm.server_key(env | {"ONNXSHIP_PIPELINE_RUN": "x"})
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock = warm._connect(warm.address(key))
        if sock is not None:
            sock.close()
            return
        time.sleep(0.2)
    raise AssertionError(f"the warm server did not come up in {seconds:g} s")


def seen(cwd: Path) -> dict:
    import json

    return json.loads((cwd / "seen.json").read_text())


def test_a_warm_run_is_the_callers_process_in_all_it_sees(probe_dir: Path):
    env = probe_env()
    first = call(probe_dir, env, "0", "a=1")
    assert first.returncode == 0 and seen(probe_dir)["served"] is None  # cold, and the server starts
    wait_for_server(env)

    other = probe_dir / "other"
    other.mkdir()
    (other / "warm_probe.py").write_text(PROBE)
    done = call(other, env, "3", "b=2")
    got = seen(other)
    assert got["served"] == "1", "the second call was not served warm"
    assert done.returncode == 3
    assert done.stdout == "out 3 b=2\n" and done.stderr == "err line\n"
    assert got["cwd"] == str(other) and got["argv"] == ["3", "b=2"] and got["mark"] == env["PROBE_MARK"]
    assert got["pgid"] == got["pid"]  # its own process group: a kill reaches everything it started
    assert got["run"] == "standalone"  # lineage found by the caller (no `dvc repro` above it here)
    assert got["own"] == []  # the project's code is never the server's copy


def test_killing_the_caller_stops_the_stage(probe_dir: Path):
    env = probe_env()
    call(probe_dir, env, "0")
    wait_for_server(env)
    (probe_dir / "seen.json").unlink()
    caller = subprocess.Popen([sys.executable, "-c", CALL, "0", "--sleep"], cwd=probe_dir, env=env)
    deadline = time.monotonic() + 30
    while not (probe_dir / "seen.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    stage = seen(probe_dir)
    assert stage["served"] == "1"
    caller.send_signal(signal.SIGTERM)
    assert caller.wait(timeout=30) != 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(stage["pid"], 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError("the stage outlived its caller")


def test_warm_off_runs_cold(probe_dir: Path):
    env = probe_env(ONNXSHIP_WARM="0")
    for _ in range(2):
        done = call(probe_dir, env, "5")
        assert done.returncode == 5 and seen(probe_dir)["served"] is None


def test_a_stage_run_once_per_pipeline_starts_no_server_of_its_own(probe_dir: Path):
    """checkpoint (its own environment, once per pipeline) runs cold and leaves no server behind:
    one would import every library beside the stage's builds and then serve nobody."""
    from stages.__main__ import NO_SERVER, STAGE_ENV

    assert "checkpoint" in NO_SERVER and "checkpoint" in STAGE_ENV
    env = probe_env()
    once = CALL.replace("sys.argv[1:])", "sys.argv[1:], start_server=False)")
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", once, "3"], cwd=probe_dir, env=env, capture_output=True)
        assert done.returncode == 3 and seen(probe_dir)["served"] is None
    with pytest.raises(AssertionError, match="did not come up"):
        wait_for_server(env, seconds=3)


def test_the_server_key_follows_the_environment_but_not_per_stage_variables():
    base = {"PATH": "/usr/bin", "OMP_NUM_THREADS": "1"}
    assert warm.server_key(base) == warm.server_key(base | {"DVC_STAGE": "export@xgboost", "SHLVL": "3"})
    assert warm.server_key(base) != warm.server_key(base | {"OMP_NUM_THREADS": "2"})


def test_variables_a_stage_sets_before_its_imports_reach_its_server():
    """A stage that sets a library's variable before importing it (train: numeric-kernel pins)
    must have its server started with it: a process that imported the library already would
    not honour it."""
    import ast

    from onnxship.pipeline import kernels
    from stages.__main__ import STAGE_ENV, STAGES
    from tests.conftest import ROOT

    assert set(STAGES) == {p.stem for p in (ROOT / "stages").glob("*.py") if not p.stem.startswith("_")}
    for stage in STAGES:
        tree = ast.parse((ROOT / "stages" / f"{stage}.py").read_text())
        sets_env = [ast.unparse(node) for node in tree.body if "os.environ" in ast.unparse(node)]
        if stage in STAGE_ENV:
            (pins,) = [name for name in ("REPRODUCIBLE_KERNELS", "TORCH_KERNELS") if name in str(sets_env)]
            assert sets_env == [f"os.environ.update({pins})"], stage
            assert STAGE_ENV[stage] == getattr(kernels, pins), stage
        else:
            assert not sets_env, f"{stage} sets variables before its imports: add them to STAGE_ENV"


def test_the_pins_reach_a_warm_child(probe_dir: Path):
    env = probe_env()
    call_pinned = CALL.replace("sys.argv[1:])", "sys.argv[1:], env={'PROBE_PIN': 'pinned'})")
    subprocess.run([sys.executable, "-c", call_pinned, "0"], cwd=probe_dir, env=env, check=True)
    wait_for_server(env | {"PROBE_PIN": "pinned"})
    subprocess.run([sys.executable, "-c", call_pinned, "0"], cwd=probe_dir, env=env, check=True)
    got = seen(probe_dir)
    assert got["served"] == "1" and got["pin"] == "pinned"


def test_every_stage_command_goes_through_the_warm_entry():
    from onnxship.pipeline.dvc_files import all_stages
    from tests.conftest import ROOT
    from tools.stage_deps import TOOL_STAGES

    stages = all_stages(ROOT)  # dvc.yaml and pipeline/<stage>/dvc.yaml
    assert {"prepare", "train", "benchmark", "summarize"} <= set(stages)
    for name, stage in stages.items():
        if name not in TOOL_STAGES:  # `code`, `params`: a second of standard library, nothing to warm
            assert stage.get("do", stage)["cmd"].startswith(f"python -m stages {name}"), name


def test_pipeline_and_serving_processes_send_mlflow_no_usage_reports(monkeypatch):
    """MLflow 3 reports usage over the network from every process that is not told otherwise:
    each stage (and its warm server), `onnxship`, and the registry watcher are told, unless the
    user says otherwise."""
    import stages.__main__ as entry

    seen: dict[str, str | None] = {}
    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    monkeypatch.setattr(
        warm, "run", lambda *a, **k: seen.update(env=os.environ.get("MLFLOW_DISABLE_TELEMETRY")) or 0
    )
    assert entry.main(["export", "model=xgboost"]) == 0 and seen["env"] == "true"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_DISABLE_TELEMETRY"}
    report = "print(os.environ.get('MLFLOW_DISABLE_TELEMETRY'))"
    watcher = f"import os, serving.registry.watcher; {report}"
    cli = f"import os, tools.cli as c; c.COMMANDS['x'] = (lambda a: 0, ''); c.main(['x']); {report}"
    for code in (watcher, cli):
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert done.stdout.split() == ["true"], code
