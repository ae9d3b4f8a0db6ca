"""Bring your own model and data: classifiers (binary, multiclass) trained elsewhere, named by
`path:` in the zoo, go through train -> export -> optimize -> validate -> package like the zoo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf, open_dict

from onnxship.errors import ModelLoadError
from onnxship.io import read_json
from stages import export, optimize, package, prepare, train, validate
from tests.conftest import tiny_config, with_model


def classification_table(classes: int, n: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, 4))
    score = X[:, 0] + 0.5 * X[:, 1] - X[:, 2]
    labels = np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1]))
    names = np.array(["low", "mid", "high"])[:classes] if classes == 3 else np.array(["no", "yes"])
    return pd.DataFrame(X, columns=["f0", "f1", "f2", "f3"]).assign(label=names[labels])


def user_setup(tmp_path: Path, classes: int):
    table = classification_table(classes)
    (tmp_path / "table.csv").write_text(table.to_csv(index=False))
    cfg = tiny_config(
        tmp_path,
        ["data=file", f"data.path={tmp_path}/table.csv", "data.target=label", "data.task=classification"],
    )
    schema = prepare.run(cfg)
    # "trained elsewhere": fit on the prepared train split, save in each library's native format
    import lightgbm
    import xgboost

    frame = pd.read_parquet(Path(cfg.paths.prepared) / "train.parquet")
    X, y = frame[schema["features"]].to_numpy(), frame["label"].to_numpy()
    xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(X, y).save_model(tmp_path / "user_xgb.json")
    lightgbm.LGBMClassifier(n_estimators=20, num_leaves=7, verbose=-1).fit(X, y).booster_.save_model(
        tmp_path / "user_lgbm.txt"
    )
    with open_dict(cfg):
        cfg.zoo.models = OmegaConf.create(
            {
                "my_xgb": {"family": "xgboost", "path": str(tmp_path / "user_xgb.json")},
                "my_lgbm": {"family": "lightgbm", "path": str(tmp_path / "user_lgbm.txt")},
            }
        )
    return cfg, schema


@pytest.mark.parametrize("classes", [2, 3])
def test_user_classifiers_go_through_the_chain(tmp_path: Path, classes: int):
    cfg, schema = user_setup(tmp_path, classes)
    assert len(schema["classes"]) == classes
    for name in ("my_xgb", "my_lgbm"):
        m = with_model(cfg, name)
        meta = train.run(m)
        assert meta["origin"].startswith("file:") and meta["test_metrics"]["accuracy"] > 0.6
        rep = export.run(m)
        assert [o["name"] for o in rep["outputs"]] == ["label", "probabilities"]
        assert rep["outputs"][1]["shape"] == ["batch", classes]
        optimize.run(m)
        val = validate.run(m)
        test = val["variants"]["base"]["sets"]["test"]
        assert val["variants"]["base"]["verdict"] == "pass", val["variants"]["base"]["reasons"]
        assert test["label_agreement"] == 1.0 and "log_loss_onnx" in test


def test_user_model_of_the_wrong_family_is_named(tmp_path: Path):
    cfg, _ = user_setup(tmp_path, 2)
    with open_dict(cfg):
        cfg.zoo.models.my_xgb.family = "catboost"  # an XGBoost file declared as CatBoost
    with pytest.raises(ModelLoadError, match=r"catboost: cannot load .*user_xgb\.json"):
        train.run(with_model(cfg, "my_xgb"))
    assert not (Path(cfg.paths.native) / "my_xgb").exists()  # nothing half-written


def test_package_refuses_a_failed_validation(tmp_path: Path, monkeypatch):
    """Every variant failing its gate -> no registry version, reasons written down."""
    cfg, _ = user_setup(tmp_path, 2)
    m = with_model(cfg, "my_xgb")
    for stage in (train, export, optimize):
        stage.run(m)
    with open_dict(m):
        m.validate.tolerance.xgboost = {"atol": 0.0, "rtol": 0.0}
        m.validate.min_within_test = 1.01  # unreachable: every variant must fail
    validate.run(m)
    bench_dir = Path(m.paths.reports) / "benchmark"
    bench_dir.mkdir(parents=True, exist_ok=True)
    (bench_dir / "my_xgb.json").write_text('{"runtimes": {}}')
    result = package.run(m)
    assert result["registered"] is False and "no variant passed validation" in result["reasons"][0]
    assert read_json(Path(m.paths.reports) / "package" / "my_xgb.json")["registered"] is False
