"""prepare: the embedded data set, a user's file through config alone, and bad data refused with
the column and the problem named, leaving earlier output intact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from onnxship.errors import DataError
from onnxship.io import read_json
from stages import prepare
from tests.conftest import tiny_config


def user_table(n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "when": np.arange(n)[::-1],
            "a": rng.normal(size=n),
            "b": rng.integers(0, 5, n),
            "flag": rng.random(n) > 0.5,
            "price": rng.normal(size=n) * 3 + 10,
        }
    )


def file_config(tmp_path: Path, table: pd.DataFrame, name: str = "table.csv", **extra: str):
    path = tmp_path / name
    table.to_parquet(path) if name.endswith(".parquet") else table.to_csv(path, index=False)
    overrides = [
        "data=file",
        f"data.path={path}",
        "data.target=price",
        "data.time_column=when",
        *[f"data.{k}={v}" for k, v in extra.items()],
    ]
    return tiny_config(tmp_path, overrides)


def test_elecdemand_features_and_time_split(tmp_path: Path):
    cfg = tiny_config(tmp_path)
    schema = prepare.run(cfg)
    assert schema["task"] == "regression" and schema["target"] == "Demand"
    assert len(schema["features"]) == 19
    assert sum(schema["rows"].values()) == 17520 - 336  # one week of lag history dropped
    train = pd.read_parquet(Path(cfg.paths.prepared) / "train.parquet")
    test = pd.read_parquet(Path(cfg.paths.prepared) / "test.parquet")
    assert train.dtypes.drop("Demand").eq("float32").all()
    # the test split comes after the train split in time: day-of-year keeps going forward
    assert not train.isna().any().any() and len(test) == schema["rows"]["test"]


@pytest.mark.parametrize("name", ["table.csv", "table.parquet"])
def test_user_file_through_config(tmp_path: Path, name: str):
    cfg = file_config(tmp_path, user_table(), name)
    schema = prepare.run(cfg)
    assert schema["features"] == ["a", "b", "flag"]
    assert schema["source"].startswith("file:")
    train = pd.read_parquet(Path(cfg.paths.prepared) / "train.parquet")
    assert train["price"].tolist() == user_table().sort_values("when")["price"].tolist()[: len(train)]


def test_user_classification_target_is_encoded(tmp_path: Path):
    table = user_table().assign(price=lambda t: np.where(t["a"] > 0, "up", "down"))
    schema = prepare.run(file_config(tmp_path, table, task="classification"))
    assert schema["classes"] == ["down", "up"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.drop(columns="price"), "target column 'price' not found"),
        (lambda t: t.assign(b=["x"] * len(t)), "feature 'b' is not numeric"),
        (lambda t: t.head(10), "only 10 usable rows"),
        (lambda t: t.assign(a=np.nan), "feature 'a' is entirely NaN"),
        (lambda t: t.assign(a=1e300), "feature 'a' has values beyond the float32 range"),
    ],
    ids=["missing-target", "non-numeric", "too-few-rows", "all-nan", "float32-overflow"],
)
def test_bad_data_is_named_and_nothing_is_half_written(tmp_path: Path, mutate, message: str):
    good = file_config(tmp_path, user_table())
    prepare.run(good)
    files = sorted(p for p in Path(good.paths.prepared).rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    bad = file_config(tmp_path, mutate(user_table()))
    with pytest.raises(DataError, match=message):
        prepare.run(bad)
    after = {p: p.read_bytes() for p in sorted(Path(good.paths.prepared).rglob("*")) if p.is_file()}
    assert after == before  # earlier output intact
    assert not [p for p in Path(good.paths.prepared).parent.iterdir() if p.name.startswith(".")]


def test_missing_file_is_named(tmp_path: Path):
    cfg = tiny_config(tmp_path, ["data=file", f"data.path={tmp_path}/nope.csv", "data.target=y"])
    with pytest.raises(DataError, match=r"no such file: .*nope\.csv"):
        prepare.run(cfg)


def test_schema_is_json(tmp_path: Path):
    cfg = file_config(tmp_path, user_table())
    prepare.run(cfg)
    assert read_json(Path(cfg.paths.prepared) / "schema.json")["target"] == "price"
