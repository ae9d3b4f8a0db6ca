"""The watcher's download cache, shared by every watcher on a host (one per uvicorn worker).

    <cache_dir>/<model>/v<N>/            model.onnx, onnxship.json, benchmark.json (verified)
    <cache_dir>/<model>/v<N>.verified    the manifest it was verified and probed against
    <cache_dir>/<model>/<alias>.json     which version the alias last pointed at (local-copy start)
    <cache_dir>/<model>/.lock            held while a watcher downloads, verifies or prunes

Watchers of one host serialise on the model's lock: the first downloads, verifies and probes; the
others find the `.verified` marker, re-check the hashes (cheap) and skip the download and the
probe. Pruning keeps the versions in use (the served one, the previous one, and any a watcher
still names in its alias record) and deletes the rest, rejected downloads included.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from onnxship.version.verify import Vouched, verify
from serving.registry.fetch import download, probe

KEEP_VERSIONS = 2  # the served version and the one before it (a rollback is a cache hit)


@contextmanager
def model_lock(model_dir: Path) -> Iterator[None]:
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def version_dir(cache_dir: Path, name: str, version: str) -> Path:
    return Path(cache_dir) / name / f"v{version}"


def marker(folder: Path) -> Path:
    return folder.with_name(folder.name + ".verified")


def fetch_verified(
    cache_dir: Path, name: str, trusted: Vouched, tracking_uri: str, max_model_bytes: int
) -> tuple[Path, dict]:
    """A verified, probed copy of the version (downloaded unless a peer watcher already did);
    raises RejectedModel for bad content and anything else for a failed download."""
    folder = version_dir(cache_dir, name, trusted.version)
    fingerprint = json.dumps(trusted.manifest, sort_keys=True)
    with model_lock(folder.parent):
        done = marker(folder)
        if done.is_file() and done.read_text() == fingerprint and folder.is_dir():
            try:
                return folder, verify(folder, trusted)  # a peer's work: hashes re-checked, no probe
            except Exception:
                pass  # changed on disk since: fetch it again
        done.unlink(missing_ok=True)
        try:
            download(trusted, folder, tracking_uri, max_model_bytes)
            metadata = verify(folder, trusted)
            probe(folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # a rejected or half-checked copy is not kept
            raise
        done.write_text(fingerprint)
        return folder, metadata


def prune(cache_dir: Path, name: str, keep: set[str]) -> list[str]:
    """Delete cached versions of `name` other than the `KEEP_VERSIONS` newest of `keep` (served,
    previous) and those any alias record still names; returns the versions deleted."""
    model_dir = Path(cache_dir) / name
    if not model_dir.is_dir():
        return []
    with model_lock(model_dir):
        in_use = set(sorted(keep, key=_number)[-KEEP_VERSIONS:])
        for record in model_dir.glob("*.json"):
            try:
                in_use.add(str(json.loads(record.read_text())["version"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        deleted = []
        for path in model_dir.iterdir():
            version = _version_of(path.name)
            if version is None or version in in_use:
                continue
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            deleted.append(version)
        return sorted(set(deleted), key=_number)


def _version_of(file_name: str) -> str | None:
    """'v12', 'v12.verified', 'v12.partial-…' -> '12'; anything else (records, the lock) -> None."""
    if not file_name.startswith("v"):
        return None
    head = file_name[1:].split(".", 1)[0]
    return head if head.isdigit() else None


def _number(version: str) -> int:
    return int(version) if version.isdigit() else -1
