"""What this server trusts about its cache, kept outside the cache (`state_dir`, mode 0700, files
0600): which version each alias last pointed at with the manifest the registry vouched for, and
which manifests this host's probe passed.

The cache may be shared, or writable by someone who should not decide what is served; nothing
read from it is believed. A copy in the cache is served only when its bytes match a manifest
recorded here, which only this server's watcher writes after the registry vouched for it; the
registry's own answer, as soon as it comes, is compared to that manifest (not only the version
number) and the copy withdrawn when they differ. The registry is named here by a digest of its
URI, never the URI itself (it may carry credentials).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from onnxship.version.verify import Vouched


def registry_id(text: str) -> str:
    """A registry URI (or cache path) as a digest: names it without saying it."""
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(trusted: Vouched) -> str:
    """One version's identity: its number and every byte the registry vouches for."""
    return json.dumps({"version": trusted.version, "manifest": trusted.manifest}, sort_keys=True)


class TrustedState:
    def __init__(self, root: Path, cache_dir: Path | None = None) -> None:
        """`cache_dir`: the cache these records speak of (a record made for another is ignored)."""
        self.root = Path(root)
        self.cache_id = registry_id(str(Path(cache_dir).resolve())) if cache_dir else ""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)  # an existing folder is narrowed too

    def _folder(self, model: str) -> Path:
        folder = self.root / model
        folder.mkdir(mode=0o700, exist_ok=True)
        return folder

    def _write(self, path: Path, text: str) -> None:
        partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        partial.replace(path)  # atomic: a crash leaves the old record or the new one

    def remember(self, model: str, alias: str, tracking_uri: str, trusted: Vouched) -> None:
        """The version `alias` pointed at on this registry, as the registry vouched for it."""
        record = {"registry": registry_id(tracking_uri), "cache": self.cache_id, **trusted.to_record()}
        self._write(self._folder(model) / f"{alias}.json", json.dumps(record))

    def recall(self, model: str, alias: str, tracking_uri: str) -> Vouched | None:
        """The last remembered version of `alias` on this registry (None: none, or another registry's)."""
        try:
            record = json.loads((self.root / model / f"{alias}.json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("registry") != registry_id(tracking_uri):
            return None
        if record.get("cache") != self.cache_id:
            return None
        return Vouched.from_record(record)

    def probed(self, model: str, trusted: Vouched) -> bool:
        """This host's probe passed for exactly this version and manifest."""
        try:
            return (self.root / model / f"v{trusted.version}.probed").read_text() == fingerprint(trusted)
        except OSError:
            return False

    def mark_probed(self, model: str, trusted: Vouched) -> None:
        self._write(self._folder(model) / f"v{trusted.version}.probed", fingerprint(trusted))

    def forget_probed(self, model: str, keep: set[str]) -> None:
        for path in (self.root / model).glob("v*.probed"):
            if path.name.removesuffix(".probed")[1:] not in keep:
                path.unlink(missing_ok=True)
