"""File helpers: atomic writes (a failed stage never leaves half a file), JSON, digests.

Imported by the server process too: numpy and the standard library only."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_dir", "read_json", "sha256_file", "to_json", "write_json", "write_text"]


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file: the pipeline records it, serving checks it."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_path(path: str | Path) -> str:
    """sha256 of a file, or of a folder (its files' relative names and digests, in name order):
    native models may be folders (Chronos checkpoints)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def size_bytes(path: str | Path) -> int:
    """Bytes of a file, or of every file in a folder."""
    path = Path(path)
    return (
        path.stat().st_size
        if path.is_file()
        else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=_json_default, allow_nan=True) + "\n"


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, to_json(data))


def read_json(path: str | Path) -> Any:
    with open(path) as fh:
        return json.load(fh)


def write_text(path: str | Path, text: str) -> Path:
    """Write through a temporary file in the same folder, then rename: all or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a scratch folder; on success it replaces `target` whole, on failure it is removed
    and `target` keeps whatever it held before."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    scratch.chmod(0o755)  # mkdtemp creates 0700
    try:
        yield scratch
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            try:
                scratch.rename(target)
            except BaseException:
                old.rename(target)  # put the previous output back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            scratch.rename(target)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
