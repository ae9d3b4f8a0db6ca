"""The pipeline's DVC files: dvc.yaml (the stages that run once) and pipeline/<stage>/dvc.yaml
(the per-model stages, one file per stage kind), each with its dvc.lock beside it.

DVC re-reads and re-writes the lock of a stage's file around every stage it runs (a round-trip
parse of ~1 s for the 99 KB the whole pipeline's lock holds); six small locks cost a fraction
of that per stage. Whatever reads dvc.yaml or dvc.lock (tools/, the package's lineage) reads
them all through here.
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PER_MODEL_DIR = "pipeline"  # pipeline/<stage>/dvc.yaml


def dvc_files(root: Path = ROOT) -> list[Path]:
    """dvc.yaml first, then each stage kind's file, sorted."""
    return [root / "dvc.yaml", *sorted((root / PER_MODEL_DIR).glob("*/dvc.yaml"))]


def lock_of(dvc_yaml: Path) -> Path:
    return dvc_yaml.with_name("dvc.lock")


def lock_files(root: Path = ROOT) -> list[Path]:
    """Every pipeline lock path (existing or not), relative to `root`."""
    return [lock_of(f).relative_to(root) for f in dvc_files(root)]


def stages_of(dvc_yaml: Path) -> dict[str, dict]:
    return yaml.safe_load(dvc_yaml.read_text())["stages"]


def all_stages(root: Path = ROOT) -> dict[str, dict]:
    """Every stage of every file by name (names are unique across the files)."""
    out: dict[str, dict] = {}
    for path in dvc_files(root):
        for name, body in stages_of(path).items():
            if name in out:
                raise ValueError(f"{path.relative_to(root)}: stage '{name}' is defined twice")
            out[name] = body
    return out


def load_lock(text: str) -> dict:
    """A lock's stages, with PyYAML's C loader (a tenth of DVC's round-trip parse)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # PyYAML built without libyaml lacks it
    return (yaml.load(text, Loader=loader) or {}).get("stages", {})


def locks_sha256(root: Path = ROOT) -> str:
    """One digest of every pipeline lock there is (path and bytes): the lineage's pipeline state."""
    import hashlib

    digest = hashlib.sha256()
    for lock in lock_files(root):
        if (root / lock).exists():
            digest.update(f"{lock.as_posix()}\n".encode() + (root / lock).read_bytes())
    return digest.hexdigest()
