"""The watcher's download cache, shared by every watcher on a host (one per uvicorn worker, and
servers following other aliases):

    <cache_dir>/<model>/v<N>/            model.onnx, onnxship.json, benchmark.json (verified)
    <cache_dir>/<model>/<alias>.json     the version that alias's watchers use: pruning keeps it
    <cache_dir>/<model>/.lock            held while a watcher downloads, verifies or prunes

Nothing in the cache is trusted: whether a folder was verified and probed, and against which
manifest, is kept in the server's private state (serving.registry.state), and every use of a
cached folder re-checks its hashes. Watchers serialise on the model's lock, waiting for it at most
`lock_timeout_s` (a lock held longer is a Stalled error, retried and shown in readiness, never a
silent wait). The alias claim is written under the same lock as the fetch, so another server's
prune can never delete a version between its download and its claim.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from onnxship.version.verify import Vouched, verify
from serving.registry.fetch import DOWNLOAD_DEADLINE_S, ProbeBudget, Stalled, download, probe
from serving.registry.state import TrustedState

KEEP_VERSIONS = 2  # the served version and the one before it (a rollback is a cache hit)
LOCK_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class FetchLimits:
    max_model_bytes: int = 2 << 30
    lock_timeout_s: float = LOCK_TIMEOUT_S
    download_deadline_s: float = DOWNLOAD_DEADLINE_S
    budget: ProbeBudget = field(default_factory=ProbeBudget)


LOCK_BEAT_S = 0.25  # how often a holder marks its lock as still in use (well under any lock_timeout_s)


@contextmanager
def model_lock(model_dir: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """The model's cache lock. Its holder touches the lock file every LOCK_BEAT_S while it works
    (a download may rightly take many minutes); a waiter gives up with Stalled only when the lock
    is held and its file has not been touched for `timeout_s`: a holder that stopped (frozen,
    hung) is told apart from one that is busy."""
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "r+") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                idle = time.time() - os.fstat(fh.fileno()).st_mtime
                if idle > timeout_s:
                    held = f"held by another process with no sign of progress for over {timeout_s:g} s"
                    raise Stalled(f"the cache lock of '{model_dir.name}' was {held}") from None
                time.sleep(0.05)
        done = threading.Event()
        beat = threading.Thread(target=_beat, args=(fh.fileno(), done), daemon=True)
        os.utime(fh.fileno())
        beat.start()
        try:
            yield
        finally:
            done.set()
            beat.join()
            fcntl.flock(fh, fcntl.LOCK_UN)


def _beat(fd: int, done: threading.Event) -> None:
    while not done.wait(LOCK_BEAT_S):
        try:
            os.utime(fd)
        except OSError:
            return


def version_dir(cache_dir: Path, name: str, version: str) -> Path:
    return Path(cache_dir) / name / f"v{version}"


def claim(cache_dir: Path, name: str, alias: str, version: str) -> None:
    """Which version `alias`'s watchers use (pruning keeps it); written under the model's lock."""
    path = Path(cache_dir) / name / f"{alias}.json"
    partial = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as fh:  # a fresh name, never a file someone planted
        fh.write(json.dumps({"version": version}))
    partial.replace(path)


def fetch_verified(
    cache_dir: Path,
    state: TrustedState,
    name: str,
    alias: str,
    trusted: Vouched,
    tracking_uri: str,
    limits: FetchLimits | None = None,
) -> tuple[Path, dict]:
    """A verified, probed copy of the version (downloaded unless a peer watcher already did), claimed
    for `alias`; raises RejectedModel for bad content, Stalled past a deadline, anything else for a
    failed download."""
    limits = limits or FetchLimits()
    folder = version_dir(cache_dir, name, trusted.version)
    with model_lock(folder.parent, limits.lock_timeout_s):
        if state.probed(name, trusted) and folder.is_dir():
            try:
                metadata = verify(folder, trusted)  # a peer's work: hashes re-checked, no probe
                claim(cache_dir, name, alias, trusted.version)
                return folder, metadata
            except Exception:
                pass  # changed on disk since: fetch it again
        try:
            download(trusted, folder, tracking_uri, limits.max_model_bytes, limits.download_deadline_s)
            metadata = verify(folder, trusted)
            probe(folder, limits.budget, trusted.served_manifest)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # a rejected or half-checked copy is not kept
            raise
        state.mark_probed(name, trusted)
        claim(cache_dir, name, alias, trusted.version)
        return folder, metadata


def prune(cache_dir: Path, name: str, keep: set[str], lock_timeout_s: float = LOCK_TIMEOUT_S) -> list[str]:
    """Delete cached versions of `name` other than the `KEEP_VERSIONS` newest of `keep` (served,
    previous) and those any alias claim still names; returns the versions deleted."""
    model_dir = Path(cache_dir) / name
    if not model_dir.is_dir():
        return []
    with model_lock(model_dir, lock_timeout_s):
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
    """'v12', 'v12.partial-…' -> '12'; anything else (claims, the lock) -> None."""
    if not file_name.startswith("v"):
        return None
    head = file_name[1:].split(".", 1)[0]
    return head if head.isdigit() else None


def _number(version: str) -> int:
    return int(version) if version.isdigit() else -1
