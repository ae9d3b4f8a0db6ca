"""Registry side of serving, run in the watcher process (never in the server process): resolve an
alias, download only model.onnx and its JSON, check the recorded sha256 and external-data paths,
then probe the model in a child process (a malformed graph can crash ONNX Runtime)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from onnxship.contract import BENCHMARK_FILE, METADATA_FILE, MODEL_FILE
from onnxship.io import sha256_file

OPTIONAL_FILES = (BENCHMARK_FILE,)
PROBE_TIMEOUT_S = 60


class RejectedModel(Exception):
    """A registered version that must not be served; the message says why."""


def download(source: str, dest: Path, tracking_uri: str) -> Path:
    """Download one version's files into dest (all or nothing); errors propagate (transient)."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        for name in (MODEL_FILE, METADATA_FILE, *OPTIONAL_FILES):
            try:
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"{source}/{name}", dst_path=str(partial), tracking_uri=tracking_uri
                )
            except (MlflowException, OSError):
                if name in OPTIONAL_FILES:
                    continue
                raise  # the registry or its artifact store failed: retried at the next poll
        shutil.rmtree(dest, ignore_errors=True)
        partial.rename(dest)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return dest


def verify(folder: Path, expected_sha256: str | None) -> dict[str, Any]:
    """sha256 recorded at packaging == file on disk; no external data outside the folder."""
    model = folder / MODEL_FILE
    for path in (model, folder / METADATA_FILE):
        if path.is_symlink() or not path.is_file():
            raise RejectedModel(f"{path.name} is missing or a symlink")
    try:
        metadata = json.loads((folder / METADATA_FILE).read_text())
    except ValueError as err:
        raise RejectedModel(f"{METADATA_FILE} is not valid JSON: {err}") from err
    actual = sha256_file(model)
    for where, recorded in (("metadata", metadata.get("sha256")), ("registry tag", expected_sha256)):
        if recorded and recorded != actual:
            raise RejectedModel(
                f"sha256 of model.onnx is {actual[:12]}…, the {where} records {recorded[:12]}…"
            )
    if not metadata.get("sha256"):
        raise RejectedModel("metadata records no sha256: refusing an unverifiable model")
    check_external_data(model)
    return metadata


def check_external_data(model_path: Path) -> None:
    """Packaged models are single files: any external-data reference is refused by name."""
    import onnx

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception as err:  # protobuf raises several types for garbage bytes
        raise RejectedModel(f"model.onnx does not parse as ONNX: {type(err).__name__}") from err
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        tensors += [a.t for a in node.attribute if a.HasField("t")]
    for tensor in tensors:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            location = {e.key: e.value for e in tensor.external_data}.get("location", "?")
            raise RejectedModel(
                f"tensor '{tensor.name}' points at external data '{location}'; "
                "served models must be self-contained"
            )


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
    return json.loads(done.stdout)
