"""A real registry watcher process (`python -m serving.registry.watcher`) with its events collected,
for the tests of following, the cache and its trust (test_trust, test_cache_trust)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT


class Watcher:
    """A real `python -m serving.registry.watcher`, its events collected from stdout."""

    def __init__(
        self, uri: str, models: list[str], cache: Path, *extra: str, alias: str = "champion", env=None
    ):
        """The registry URI goes in the environment, as the server passes it (`env` adds more)."""
        command = [sys.executable, "-m", "serving.registry.watcher", "--alias", alias]
        command += ["--models", ",".join(models), "--cache-dir", str(cache), "--interval", "0.2"]
        command += ["--heartbeat", "0.5", *extra]
        environment = {**os.environ, "MLFLOW_TRACKING_URI": uri, **(env or {})}
        self.proc = subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environment
        )
        self.events: list[dict] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def send(self, command: dict) -> None:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(json.loads(line))

    def wait(self, predicate, seconds: float = 60) -> dict:
        for event in self.events:
            if predicate(event):
                return event
        deadline = time.time() + seconds
        while time.time() < deadline:
            try:
                event = self._queue.get(timeout=0.2)
            except queue.Empty:
                assert self.proc.poll() is None, f"watcher exited with {self.proc.returncode}"
                continue
            self.events.append(event)
            if predicate(event):
                return event
        pytest.fail(
            f"no such event in {seconds} s; saw {[e for e in self.events if e['event'] != 'heartbeat']}"
        )

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def is_event(kind: str, model: str | None = None, version: str | None = None):
    def match(e: dict) -> bool:
        return e["event"] == kind and model in (None, e.get("model")) and version in (None, e.get("version"))

    return match


def alias(uri: str, name: str, version: str) -> None:
    MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias(name, "champion", version)
