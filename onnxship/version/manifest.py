"""What the registry vouches for: the sha256 of every file of a registered version, and its gates.

The package stage writes both into registry tags (the registry database, not the artifact store),
so someone who can write to the artifact store but not to the registry cannot change a byte of
what is served: the serving watcher and `promote` require these tags and check every file they
read against them. Standard library only (imported by the watcher and by the package stage).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from onnxship.io import sha256_file

MANIFEST_TAG = "onnxship_manifest"  # {"<file name>": "<sha256>", ...} of the version's folder
GATES_TAG = "onnxship_gates"  # {"export": true, "parity": true, "benchmark": true}
# the gates every version records; serving takes a version only when each one is recorded, passed
GATES = ("export", "parity", "benchmark")
ONNX_SHA_TAG = "onnx_sha256"
RUN_TAG = "package_run_id"  # the MLflow run that logged the version's files
SHA256 = re.compile(r"[0-9a-f]{64}")
FILE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")  # flat names only: no folders, no "..", no "/"
MAX_FILES = 64
MAX_TAG_CHARS = 5000  # MLflow's limit on a model-version tag value


class ManifestError(ValueError):
    """A manifest or gates tag that is missing or malformed; the message says how."""


def file_manifest(folder: Path) -> dict[str, str]:
    """sha256 of every file directly in a version folder, by name (a version folder is flat)."""
    files = sorted(p for p in Path(folder).iterdir())
    nested = [p.name for p in files if not p.is_file()]
    if nested:
        raise ManifestError(f"a version folder holds files only, found folder(s) {nested}")
    return {p.name: sha256_file(p) for p in files}


def manifest_tags(manifest: dict[str, str], gates: dict[str, bool]) -> dict[str, str]:
    """Registry tags for a version: its file manifest and its gates, as compact JSON."""
    tags = {
        MANIFEST_TAG: json.dumps(manifest, sort_keys=True, separators=(",", ":")),
        GATES_TAG: json.dumps(gates, sort_keys=True, separators=(",", ":")),
    }
    parse_manifest(tags[MANIFEST_TAG])  # never write a tag serving would refuse
    if len(tags[MANIFEST_TAG]) > MAX_TAG_CHARS:
        raise ManifestError(f"manifest of {len(manifest)} files is too long for one registry tag")
    return tags


def _load_small_json(text: object, what: str) -> object:
    if not isinstance(text, str) or not text:
        raise ManifestError(f"the registry records no {what} tag")
    if len(text) > MAX_TAG_CHARS:
        raise ManifestError(f"the {what} tag is longer than {MAX_TAG_CHARS} characters")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise ManifestError(f"the {what} tag is not valid JSON") from None


def parse_manifest(text: object) -> dict[str, str]:
    """The manifest tag as {file name: sha256}; ManifestError naming the problem otherwise."""
    manifest = _load_small_json(text, MANIFEST_TAG)
    if not isinstance(manifest, dict) or not 0 < len(manifest) <= MAX_FILES:
        raise ManifestError(f"the {MANIFEST_TAG} tag is not an object of 1..{MAX_FILES} files")
    for name, digest in manifest.items():
        if not FILE_NAME.fullmatch(name) or name in (".", ".."):
            raise ManifestError(f"the {MANIFEST_TAG} tag lists a file name that is not a plain name")
        if not isinstance(digest, str) or not SHA256.fullmatch(digest):
            raise ManifestError(f"the {MANIFEST_TAG} tag's entry for {name} is not a sha256")
    return manifest


def parse_gates(text: object) -> dict[str, bool]:
    """The gates tag as {gate: passed}; ManifestError when missing, malformed or empty."""
    gates = _load_small_json(text, GATES_TAG)
    if (
        not isinstance(gates, dict)
        or not gates
        or not all(isinstance(k, str) and isinstance(v, bool) for k, v in gates.items())
    ):
        raise ManifestError(f"the {GATES_TAG} tag is not an object of gate: true/false")
    return gates
