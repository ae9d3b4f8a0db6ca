"""Native fallback: a model that no ONNX variant can carry (its export failed, or every variant
failed a gate) registered as MLflow's own model of its family, said plainly.

Only with `package.native_fallback: true` (off by default: nothing unproven ships by accident).
The version is an MLflow model of the family's flavor (mlflow.xgboost, .lightgbm, .catboost,
.sklearn), with a signature from real rows, tagged
  runtime: native          serving runs it in MLflow's own scoring server, never in its process
  native_reason: <why>     e.g. "export failed: CatBoost's ONNX exporter: ... categorical features"
  native_io: {task, features, classes, columns}   what serving checks requests against
and alias `candidate` like a proven version, so `promote` and shadow mode treat it the same way.
"""

from __future__ import annotations

import json
import re
from typing import Any

RUNTIME_TAG, REASON_TAG, IO_TAG = "runtime", "native_reason", "native_io"
FLAVORS = {  # family -> MLflow flavor module able to log its native estimator
    "xgboost": "mlflow.xgboost",
    "lightgbm": "mlflow.lightgbm",
    "catboost": "mlflow.catboost",
    "sklearn": "mlflow.sklearn",
    "pipeline": "mlflow.sklearn",
    "stacking": "mlflow.sklearn",
}
MAX_REASON = 480


class NoNativeFlavor(ValueError):
    """The family has no MLflow flavor serving could run (said in the package report)."""


def why_native(export: dict, reasons: list[str]) -> str:
    """The plain reason the ONNX route is closed for this model."""
    if export.get("status") != "ok":
        said = re.sub(r"^[A-Z]\w*(Error|Exception): ", "", export.get("reason") or "no export report")
        return f"export failed: {said}"[:MAX_REASON]
    return f"no variant passed every gate: {'; '.join(reasons) or 'see reports/validate'}"[:MAX_REASON]


def native_io(native_meta: dict) -> dict:
    return {k: native_meta[k] for k in ("task", "features", "classes", "columns") if native_meta.get(k)}


def log_native(family_name: str, est: Any, example: Any, artifact_path: str = "model") -> None:
    """Save `est` as an MLflow model of its family's flavor, with the signature of real rows
    (`example`, a DataFrame of the model's features), and log the folder to the active run at
    `artifact_path` (where a version's source points, as for the ONNX versions)."""
    import importlib
    import tempfile
    from pathlib import Path

    import mlflow
    from mlflow.models import infer_signature

    if family_name not in FLAVORS:
        raise NoNativeFlavor(f"no MLflow flavor serves family '{family_name}' natively")
    flavor = importlib.import_module(FLAVORS[family_name])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / artifact_path
        flavor.save_model(est, str(folder), signature=infer_signature(example), input_example=example.head(2))
        mlflow.log_artifacts(str(folder), artifact_path)


def native_example(work: Any, family: Any, est: Any, limit: int = 5) -> Any:
    """Real test rows as the native model takes them, as a DataFrame (the signature's source)."""
    import pandas as pd

    if work.kind == "series":
        raise NoNativeFlavor("a forecaster has no native MLflow flavor serving could run")
    X = work.split("test")[0]
    if work.kind == "columns":
        return family.native_frame(est, X.iloc[:limit], work.columns)
    if X.ndim != 2:
        raise NoNativeFlavor("a model of tensors has no native MLflow flavor serving could run")
    return pd.DataFrame(X[:limit], columns=work.schema["features"])


def native_tags(native_meta: dict, reason: str) -> dict[str, str]:
    return {
        RUNTIME_TAG: "native",
        REASON_TAG: reason,
        IO_TAG: json.dumps(native_io(native_meta), sort_keys=True, separators=(",", ":")),
        "family": native_meta["family"],
    }


def register_native(
    client: Any,
    active: Any,
    registered: str,
    native: tuple,
    work: Any,
    export: dict,
    reasons: list[str],
    alias: str,
) -> dict:
    """Register the trained model natively in the active run; the package report's fields (or
    `native_refused` with why not). `native` is (family, estimator, meta) of the train stage."""
    from onnxship.packaging.build import register

    family, est, native_meta = native
    reason = why_native(export, reasons)
    try:
        log_native(family.name, est, native_example(work, family, est))
    except NoNativeFlavor as err:
        return {"native_refused": str(err)}
    tags = native_tags(native_meta, reason)
    description = f"onnxship model '{registered}' ({family.name}), served natively"
    source = f"{active.info.artifact_uri}/model"
    version = register(client, registered, description, source, active.info.run_id, tags)
    client.set_registered_model_alias(registered, alias, str(version))
    return {
        "registered": True,
        "runtime": "native",
        "native_reason": reason,
        "version": version,
        "alias": alias,
        "run_id": active.info.run_id,
    }
