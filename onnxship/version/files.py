"""Reading a verified version's files for loading: once, as plain files within their caps, hashed
against the manifest the registry vouched for, so that what is loaded is exactly what was checked.
Used by the HTTP server (serving/http/store.py) and the probe (serving/registry/probe.py); no
MLflow, no ONNX parsing here.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from onnxship.contract import METADATA_FILE, MODEL_FILE
from onnxship.version.schema import MAX_METADATA_BYTES


class TamperedCopy(Exception):
    """The bytes read for loading are not the ones the registry vouched for."""


MODEL_CAP = 2 << 30  # ONNX's own protobuf limit; the watcher's max_model_bytes is at most this
JSON_CAP = MAX_METADATA_BYTES  # the watcher's cap on the JSON files too


def read_plain_file(path: Path, cap: int) -> bytes:
    """The bytes of a regular file of at most `cap` bytes: never through a symlink, never
    blocking on a FIFO or device, never more than the cap in memory (the cache may be writable
    by someone else)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        raise TamperedCopy(f"{path.name} cannot be opened as a plain file ({err.strerror})") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > cap:
            raise TamperedCopy(f"{path.name} is not a regular file within its {cap}-byte cap")
        data = fh.read(cap + 1)
    if len(data) > cap:
        raise TamperedCopy(f"{path.name} grew past its {cap}-byte cap while read")
    return data


def read_vouched(folder: Path, manifest: dict[str, str]) -> dict[str, bytes]:
    """Every file the manifest names, read once and hashed: what is loaded is exactly what was
    checked (no window between a verification and a second read from disk)."""
    files = {}
    for name, expected in manifest.items():
        data = read_plain_file(folder / name, MODEL_CAP if name == MODEL_FILE else JSON_CAP)
        if hashlib.sha256(data).hexdigest() != expected:
            raise TamperedCopy(f"{name} on disk is not the file the registry vouches for")
        files[name] = data
    if MODEL_FILE not in files or METADATA_FILE not in files:
        raise TamperedCopy("the announced manifest lacks model.onnx or onnxship.json")
    return files
