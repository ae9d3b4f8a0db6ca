"""The registry watcher: a sidecar process the server starts (`python -m serving.registry.watcher`).

It polls where each model's alias points, and when it moves, downloads, verifies and probes the
new version, then tells the server on stdout, one JSON event per line:
  {"event": "ready", "model", "version", "path"[, "origin"]} verified and probed: the server loads it
                                                            (origin: a local copy, registry down)
  {"event": "rejected", "model", "version", "reason"}       never served; not retried
  {"event": "confirmed", "model", "version"}                 the registry is back, alias unchanged
  {"event": "missing", "model", "reason"}                   no such model or alias yet
  {"event": "registry_error", "reason"}                     registry unreachable this round
Keeping the MLflow client here keeps the server process free of MLflow's dependencies (pandas,
pyarrow, cloudpickle), and no registry call ever happens on the request path. It exits when the
server closes its stdin.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
from pathlib import Path

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def poll_once(client, args, served: dict[str, str], rejected: dict[str, str], local: set[str]) -> None:
    from mlflow.exceptions import MlflowException

    from serving.registry.fetch import RejectedModel, download, probe, verify

    for name in args.models:
        try:
            version = client.get_model_version_by_alias(name, args.alias)
        except MlflowException as err:
            if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                emit("missing", model=name, reason=f"no version of '{name}' has alias '{args.alias}'")
                continue
            raise
        if name in local:  # the registry answers again: the local copy is settled either way
            local.discard(name)
            if version.version == served.get(name):
                emit("confirmed", model=name, version=version.version)
        if version.version in (served.get(name), rejected.get(name)):
            continue
        folder = Path(args.cache_dir) / name / f"v{version.version}"
        # a download that fails (network, server) raises through: a registry error, retried next poll
        download(version.source, folder, args.tracking_uri)
        try:
            metadata = verify(folder, version.tags.get("onnx_sha256"))
            probe(folder)
        except RejectedModel as err:
            rejected[name] = version.version
            emit("rejected", model=name, version=version.version, reason=str(err))
            continue
        served[name] = version.version
        emit(
            "ready",
            model=name,
            version=version.version,
            path=str(folder.resolve()),
            variant=metadata.get("variant"),
        )
        try:
            remember(args, name, version.version, folder, metadata["sha256"])
        except OSError as err:  # only the start-from-local-copy fallback loses this version
            print(f"cannot record the local copy of {name}: {err}", file=sys.stderr)


def record_path(args, name: str) -> Path:
    return Path(args.cache_dir) / name / f"{args.alias}.json"


def remember(args, name: str, version: str, folder: Path, sha256: str) -> None:
    """Which verified copy the alias last pointed at, for a start while the registry is down."""
    record = {
        "tracking_uri": args.tracking_uri,
        "version": version,
        "path": str(folder.resolve()),
        "sha256": sha256,
    }
    path = record_path(args, name)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(record))
    partial.replace(path)  # atomic: a crash leaves the old record or the new one


def serve_local_copies(args, served: dict[str, str], refused: set[str], local: set[str], reason: str) -> None:
    """Registry unreachable before a model was ever served: offer the verified copy the alias last
    pointed at, checked again (sha256, external data, probe) before the server sees it. Tried once
    per model; a refused copy is not retried (the registry's own copy still is, when it returns)."""
    from serving.registry.fetch import probe, verify

    for name in args.models:
        if name in served or name in refused:
            continue
        try:
            record = json.loads(record_path(args, name).read_text())
        except (OSError, ValueError):
            continue  # no copy: the model stays not-ready with the registry error as the reason
        if not isinstance(record, dict) or record.get("tracking_uri") != args.tracking_uri:
            continue
        refused.add(name)
        try:
            folder = Path(record["path"])
            verify(folder, record["sha256"])
            probe(folder)
        except Exception as err:  # RejectedModel, a malformed record, unreadable files
            emit("rejected", model=name, version=str(record.get("version")), reason=f"local copy: {err}")
            continue
        refused.discard(name)
        served[name] = record["version"]
        local.add(name)
        emit(
            "ready",
            model=name,
            version=record["version"],
            path=str(folder),
            origin=f"verified local copy (registry unreachable: {reason})",
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--alias", required=True)
    parser.add_argument("--models", required=True, type=lambda s: s.split(","))
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--request-timeout", type=float, default=10.0)
    parser.add_argument("--serve-local-copy", action="store_true")
    args = parser.parse_args(argv)
    # One attempt per poll, bounded in time: MLflow's default HTTP client retries a down tracking
    # server with backoff for minutes, which would hide the outage; the next poll is the retry.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, round(args.request_timeout))))
    from mlflow.tracking import MlflowClient

    client = None
    served: dict[str, str] = {}
    rejected: dict[str, str] = {}
    local: set[str] = set()  # served from a local copy, not yet confirmed by the registry
    refused: set[str] = set()  # local copies tried and refused
    while True:
        try:
            # made inside the loop: a store that is down at start raises here, and is retried
            client = client or MlflowClient(tracking_uri=args.tracking_uri, registry_uri=args.tracking_uri)
            poll_once(client, args, served, rejected, local)
        except Exception as err:  # registry down, network, database locked: report and try again
            reason = f"{type(err).__name__}: {str(err)[:300]}"
            emit("registry_error", reason=reason)
            if args.serve_local_copy:
                serve_local_copies(args, served, refused, local, reason)
        readable, _, _ = select.select([sys.stdin], [], [], args.interval)
        if readable and not sys.stdin.readline():
            return  # the server went away


if __name__ == "__main__":
    main()
