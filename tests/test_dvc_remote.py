"""A team shares one DVC cache (issue 22, item 4): the pipeline's outputs pushed to a DVC remote
on S3-compatible storage (moto's server, as tests/test_s3.py starts it) after a run, and a fresh
clone that pulls them re-runs nothing that did not change (docs/team.md)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services import S3Server

# slow: it extends the shared smoke run's worker, the longest of `make test` (15-minute budget);
# `make test-all` runs it
pytestmark = [pytest.mark.e2e, pytest.mark.slow]
BUCKET = "onnxship-dvc"


def run(command: list[str], cwd: Path, env: dict) -> str:
    if command[0] == "dvc":  # this environment's DVC, whether or not its bin/ is on PATH
        command = [str(Path(sys.executable).parent / "dvc"), *command[1:]]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout + done.stderr


def tracked_files(project: Path) -> dict[str, bytes]:
    """Every file of data/ and models/ by path, with its bytes."""
    return {
        str(p.relative_to(project)): p.read_bytes()
        for part in ("data", "models")
        for p in sorted((project / part).rglob("*"))
        if p.is_file()
    }


def test_outputs_pushed_to_a_team_remote_are_pulled_by_a_fresh_clone_that_reruns_nothing(
    smoke_build, tmp_path
):
    s3 = S3Server(tmp_path / "moto.log", bucket=BUCKET).start()
    env = {**os.environ, **s3.env, "AWS_ENDPOINT_URL_S3": s3.url}
    try:
        # member A: the project after its run (the shared smoke run), its outputs as dvc.lock says
        member_a = tmp_path / "a"
        shutil.copytree(smoke_build["project"], member_a, symlinks=True)
        run(["git", "checkout", "-q", "--", "."], member_a, env)  # as committed, whatever ran since
        run(["dvc", "checkout", "-q"], member_a, env)
        run(["dvc", "remote", "add", "-d", "team", f"s3://{BUCKET}/cache"], member_a, env)
        run(["dvc", "remote", "modify", "team", "endpointurl", s3.url], member_a, env)
        run(["git", "commit", "-qam", "the team's DVC remote"], member_a, env)
        pushed = run(["dvc", "push"], member_a, env)
        assert s3.keys(), pushed  # the objects are in the bucket

        # member B: a fresh clone (no outputs, no cache), credentials from the environment
        member_b = tmp_path / "b"
        run(["git", "clone", "-q", str(member_a), str(member_b)], tmp_path, env)
        outputs = tracked_files(member_a)
        absent = [path for path in outputs if not (member_b / path).exists()]
        assert len(absent) > len(outputs) // 2, absent  # what git holds of data/ is only .gitignore files
        run(["dvc", "pull"], member_b, env)
        assert tracked_files(member_b) == outputs
        # what `dvc repro` would run: nothing (DVC decides a stage is stale exactly as status shows)
        status = run(["dvc", "status"], member_b, env)
        assert "Data and pipelines are up to date" in status, status
    finally:
        s3.stop()
