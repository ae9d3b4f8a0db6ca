"""Helpers of the `onnxship ship` tests (test_ship, test_native): the installed command run as a
user runs it, a user's table, and a CatBoost model its ONNX exporter refuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.builders import table

CATEGORIES = ["cut", "colour"]


def onnxship(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The `onnxship` command as installed (pyproject's entry point), from `cwd`, in a user's
    environment (no MLflow store named by the test run's own variables)."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    command = [str(Path(sys.executable).parent / "onnxship"), *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def churn_like(folder: Path) -> tuple[Path, pd.DataFrame]:
    """A user's table: numbers with gaps, categories with gaps, a string target (CSV)."""
    raw = table("classification", n=800, seed=3)
    path = folder / "customers.csv"
    raw.to_csv(path, index=False)
    return path, pd.read_csv(path)


def catboost_with_categories(folder: Path):
    """(the table's CSV, the model, its features) of a CatBoost classifier with categorical
    features, saved as folder/cb.cbm: a model CatBoost's ONNX exporter refuses."""
    import catboost

    csv, frame = churn_like(folder)
    X = frame.drop(columns="value")
    X[CATEGORIES] = X[CATEGORIES].fillna("")  # CatBoost takes no missing category
    model = catboost.CatBoostClassifier(
        iterations=20, verbose=0, cat_features=CATEGORIES, allow_writing_files=False
    )
    model.fit(X, frame["value"])
    model.save_model(str(folder / "cb.cbm"))
    return csv, model, X
