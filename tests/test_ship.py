"""`onnxship ship`: a model file that is not in the zoo, to a registered and served version in
one command, run as a user runs it (the installed entry point, from a folder of their own); a
CatBoost model with categorical features refused with its exporter's reason and nothing
registered; and each bad input an exit code 2 naming what is wrong, before anything is written."""

from __future__ import annotations

import httpx
import numpy as np
import pandas as pd
import pytest

from tests.builders import table
from tests.shipping import CATEGORIES, catboost_with_categories, churn_like, onnxship

pytestmark = pytest.mark.e2e


def as_categories(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.drop(columns="value")
    for name in CATEGORIES:
        out[name] = out[name].astype("category")
    return out


# tests that prove no timing: a short benchmark (--quick), at batch 1 only
ONE_BATCH = ("--batch-sizes", "1", "--quick")


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
        "ship", "churn.txt", "--data", csv.name, "--target", "value", "--out", "shipped",
        "--batch-sizes", "1", "100", cwd=user,
    )  # fmt: skip
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
    # --batch-sizes: only those are timed, and the variant is chosen at the first
    benchmark = json.loads((reports / "benchmark" / "churn.json").read_text())
    assert set(benchmark["runtimes"]["native"]["batches"]) == {"1", "100"}
    package = json.loads((reports / "package" / "churn.json").read_text())
    assert set(package["regimes"]) == {"1", "100"} and package["target_batch_size"] == 1


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
    csv, _, _ = catboost_with_categories(tmp_path)
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
        ("pickle", ["model.pkl"], "is unpickled to load: that runs whatever code it holds"),
        ("lightgbm", ["model.txt", "--target", "nope"], "--target: the table has no column 'nope'"),
        ("lightgbm", ["model.txt", "--drop", "cut"], "the table lacks 1 column(s) the model takes: cut"),
        ("corrupt", ["model.txt"], "lightgbm: cannot load"),
        ("lightgbm", ["absent.txt"], "model file not found"),
        ("lightgbm", ["model.txt", "--name", "9 bad"], "--name: letters, digits"),
        ("lightgbm", ["model.txt", "--data", "absent.csv"], "--data: no such file"),
        ("lightgbm", ["model.txt", "--batch-sizes", "1", "0"], "--batch-sizes: whole numbers from 1"),
    ],
    ids=["suffix", "pickle", "target", "columns", "corrupt", "absent", "name", "table", "batches"],
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
    data = [] if "--data" in args else ["--data", csv.name]
    done = onnxship("ship", *args, *data, *target, "--out", "out", cwd=tmp_path)
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


@pytest.mark.parametrize("loaded", ["", "import mlflow; "], ids=["light", "after MLflow"])
def test_the_installed_command_ends_with_its_exit_code_and_every_line_written(tmp_path, loaded):
    """`onnxship` (tools.cli:entry) skips the interpreter's teardown once heavy libraries are
    loaded: its exit code and its output must come through all the same."""
    import subprocess
    import sys

    code = f"import sys; {loaded}from tools.cli import entry; sys.argv[1:] = ['frobnicate']; entry()"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2 and "unknown command" in done.stderr
    assert done.stderr.rstrip().endswith("bad input")  # the usage's last line: all of it was written


def test_a_scikit_learn_pipeline_ships_from_skops_without_pickle(tmp_path):
    """skops' format: the file's types are checked before anything is built (no pickle)."""
    import skops.io
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    csv, frame = churn_like(tmp_path)
    X = frame.drop(columns="value")
    X[CATEGORIES] = X[CATEGORIES].fillna("")  # a missing category as the graph takes it
    numbers = Pipeline([("fill", SimpleImputer()), ("scale", StandardScaler())])
    categories = OneHotEncoder(handle_unknown="ignore")
    parts = [("categories", categories, CATEGORIES), ("numbers", numbers, ["size", "depth"])]
    encode = ColumnTransformer(parts)
    model = Pipeline([("encode", encode), ("estimator", LogisticRegression())]).fit(X, frame["value"])
    skops.io.dump(model, tmp_path / "churn.skops")
    done = onnxship("ship", "churn.skops", "--data", csv.name, "--target", "value", *ONE_BATCH, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "registered: churn version 1" in done.stdout


def test_a_numeric_table_ships_an_xgboost_json_model_trained_on_a_dataframe(tmp_path):
    """Numbers only: the model's one feature matrix, its features taken in the model's order
    (the table lists them otherwise), its DataFrame feature names no obstacle to the converter."""
    import xgboost

    raw = table("regression", n=600)[["size", "depth", "value"]]
    raw[["depth", "size", "value"]].to_csv(tmp_path / "t.csv", index=False)  # another column order
    model = xgboost.XGBRegressor(n_estimators=30, max_depth=3).fit(raw[["size", "depth"]], raw["value"])
    model.save_model(tmp_path / "price.json")
    done = onnxship("ship", "price.json", "--data", "t.csv", "--target", "value", *ONE_BATCH, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    import json

    schema = json.loads((tmp_path / "ship" / "price" / "data" / "prepared" / "schema.json").read_text())
    assert schema["features"] == ["size", "depth"]
    # --quick: the smoke experiment's benchmark settings, the batch sizes still --batch-sizes'
    reports = tmp_path / "ship" / "price" / "reports"
    bench = json.loads((reports / "benchmark" / "price.json").read_text())["bench"]
    assert bench["tuning"]["intra_op_threads"] == [1] and bench["interleaved"]["budget_s"] == 0.2
    assert bench["batch_sizes"] == [1]


def test_a_pytorch_program_ships_from_pt2_only_when_trusted(tmp_path):
    """A torch.export program (.pt2): its tensors are unpickled to load, so --trust-pickle."""
    import torch

    from onnxship.torch_nets import MLP

    raw = table("regression", n=600)[["size", "depth", "value"]].fillna({"depth": 60.0})
    raw.to_csv(tmp_path / "t.csv", index=False)
    torch.manual_seed(0)
    net = MLP((2,), 1).eval()
    program = torch.export.export(net, (torch.zeros(2, 2),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(tmp_path / "net.pt2"))
    refused = onnxship("ship", "net.pt2", "--data", "t.csv", "--target", "value", cwd=tmp_path)
    assert refused.returncode == 2 and "--trust-pickle" in refused.stderr
    done = onnxship(
        "ship", "net.pt2", "--data", "t.csv", "--target", "value", "--trust-pickle", *ONE_BATCH, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "registered: net version 1" in done.stdout


def test_an_onnx_file_alone_is_checked_and_timed_never_registered(tmp_path):
    """A graph with no native model: its lossless variants are made, each checked and timed by
    `onnxship bench` (here --quick: smoke's budget, at the --batch-sizes given), nothing registered."""
    import json

    from tests import tiny_versions

    (tmp_path / "tiny.onnx").write_bytes(tiny_versions.regressor().SerializeToString())
    (tmp_path / "t.csv").write_text("a,value\n1,2\n")  # --data and --target are asked for all the same
    done = onnxship("ship", "tiny.onnx", "--data", "t.csv", "--target", "value", *ONE_BATCH, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing is registered" in done.stderr
    out = tmp_path / "ship" / "tiny"
    timed = json.loads((out / "base.bench.json").read_text())
    assert timed["validation"]["passed"] and set(timed["latency"]["onnx"]) == {"1"}
    assert timed["cold_start"]["onnx"]["runs"] == 1  # onnxship bench's own default is 3
    assert not list(tmp_path.rglob("mlflow.db"))
