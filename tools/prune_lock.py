"""Drop a lock's entries for stages its dvc.yaml no longer defines (dvc.yaml and each
pipeline/<stage>/dvc.yaml: onnxship/pipeline/dvc_files.py).

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

from onnxship.pipeline.dvc_files import dvc_files, load_lock, lock_of, stages_of

ROOT = Path(__file__).resolve().parents[1]
FOREACH = "${zoo.models}"  # the pipeline's only foreach: one stage per zoo model


def pipeline_stages(dvc_yaml: Path = ROOT / "dvc.yaml", params: Path = ROOT / "params.yaml") -> set[str]:
    """Every stage name a dvc.yaml defines, per-model stages expanded over params.yaml's zoo."""
    stages = stages_of(dvc_yaml)
    models = yaml.safe_load(params.read_text())["zoo"]["models"]
    names: set[str] = set()
    for name, body in stages.items():
        if "foreach" not in body:
            names.add(name)
        elif body["foreach"] == FOREACH:
            names |= {f"{name}@{model}" for model in models}
        else:
            raise ValueError(f"{dvc_yaml.name}: stage '{name}' loops over {body['foreach']!r}, not {FOREACH}")
    return names


def stale_stages(lock: Path = ROOT / "dvc.lock", dvc_yaml: Path = ROOT / "dvc.yaml",
                 params: Path = ROOT / "params.yaml") -> list[str]:  # fmt: skip
    if not lock.exists():
        return []
    return sorted(set(load_lock(lock.read_text())) - pipeline_stages(dvc_yaml, params))


def stale_entries(root: Path = ROOT) -> dict[Path, list[str]]:
    """{lock: its stale stage names} over every pipeline file, the ones with any."""
    found = {}
    for dvc_yaml in dvc_files(root):
        stale = stale_stages(lock_of(dvc_yaml), dvc_yaml, root / "params.yaml")
        if stale:
            found[lock_of(dvc_yaml).relative_to(root)] = stale
    return found


def prune(lock: Path, names: list[str]) -> None:
    from dvc.utils.serialize import modify_yaml

    with modify_yaml(str(lock)) as data:
        for name in names:
            del data["stages"][name]


def main(argv: list[str]) -> int:
    stale = stale_entries(Path.cwd())
    if stale and "--check" in argv:
        for lock, names in stale.items():
            print(f"{lock} holds stages its dvc.yaml no longer defines: {', '.join(names)} "
                  "(python -m tools.prune_lock removes them)", file=sys.stderr)  # fmt: skip
        return 1
    for lock, names in stale.items():
        prune(lock, names)
        print(f"{lock}: removed {len(names)} entries of stages no longer in the pipeline: {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
