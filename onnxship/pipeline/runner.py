"""The one stage runner: every script in stages/ is a body `(cfg, run) -> Outcome` under @stage.

The runner opens the stage's MLflow run (tags, params = the config slice), calls the body, writes
the report files it returns (atomically), logs the report's numbers as metrics and the report as
an artifact, and logs the stage's one-line result. `python -m stages.<name> key=value ...` goes
through main(): params.yaml plus the overrides, and a PipelineError ends the process with its
message (exit 1) instead of a traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from omegaconf import DictConfig

from onnxship.errors import PipelineError
from onnxship.io import write_json
from onnxship.pipeline.config import load_params, model_spec, params_drift

log = logging.getLogger("onnxship.stage")


@dataclass
class Outcome:
    report: dict[str, Any]  # what run(cfg) returns; logged to MLflow (numbers as metrics)
    message: str  # the stage's one line for the console
    writes: dict[Path, Any] = field(default_factory=dict)  # report files: path -> JSON
    logged: Mapping[str, Any] | None = None  # what MLflow gets instead of `report`, if set
    artifacts: dict[Path, str] = field(default_factory=dict)  # local file -> artifact folder


Body = Callable[[DictConfig, Any], Outcome]


def stage(name: str, params: Callable[[DictConfig], Mapping[str, Any]], per_model: bool = True):
    """Wrap a stage body into `run(cfg) -> report`; `params` picks the config slice it depends on."""

    def wrap(body: Body) -> Callable[[DictConfig], dict[str, Any]]:
        @functools.wraps(body)
        def run(cfg: DictConfig) -> dict[str, Any]:
            import mlflow

            from onnxship.pipeline.tracking import log_report, stage_run

            model = cfg.model if per_model else None
            if per_model:
                model_spec(cfg, model)
            with stage_run(cfg, name, model, params(cfg)) as active:
                outcome = body(cfg, active)
                for path, data in outcome.writes.items():
                    write_json(path, data)
                log_report(outcome.report if outcome.logged is None else outcome.logged, f"{name}.json")
                for path, folder in outcome.artifacts.items():
                    mlflow.log_artifact(str(path), folder)
            log.info("%s%s: %s", name, f" {model}" if model else "", outcome.message)
            return outcome.report

        run.stage_name = name  # type: ignore[attr-defined]
        return run

    return wrap


def _log_to_console() -> None:
    """Progress to stdout, warnings and errors to stderr."""
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[out, err])
    for noisy in ("alembic", "urllib3", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def warn_on_drift() -> None:
    """DVC decides from params.yaml; say so when conf/ says something else (an edit of conf/
    without `make params`). Inside `dvc exp run -S` the overridden keys differ on purpose."""
    agreed = _agreement_stamp()
    if agreed is not None and agreed.exists():
        return
    drift = params_drift()
    if not drift and agreed is not None:
        agreed.touch()
    if drift:
        log.warning(
            "warning: params.yaml differs from conf/ at %s; this stage runs with params.yaml (what DVC "
            "decided from): run `make params` if the conf/ edit is meant (expected inside `dvc exp run -S`)",
            ", ".join(drift[:8]) + (" ..." if len(drift) > 8 else ""),
        )


def exit_now(code: int) -> NoReturn:
    """End the stage's process without the interpreter's teardown of every module: with PyTorch,
    MLflow and the model frameworks loaded that takes about 2 s and writes nothing. What the
    teardown does that matters is done first, in its order: other threads joined, atexit handlers
    run (logging's, MLflow's), output flushed."""
    import atexit
    import threading

    threading._shutdown()  # type: ignore[attr-defined]  # what Py_FinalizeEx calls first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def _agreement_stamp() -> Path | None:
    """A file whose existence says: this params.yaml and this conf/ were compared and agree.
    Named by their contents, so any edit of either means a new comparison; it spares each of the
    80-odd stage runs of one `dvc repro` half a second of composing conf/ again."""
    import hashlib
    import tempfile

    from onnxship.pipeline.config import PARAMS_FILE, conf_dir

    digest = hashlib.sha256()
    try:
        for path in [Path(PARAMS_FILE), *sorted(conf_dir().rglob("*.yaml"))]:
            digest.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
    except OSError:
        return None
    return Path(tempfile.gettempdir()) / f"onnxship-params-agree-{digest.hexdigest()[:32]}"


def main(run: Callable[[DictConfig], Any], argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point of every stage script (`if __name__ == "__main__": main(run)`): ends the process."""
    _log_to_console()
    try:
        warn_on_drift()
        run(load_params(sys.argv[1:] if argv is None else argv))
    except PipelineError as err:
        log.error("error: %s: %s", type(err).__name__, err)
        exit_now(1)
    exit_now(0)
