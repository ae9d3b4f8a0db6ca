"""Drop dvc.lock's entries for stages dvc.yaml no longer defines.

DVC keeps the entry of a stage that left the pipeline (a zoo model removed, a stage renamed:
treeverse/dvc#5293), and it re-reads and re-writes the whole lock around every stage it runs, so
each stale entry is paid on every stage of every later run. `make run` calls this before
`dvc repro`; tests/test_layout.py checks the committed lock has none. The entries are removed
with DVC's own YAML writer, so the lock keeps the format DVC writes.

    python -m tools.prune_lock           # remove them, naming each
    python -m tools.prune_lock --check   # exit 1 naming them
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FOREACH = "${zoo.models}"  # the only foreach of dvc.yaml: one stage per zoo model


def pipeline_stages(dvc_yaml: Path = ROOT / "dvc.yaml", params: Path = ROOT / "params.yaml") -> set[str]:
    """Every stage name dvc.yaml defines, per-model stages expanded over params.yaml's zoo."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    models = yaml.safe_load(params.read_text())["zoo"]["models"]
    names: set[str] = set()
    for name, body in stages.items():
        if "foreach" not in body:
            names.add(name)
        elif body["foreach"] == FOREACH:
            names |= {f"{name}@{model}" for model in models}
        else:
            raise ValueError(f"dvc.yaml: stage '{name}' loops over {body['foreach']!r}, not {FOREACH}")
    return names


def stale_stages(lock: Path = ROOT / "dvc.lock", dvc_yaml: Path = ROOT / "dvc.yaml",
                 params: Path = ROOT / "params.yaml") -> list[str]:  # fmt: skip
    if not lock.exists():
        return []
    # PyYAML's C loader: a tenth of the time of DVC's round-trip parse, enough to decide
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # PyYAML built without libyaml lacks it
    recorded = (yaml.load(lock.read_text(), Loader=loader) or {}).get("stages", {})
    return sorted(set(recorded) - pipeline_stages(dvc_yaml, params))


def prune(lock: Path, names: list[str]) -> None:
    from dvc.utils.serialize import modify_yaml

    with modify_yaml(str(lock)) as data:
        for name in names:
            del data["stages"][name]


def main(argv: list[str]) -> int:
    lock = Path("dvc.lock")
    stale = stale_stages(lock, Path("dvc.yaml"), Path("params.yaml"))
    if not stale:
        return 0
    if "--check" in argv:
        print(f"dvc.lock holds stages dvc.yaml no longer defines: {', '.join(stale)} "
              "(python -m tools.prune_lock removes them)", file=sys.stderr)  # fmt: skip
        return 1
    prune(lock, stale)
    print(f"dvc.lock: removed {len(stale)} entries of stages no longer in the pipeline: {', '.join(stale)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
