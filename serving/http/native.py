"""Models served natively (a version tagged runtime=native: onnxship/packaging/native.py): MLflow's
own scoring server (`mlflow models serve`) in a process this server starts and supervises, and
that model's /predict requests passed to it.

The ONNX server process still imports no training framework and no MLflow: the sidecar does,
in its own process, with the registry's credentials in its own environment (like the watcher).
Requests are checked here first (feature names, as for ONNX models), sent as MLflow's
`dataframe_split`, and the answer is put in this server's shape. The sidecar's errors are never
passed on: a refused input says "refused by the native model", an unreachable one is a 503.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from serving.http.values import InvalidInput

log = logging.getLogger("onnxship.native")
START_TIMEOUT_S = 300.0  # MLflow's server, the model's flavor and its framework import slowly


class NativeUnavailable(RuntimeError):
    """The native model's scoring server did not answer."""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_command(uri: str, port: int, workers: int = 1) -> list[str]:
    """MLflow's scoring server for a model URI, in this environment, on a loopback port."""
    return [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri, "--env-manager", "local",
            "-h", "127.0.0.1", "-p", str(port), "--workers", str(workers)]  # fmt: skip


class ScoringServer:
    """A running MLflow scoring server, by URL (the shadow replayer calls a native candidate's)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def invoke(self, frame: dict, timeout: float) -> list:
        """MLflow's /invocations with a dataframe_split body; its `predictions` list."""
        body = json.dumps({"dataframe_split": frame}).encode()
        request = urllib.request.Request(
            f"{self.url}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                predictions = json.loads(answer.read()).get("predictions")
        except urllib.error.HTTPError as err:
            if 400 <= err.code < 500:  # its message may repeat the input: never passed on
                raise InvalidInput(
                    f"features: refused by the native model (its scoring server said {err.code})"
                ) from None
            raise NativeUnavailable(f"the native model's scoring server answered {err.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise NativeUnavailable(
                f"the native model's scoring server did not answer ({type(err).__name__})"
            ) from None
        if not isinstance(predictions, list):
            raise NativeUnavailable("the native model's scoring server answered without predictions")
        return predictions


class NativeSidecar:
    """`mlflow models serve -m models:/<name>/<version>` on a loopback port, started and watched."""

    def __init__(
        self, name: str, version: str, uri: str, env: Mapping[str, str], log_dir: Path | None = None
    ):
        self.name, self.version, self.uri = name, version, uri
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # the venv's own uvicorn: `mlflow models serve` execs it by name
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env = {**os.environ, **env, "PATH": path, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
        self.log_path = (log_dir or Path("/tmp")) / f"native-{name}-{version}-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                serve_command(self.uri, self.port), env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise NativeUnavailable(f"MLflow's scoring server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise NativeUnavailable(f"MLflow's scoring server was not ready in {timeout:.0f} s")

    def stop(self) -> None:
        if not self.alive():
            return
        import signal

        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def invoke(self, frame: dict, timeout: float) -> list:
        return ScoringServer(self.url).invoke(frame, timeout)


def _cell(value: object, is_category: bool) -> object:
    if is_category:
        return "" if value is None else value  # a missing category is "", as CatBoost takes it
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def native_frame(metadata: dict, rows: Sequence[Mapping[str, object]]) -> dict:
    """Rows (names already checked) as MLflow's dataframe_split, typed as the signature wants:
    numbers as floats, categories as strings."""
    features = metadata["features"]
    categories = {c["name"] for c in metadata.get("columns") or [] if c.get("type") == "string"}
    data = []
    for r, row in enumerate(rows):
        values = []
        for name in features:
            value = row[name]
            if name in categories:
                if value is not None and not isinstance(value, str):
                    raise InvalidInput(f"rows[{r}].features.{name}: Input should be a string or null")
            elif value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise InvalidInput(f"rows[{r}].features.{name}: Input should be a number or null")
            values.append(_cell(value, name in categories))
        data.append(values)
    return {"columns": features, "data": data}


def native_answers(metadata: dict, predictions: list) -> dict:
    """MLflow's predictions in this server's shape (predictions, or labels for a classifier;
    MLflow's pyfunc gives no probabilities)."""
    flat = [p[0] if isinstance(p, list) and len(p) == 1 else p for p in predictions]
    if metadata["task"] == "regression":
        return {"predictions": [float(p) for p in flat]}
    classes = metadata.get("classes") or []
    by_index = classes and not all(isinstance(c, int) for c in classes)
    labels = [classes[p] if by_index and isinstance(p, int) and 0 <= p < len(classes) else p for p in flat]
    return {"labels": labels}
