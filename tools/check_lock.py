"""Did this run rebuild the committed outputs? Compares the hashes the pipeline's locks (dvc.lock
and pipeline/<stage>/dvc.lock: onnxship/pipeline/dvc_files.py) record for data/ and models/ with those
of the committed locks (git HEAD). Timings live in reports, never in these outputs, so on any
machine the same commit must give the same hashes.

    python -m tools.check_lock            # exit 1 naming every output whose hash differs
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from onnxship.pipeline.dvc_files import load_lock, lock_files

CACHED = ("data/", "models/")


def out_hashes(lock_text: str) -> dict[str, str]:
    """path -> md5 of every cached output under data/ and models/ in a dvc.lock."""
    hashes = {}
    for stage in load_lock(lock_text).values():
        for out in stage.get("outs", []):
            if out["path"].startswith(CACHED):
                hashes[out["path"]] = out["md5"]
    return hashes


def differences(committed: dict[str, str], current: dict[str, str]) -> list[str]:
    return [
        f"{path}: committed {committed.get(path, 'absent')}, now {current.get(path, 'absent')}"
        for path in sorted(set(committed) | set(current))
        if committed.get(path) != current.get(path)
    ]


def committed_lock(path: Path) -> str | None:
    try:
        return subprocess.run(
            ["git", "show", f"HEAD:{path.as_posix()}"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> int:
    committed: dict[str, str] = {}
    current: dict[str, str] = {}
    found = False
    for lock in lock_files():
        text = committed_lock(lock)
        found |= text is not None
        committed |= out_hashes(text or "")
        current |= out_hashes(lock.read_text()) if lock.exists() else {}
    if not found:
        print("no committed dvc.lock to compare with", file=sys.stderr)
        return 1
    diff = differences(committed, current)
    for line in diff:
        print(f"differs: {line}", file=sys.stderr)
    if not diff:
        count = len(committed)
        print(f"reproduced: every data/ and models/ hash equals the committed locks' ({count} outputs)")
    return 1 if diff else 0


if __name__ == "__main__":
    raise SystemExit(main())
