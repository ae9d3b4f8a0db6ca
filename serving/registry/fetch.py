"""Registry side of serving, run in the watcher process (never in the server process): download only
the files serving reads, each listed first (a folder or an oversized file is refused before a byte
is fetched), then check every byte against what the registry vouches for (onnxship.version.manifest),
the metadata against its schema, the graph for external data, and probe it in a child process
(a malformed graph can crash ONNX Runtime).

Errors come in two kinds: RejectedModel (this version's content is wrong: the same answer every
time, never retried) and everything else raised by download() (the registry or the store failed:
retried with backoff).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from onnxship.contract import MODEL_FILE
from onnxship.version.verify import MAX_JSON_BYTES, RejectedModel, Vouched

PROBE_TIMEOUT_S = 60


def size_cap(name: str, max_model_bytes: int) -> int:
    return max_model_bytes if name == MODEL_FILE else MAX_JSON_BYTES


def download(trusted: Vouched, dest: Path, tracking_uri: str, max_model_bytes: int) -> Path:
    """Fetch the served files into dest, all or nothing. Each file is listed first: a folder where a
    file belongs or a file over its cap is a RejectedModel before anything is fetched. The partial
    folder is this process's own, so watchers sharing a cache never delete each other's work."""
    import mlflow.artifacts

    listed = {
        Path(info.path).name: info
        for info in mlflow.artifacts.list_artifacts(artifact_uri=trusted.source, tracking_uri=tracking_uri)
    }
    for name in trusted.files:
        info = listed.get(name)
        if info is None:
            raise RejectedModel(f"{name} is listed in the manifest but not in the artifact store")
        if info.is_dir:
            raise RejectedModel(f"{name} is a folder in the artifact store, not a file")
        if info.file_size is not None and info.file_size > size_cap(name, max_model_bytes):
            raise RejectedModel(
                f"{name} is {info.file_size} bytes, over the {size_cap(name, max_model_bytes)} cap"
            )
    partial = dest.with_name(f"{dest.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    partial.mkdir(parents=True)
    try:
        for name in trusted.files:
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"{trusted.source}/{name}", dst_path=str(partial), tracking_uri=tracking_uri
            )
            got = partial / name
            if got.is_symlink() or not got.is_file() or got.stat().st_size > size_cap(name, max_model_bytes):
                raise RejectedModel(f"{name} as downloaded is not a plain file within its size cap")
        shutil.rmtree(dest, ignore_errors=True)
        partial.rename(dest)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return dest


def probe(folder: Path) -> dict[str, Any]:
    """Load and run the model in a child process; a crash there cannot take the server down."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "serving.registry.probe", str(folder)],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as err:
        raise RejectedModel(f"probe did not finish in {PROBE_TIMEOUT_S}s") from err
    if done.returncode != 0:
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}"
        last = (done.stderr.strip().splitlines() or [""])[-1]
        raise RejectedModel(f"probe failed ({how}): {last[:500]}")
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise RejectedModel("probe printed no result") from None
