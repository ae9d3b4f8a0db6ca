"""Lineage of a stage run: which pipeline run it belongs to and which source tree it ran.

Pipeline run. DVC runs each stage as its own process and gives it no run id, so the id is derived
from the `dvc repro` (or `dvc exp run`) process above the stage: its pid and start time, hashed.
Every stage of one `dvc repro` gets the same id; the next `dvc repro` a new one. A stage run by
hand (`python -m stages.x`) has no such ancestor and is tagged `standalone`. ONNXSHIP_PIPELINE_RUN
overrides both (an orchestrator that runs stages itself names its run).

Source tree. `dvc repro` rewrites dvc.lock and the reports as it goes, so before the package stage
runs the tree always differs from the commit: those paths are what the pipeline writes, not what
it ran, and are left out (so are .gitignore files: DVC rewrites those beside its outputs). What is
left is the commit, whether the tree was clean, and, if not, the sha256 of the diff against the
commit, so two dirty runs of the same edits are seen to be the same.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

# what `dvc repro` itself writes into the git tree while it runs: the locks (dvc.lock and
# pipeline/<stage>/dvc.lock), the reports, and the .gitignore files beside its outputs (removed
# with an output and written back after its stage)
PIPELINE_WRITES = ("**/dvc.lock", "reports", "**/.gitignore")
PIPELINE_RUN_ENV = "ONNXSHIP_PIPELINE_RUN"
STANDALONE = "standalone"


def is_dvc_run(cmdline: list[str]) -> bool:
    """`dvc repro` / `dvc exp run`, as a console script (python .../bin/dvc repro), a frozen
    binary (dvc repro) or a module (python -m dvc repro)."""
    head = [Path(w).name for w in cmdline[:4]]
    return "dvc" in head and any(w in ("repro", "exp") for w in cmdline[1:6])


def pipeline_run_id() -> str:
    """The id shared by every stage of one `dvc repro` (see the module docstring)."""
    if os.environ.get(PIPELINE_RUN_ENV):
        return os.environ[PIPELINE_RUN_ENV]
    import psutil

    try:
        for parent in psutil.Process().parents():
            if is_dvc_run(parent.cmdline()):
                key = f"{parent.pid}:{parent.create_time():.3f}"
                return "dvc-" + hashlib.sha256(key.encode()).hexdigest()[:16]
    except (psutil.Error, OSError):
        pass
    return STANDALONE


def _git(*args: str) -> bytes:
    return subprocess.run(["git", *args], capture_output=True, check=True).stdout


def source_state() -> dict[str, str]:
    """{git_commit, git_tree: clean|dirty|unknown, git_diff_sha256 (dirty only)}. Untracked files
    do not make a tree dirty, as for `git describe --dirty`."""
    excluded = [f":(exclude,glob){p}" for p in PIPELINE_WRITES]
    try:
        commit = _git("rev-parse", "HEAD").decode().strip()
        diff = _git("diff", "HEAD", "--binary", "--", ".", *excluded)
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": "unknown", "git_tree": "unknown"}
    if not diff:
        return {"git_commit": commit, "git_tree": "clean"}
    return {"git_commit": commit, "git_tree": "dirty", "git_diff_sha256": hashlib.sha256(diff).hexdigest()}
