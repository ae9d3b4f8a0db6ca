"""Does the configured MLflow store already hold a registered version of every zoo model?

`make run` asks before `dvc repro`. In a fresh clone the committed dvc.lock and reports match
every input (outputs are byte-reproducible), so DVC would skip validate, benchmark and package,
and this machine's MLflow store would get no runs and no registered versions. When any zoo model
has no version in the store, `make run` runs every stage (`dvc repro --force`) instead.

    python -m tools.registry_state     # exit 3: some model has no version (run everything); else 0
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
MISSING = 3  # distinct from a crash's exit 1: only this one makes `make run` run every stage


def registered_in_sqlite(db: Path) -> set[str] | None:
    """Names with at least one model version in an MLflow SQLite store (empty when there is no
    store file yet: a fresh clone); None when the file is not a store this query can read, and
    MLflow is asked instead."""
    import sqlite3

    if not db.exists():
        return set()
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            # MLflow keeps a deleted version's row, marked with this stage
            rows = conn.execute(
                "SELECT DISTINCT name FROM model_versions WHERE current_stage != 'Deleted_Internal'"
            )
            return {row[0] for row in rows}
    except sqlite3.Error:
        return None


def missing_models(cfg) -> tuple[str, list[str]]:
    """(the store's URI, zoo models it has no registered version of)."""
    from onnxship import store

    uri = store.tracking_uri(cfg.tracking.uri)
    prefix = cfg.package.registered_model_prefix
    if uri.startswith("sqlite:///"):  # the embedded store: read without loading MLflow (seconds)
        registered = registered_in_sqlite(Path(uri.removeprefix("sqlite:///")))
        if registered is not None:
            return uri, [n for n in cfg.zoo.models if f"{prefix}{n}" not in registered]
    from onnxship.pipeline.tracking import configure

    client = configure(cfg)  # an unreachable store raises: the caller decides
    missing = [n for n in cfg.zoo.models if not client.search_model_versions(f"name='{prefix}{n}'")]
    return uri, missing


def main() -> int:
    from onnxship.pipeline.config import load_params

    try:
        uri, missing = missing_models(load_params())
    except Exception as err:  # an unreachable store: the package stage will say so itself
        print(f"registry state unknown ({type(err).__name__}: {err}); running what changed")
        return 0
    if missing:
        print(
            f"the MLflow store {uri} has no version of {', '.join(missing)}: every stage runs "
            "(dvc repro --force), so this machine gets its own runs, benchmarks and registered versions"
        )
        return MISSING
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
