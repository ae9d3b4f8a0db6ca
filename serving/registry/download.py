"""The download child: fetches a version's files from the artifact store into a folder, in a
process of its own so that the watcher can hold it to a deadline (killed when it runs over) and
to the size caps of the bytes actually written (RLIMIT_FSIZE, per file), not only to the sizes the
store's listing claims: a file swapped for a larger one after the listing stops at its cap.

Started by serving.registry.fetch through a forkserver that has MLflow imported already, so a
download costs a fork, not an interpreter start. Credentials travel in the pickled arguments,
never on a command line.
"""

from __future__ import annotations

import os
import resource
import signal
from multiprocessing.connection import Connection
from pathlib import Path

from serving.redact import without_credentials

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
PRELOAD = ["mlflow.artifacts", "serving.registry.download"]


def over_cap(folder: Path, caps: dict[str, int]) -> str | None:
    """The first file in `folder` that reached past its cap (its write was stopped there)."""
    for path in folder.rglob("*"):
        cap = caps.get(path.name, min(caps.values()))
        if path.is_file() and path.stat().st_size > cap:
            return path.name
    return None


def fetch_files(
    source: str,
    tracking_uri: str,
    folder: str,
    caps: dict[str, int],
    environ: dict[str, str],
    reply: Connection,
) -> None:
    """Download each of `caps`' files (name -> most bytes) from `source` into `folder`, with the
    caller's environment now (store credentials and endpoints: the forkserver's is the one it
    started with); sends ("ok", None), ("too_big", name) or ("error", text) on `reply`."""
    from serving.registry.fetch import die_with_parent

    die_with_parent()  # the forkserver ends with the watcher: so does this download
    os.environ.clear()
    os.environ.update(environ)
    import mlflow.artifacts

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        for name, cap in caps.items():
            limit = cap + 1  # one byte more than allowed: reaching it proves the file was too big
            resource.setrlimit(
                resource.RLIMIT_FSIZE, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard)
            )
            try:
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"{source}/{name}", dst_path=folder, tracking_uri=tracking_uri
                )
            except Exception as err:
                big = over_cap(Path(folder), caps)
                reply.send(
                    ("too_big", big)
                    if big
                    else ("error", without_credentials(f"{type(err).__name__}: {err}")[:500])
                )
                return
            big = over_cap(Path(folder), caps)
            if big:
                reply.send(("too_big", big))
                return
        reply.send(("ok", None))
    finally:
        reply.close()
