"""Move a serving alias to a registered version, after re-checking its gates.

    python -m serving.registry.promote xgboost                 # the version aliased `candidate` -> champion
    python -m serving.registry.promote xgboost --version 3 --alias champion
    python -m serving.registry.promote xgboost --require-shadow 500     # after shadow mode proved it

Refuses (exit 2, reason printed) what the server would refuse (serving.registry.fetch): a version
without the registry's manifest and gates tags, with a failed gate, a file that differs from the
manifest, metadata outside its schema, external data, or a graph that fails the probe. Moving the
alias by hand in the MLflow UI works too; the server then makes the same checks and refuses to
serve such a version, saying why in /models.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from onnxship.packaging.native import RUNTIME_TAG
from serving.registry.shadow_evidence import evidence
from serving.settings import Settings

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


MIN_WITHIN = 0.999  # share of shadow comparisons within tolerance: validate's test-split gate


class PromotionRefused(Exception):
    pass


def check_version(mv, tracking_uri: str, max_model_bytes: int, budget=None) -> dict:
    """The watcher's checks, all of them: the registry's manifest and gates tags, the packaging
    run still there, every file against the manifest, the metadata schema, external data, and a
    probe within the per-call budgets. Returns the metadata."""
    from mlflow.tracking import MlflowClient

    from onnxship.version.verify import RejectedModel, verify, vouched
    from serving.registry.fetch import download, packaging_run_alive, probe

    try:
        trusted = vouched(mv)
        packaging_run_alive(MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri), mv)
        with tempfile.TemporaryDirectory() as tmp:
            folder = download(trusted, Path(tmp) / "version", tracking_uri, max_model_bytes)
            metadata = verify(folder, trusted)
            probe(folder, budget, trusted.served_manifest)
    except RejectedModel as err:
        raise PromotionRefused(str(err)) from None
    return metadata


def promote(
    name: str,
    version: str | None,
    alias: str,
    tracking_uri: str,
    source_alias: str | None = None,
    require_shadow: int = 0,
    min_within: float = MIN_WITHIN,
) -> str:
    """Move `alias` to `version` (default: the version `source_alias` points at, by default the
    package stage's alias, conf/package) after the same checks the server makes, and with
    `require_shadow` > 0 only when the version answered at least that many live requests within
    its tolerances in shadow mode against the version `alias` points at now (and no more than
    1 - `min_within` of its comparisons were outside them)."""
    settings = Settings()
    source_alias = source_alias or settings.candidate_alias
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
    from serving.registry.fetch import ProbeBudget

    try:
        previous = client.get_model_version_by_alias(name, alias).version
    except MlflowException:
        previous = None
    if require_shadow > 0:  # a registry read: before the download and probe below
        if previous is None:
            raise PromotionRefused(f"no version has alias '{alias}' yet: there was nothing to shadow")
        found = evidence(dict(mv.tags or {}), previous).verdict(require_shadow, min_within)
        if found is not None:
            raise PromotionRefused(f"version {mv.version} against version {previous}: {found}")
    budget = ProbeBudget(settings.max_call_s, settings.max_call_bytes)
    if (mv.tags or {}).get(RUNTIME_TAG) != "native":
        check_version(mv, tracking_uri, settings.max_model_bytes, budget)
    # a native version (onnxship/packaging/native.py) has no ONNX file to check: MLflow's scoring
    # server loads it; registered only with package.native_fallback on, and said in its tags
    client.set_registered_model_alias(name, alias, mv.version)
    return f"{name}: alias '{alias}' -> version {mv.version} (was {previous or 'unset'})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--version", help="registry version (default: the one the candidate alias points at)")
    parser.add_argument("--alias", help="alias to move (default: serving's, conf/serving)")
    parser.add_argument("--tracking-uri", help="registry (default: the pipeline's, conf/tracking)")
    parser.add_argument(
        "--require-shadow",
        type=int,
        default=0,
        metavar="N",
        help="refuse unless the version answered N live requests within its tolerances in shadow mode",
    )
    parser.add_argument(
        "--min-within",
        type=float,
        default=MIN_WITHIN,
        help=f"share of shadow comparisons that must be within tolerance (default {MIN_WITHIN})",
    )
    args = parser.parse_args(argv)
    if args.require_shadow < 0 or not 0 < args.min_within <= 1:
        parser.error("--require-shadow must be >= 0 and --min-within in (0, 1]")
    settings = Settings()
    alias, uri = args.alias or settings.alias, args.tracking_uri or settings.tracking_uri
    try:
        print(
            promote(
                args.model,
                args.version,
                alias,
                uri,
                settings.candidate_alias,
                args.require_shadow,
                args.min_within,
            )
        )
    except PromotionRefused as err:
        print(f"refused: {args.model}: {err}", file=sys.stderr)
        return 1  # refused (onnxship's convention: 1 refused, 2 bad input)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
