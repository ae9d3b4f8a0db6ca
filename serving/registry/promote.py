"""Move a serving alias to a registered version, after re-checking its gates.

    python -m serving.registry.promote xgboost                 # the version aliased `candidate` -> champion
    python -m serving.registry.promote xgboost --version 3 --alias champion

Refuses (exit 2, reason printed) a version whose recorded gates did not all pass, whose parity
verdict is not "pass", or whose metadata and registry disagree on the model's sha256. Moving the
alias by hand in the MLflow UI works too; the server follows either.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from onnxship.contract import METADATA_FILE
from serving.settings import Settings

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


class PromotionRefused(Exception):
    pass


def check_gates(version, metadata: dict) -> None:
    failed = [g for g, ok in metadata.get("gates", {}).items() if not ok]
    if not metadata.get("gates"):
        raise PromotionRefused("its metadata records no gates")
    if failed:
        raise PromotionRefused(f"gate(s) failed: {', '.join(failed)}")
    if version.tags.get("parity_verdict") != "pass":
        raise PromotionRefused(f"parity verdict is '{version.tags.get('parity_verdict')}'")
    if metadata.get("sha256") != version.tags.get("onnx_sha256"):
        raise PromotionRefused("metadata and registry tag disagree on the model's sha256")


def promote(
    name: str, version: str | None, alias: str, tracking_uri: str, source_alias: str | None = None
) -> str:
    """Move `alias` to `version` (default: the version `source_alias` points at, by default the
    package stage's alias, conf/package) after re-checking its gates."""
    source_alias = source_alias or Settings().candidate_alias
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        mv = (
            client.get_model_version(name, version)
            if version
            else client.get_model_version_by_alias(name, source_alias)
        )
    except MlflowException as err:
        which = f"version {version}" if version else f"alias '{source_alias}'"
        raise PromotionRefused(f"no {which} of registered model '{name}': {err.message}") from None
    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{mv.source}/{METADATA_FILE}", dst_path=tmp, tracking_uri=tracking_uri
        )
        with open(path) as fh:
            metadata = json.load(fh)
    check_gates(mv, metadata)
    try:
        previous = client.get_model_version_by_alias(name, alias).version
    except MlflowException:
        previous = None
    client.set_registered_model_alias(name, alias, mv.version)
    return f"{name}: alias '{alias}' -> version {mv.version} (was {previous or 'unset'})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--version", help="registry version (default: the one the candidate alias points at)")
    parser.add_argument("--alias", help="alias to move (default: serving's, conf/serving)")
    parser.add_argument("--tracking-uri", help="registry (default: the pipeline's, conf/tracking)")
    args = parser.parse_args(argv)
    settings = Settings()
    alias, uri = args.alias or settings.alias, args.tracking_uri or settings.tracking_uri
    try:
        print(promote(args.model, args.version, alias, uri, settings.candidate_alias))
    except PromotionRefused as err:
        print(f"refused: {args.model}: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
