"""`onnxship ship`: a model file that is not in the zoo, to a registered and served version in
one command, run as a user runs it (the installed entry point, from a folder of their own); a
CatBoost model with categorical features refused with its exporter's reason and nothing
registered; and each bad input an exit code 2 naming what is wrong, before anything is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.builders import table

pytestmark = pytest.mark.e2e

CATEGORIES = ["cut", "colour"]


def onnxship(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The `onnxship` command as installed (pyproject's entry point), from `cwd`."""
    command = [
        sys.executable,
        "-c",
        "import sys; from onnxship.cli.main import main; sys.exit(main())",
        *args,
    ]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)


def churn_like(folder: Path) -> tuple[Path, pd.DataFrame]:
    """A user's table: numbers with gaps, categories with gaps, a string target (CSV)."""
    raw = table("classification", n=800, seed=3)
    path = folder / "customers.csv"
    raw.to_csv(path, index=False)
    return path, pd.read_csv(path)


def as_categories(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.drop(columns="value")
    for name in CATEGORIES:
        out[name] = out[name].astype("category")
    return out


@pytest.fixture(scope="module")
def shipped_lightgbm(tmp_path_factory):
    """A LightGBM classifier with categorical columns, trained and saved by the user's script,
    shipped with one command."""
    import lightgbm

    user = tmp_path_factory.mktemp("user")
    csv, frame = churn_like(user)
    model = lightgbm.LGBMClassifier(n_estimators=40, num_leaves=15, min_child_samples=5, verbose=-1)
    model.fit(as_categories(frame), frame["value"])
    model.booster_.save_model(str(user / "churn.txt"))
    done = onnxship(
        "ship", "churn.txt", "--data", csv.name, "--target", "value", "--out", "shipped", cwd=user
    )
    return user, done, model


def test_a_model_file_ships_to_a_registered_version_in_one_command(shipped_lightgbm):
    user, done, _ = shipped_lightgbm
    assert done.returncode == 0, done.stdout + done.stderr
    assert "registered: churn version 1, alias 'candidate'" in done.stdout
    assert "✅" in done.stdout  # the model's summary row
    assert "ship churn" in done.stderr  # the progress bar
    reports = user / "shipped" / "reports"
    for stage in ("validate", "benchmark", "package"):
        assert (reports / stage / "churn.json").is_file()
    import json

    validation = json.loads((reports / "validate" / "churn.json").read_text())
    assert {"unseen_categories", "missing_categories", "unicode"} <= set(validation["hostile_rows"])


def test_the_shipped_version_serves_unseen_categories_like_the_users_model(
    shipped_lightgbm, tmp_path_factory
):
    from tests.services import start_server, stop

    user, done, model = shipped_lightgbm
    assert done.returncode == 0, done.stderr
    registry = f"sqlite:///{user / 'shipped' / 'mlflow.db'}"
    promoted = onnxship("promote", "churn", "--tracking-uri", registry, cwd=user)
    assert promoted.returncode == 0, promoted.stderr
    server = start_server(registry, tmp_path_factory, ["churn"])
    try:
        rows = [
            {"size": 1.2, "cut": "Ideal", "colour": "D", "depth": 61.0},
            {"size": 0.7, "cut": "Never-seen", "colour": None, "depth": None},
            {"size": 1.9, "cut": "ideal ", "colour": "💎", "depth": 58.5},
        ]
        r = httpx.post(f"{server['url']}/predict/batch", json={"model": "churn", "rows": rows}, timeout=30)
        assert r.status_code == 200, r.text
        served = np.array([[p[c] for c in ("high", "low")] for p in r.json()["probabilities"]])
        frame = pd.DataFrame(rows).astype({"size": float, "depth": float})
        for name in CATEGORIES:
            frame[name] = pd.Categorical(
                frame[name], categories=model.booster_.pandas_categorical[CATEGORIES.index(name)]
            )
        native = model.predict_proba(frame[["size", "cut", "colour", "depth"]])
        assert np.abs(served - native).max() <= 1e-4 + 1e-5
    finally:
        stop(server)


def test_catboost_with_categorical_features_is_refused_with_the_exporters_reason(tmp_path):
    import catboost

    csv, frame = churn_like(tmp_path)
    X = frame.drop(columns="value")
    X[CATEGORIES] = X[CATEGORIES].fillna("")  # CatBoost takes no missing category
    model = catboost.CatBoostClassifier(
        iterations=20, verbose=0, cat_features=CATEGORIES, allow_writing_files=False
    )
    model.fit(X, frame["value"])
    model.save_model(str(tmp_path / "cb.cbm"))
    done = onnxship("ship", "cb.cbm", "--data", csv.name, "--target", "value", "--out", "out", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert (
        "❌" in done.stdout
        and "ONNX-ML format export does yet not support categorical features" in done.stdout
    )
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    assert [m.name for m in client.search_registered_models()] == []


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("lightgbm", ["model.bin"], "unknown model file type '.bin'"),
        ("pickle", ["model.pkl"], "is a pickle: loading it runs whatever code it holds"),
        ("lightgbm", ["model.txt", "--target", "nope"], "--target: the table has no column 'nope'"),
        ("lightgbm", ["model.txt", "--drop", "cut"], "the table lacks 1 column(s) the model takes: cut"),
        ("corrupt", ["model.txt"], "lightgbm: cannot load"),
        ("lightgbm", ["absent.txt"], "model file not found"),
        ("lightgbm", ["model.txt", "--name", "9 bad"], "--name: letters, digits"),
    ],
    ids=["suffix", "pickle", "target", "columns", "corrupt", "absent", "name"],
)
def test_bad_input_is_exit_2_naming_it_with_nothing_written(tmp_path, setup, args, message):
    import lightgbm

    csv, frame = churn_like(tmp_path)
    if setup == "corrupt":
        (tmp_path / "model.txt").write_bytes(b"\x00 not a model \xff" * 20)
    elif setup == "pickle":
        (tmp_path / "model.pkl").write_bytes(b"\x80\x04N.")
    else:
        model = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(as_categories(frame), frame["value"])
        model.booster_.save_model(str(tmp_path / "model.txt"))
        (tmp_path / "model.bin").write_bytes(b"x")
    if "--drop" in args:
        at = args.index("--drop")
        frame.drop(columns=args[at + 1]).to_csv(csv, index=False)
        args = args[:at] + args[at + 2 :]
    target = [] if "--target" in args else ["--target", "value"]
    done = onnxship("ship", *args, "--data", csv.name, *target, "--out", "out", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_every_command_has_help_and_an_unknown_one_is_exit_2(tmp_path):
    top = onnxship("--help", cwd=tmp_path)
    assert top.returncode == 0 and all(c in top.stdout for c in ("ship", "bench", "promote", "serve"))
    for command in ("ship", "bench", "promote", "serve"):
        helped = onnxship(command, "--help", cwd=tmp_path)
        assert helped.returncode == 0 and "usage:" in helped.stdout, command
    assert "exit codes" in onnxship("ship", "--help", cwd=tmp_path).stdout
    assert onnxship("frobnicate", cwd=tmp_path).returncode == 2
