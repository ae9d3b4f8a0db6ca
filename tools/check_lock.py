"""Did this run rebuild the committed outputs? Compares the hashes dvc.lock records for data/ and
models/ with those of the committed dvc.lock (git HEAD). Timings live in reports, never in these
outputs, so on any machine the same commit must give the same hashes.

    python -m tools.check_lock            # exit 1 naming every output whose hash differs
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

CACHED = ("data/", "models/")


def out_hashes(lock_text: str) -> dict[str, str]:
    """path -> md5 of every cached output under data/ and models/ in a dvc.lock."""
    hashes = {}
    for stage in (yaml.safe_load(lock_text) or {}).get("stages", {}).values():
        for out in stage.get("outs", []):
            if out["path"].startswith(CACHED):
                hashes[out["path"]] = out["md5"]
    return hashes


def differences(committed: str, current: str) -> list[str]:
    before, after = out_hashes(committed), out_hashes(current)
    return [
        f"{path}: committed {before.get(path, 'absent')}, now {after.get(path, 'absent')}"
        for path in sorted(set(before) | set(after))
        if before.get(path) != after.get(path)
    ]


def main() -> int:
    try:
        committed = subprocess.run(
            ["git", "show", "HEAD:dvc.lock"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        print("no committed dvc.lock to compare with", file=sys.stderr)
        return 1
    diff = differences(committed, Path("dvc.lock").read_text())
    for line in diff:
        print(f"differs: {line}", file=sys.stderr)
    if not diff:
        count = len(out_hashes(committed))
        print(f"reproduced: every data/ and models/ hash equals the committed dvc.lock ({count} outputs)")
    return 1 if diff else 0


if __name__ == "__main__":
    raise SystemExit(main())
