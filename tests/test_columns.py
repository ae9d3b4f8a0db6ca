"""Models of typed columns (onnxship.data.columns): preparing a table of numbers and categories,
and every family that takes one, end to end - build, fit, save, reload, export as one graph with
one input per column, and the verdict on the test rows and every hostile set of categories
(unseen, missing, case and whitespace, unicode, very long, numbers as strings). A family whose
converter cannot export categories says so, with the converter's reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from onnxship import families
from onnxship.contract import ModelIO, describe_io
from onnxship.data.columns import column_types, graph_feed, prepare_columns
from onnxship.data.workloads import Columns, workload_at
from onnxship.errors import DataError
from onnxship.parity.cases import columns_case
from stages.export import convert
from tests.builders import prepared_table, table

COLUMN_FAMILIES = sorted(n for n, c in families.FAMILIES.classes().items() if "columns" in c.layouts)
TOLERANCE = {"atol": 1.0e-4, "rtol": 1.0e-5}


def validate_cfg(tmp: Path):
    return OmegaConf.create(
        {
            "seed": 0,
            "validate": {
                "hostile": {"rows": 40, "magnitudes": [1.0e6, -1.0e6, 1.0e30, -1.0e30]},
                "max_metric_rel_change": 0.01,
                "min_label_agreement": 0.999,
                "min_within_test": 0.999,
                "min_within_hostile": 0.99,
            },
            "runtime": {},
        }
    )


def trained(tmp: Path, family_name: str, task: str, spec: dict | None = None):
    """(workload, family, reloaded estimator, meta, zoo entry) of a model fitted on the tiny table."""
    data = workload_at(prepared_table(tmp / "prepared", task))
    assert isinstance(data, Columns)
    family = families.get(family_name)
    entry = spec or {"family": family_name, **family.tiny_spec}
    est = data.fit(family, entry, {}, 0)
    family.make_reproducible(est)
    path = tmp / family.native_file
    family.save(est, path)
    est = family.load_checked(path, task)
    meta = {"model": f"tiny_{family_name}", "family": family_name, "task": task}
    meta |= data.meta_fields(entry, est, family) | {"native_file": family.native_file}
    return data, family, est, meta, entry


def verdict(tmp: Path, data, family, est, meta, entry) -> dict:
    import onnx

    model = convert(meta, tmp, 15)
    onnx.save(model, tmp / "model.onnx")
    case = columns_case(data, validate_cfg(tmp), entry, family, est, meta, TOLERANCE, None)
    return case.check(tmp / "model.onnx", lossy=False)


def test_prepare_types_each_column_and_records_the_categories_of_the_train_rows(tmp_path):
    folder = prepared_table(tmp_path, "classification")
    data = workload_at(folder)
    kinds = {c["name"]: c["type"] for c in data.columns}
    assert kinds == {"size": "float32", "cut": "string", "colour": "string", "depth": "float32"}
    cats = {c["name"]: c.get("categories") for c in data.columns}
    assert cats["cut"] == ["Fair", "Good", "Ideal", "Premium"]
    assert data.schema["classes"] == ["high", "low"]
    X, _ = data.split("train")
    assert X["colour"].map(lambda v: v is None).any()  # missing categories stay missing (None)
    assert X["size"].dtype == np.float32
    # shuffled with a seed: the same rows in the same order every time
    again = workload_at(prepared_table(tmp_path / "again", "classification"))
    pd.testing.assert_frame_equal(again.split("test")[0], data.split("test")[0])


def test_a_column_name_that_cannot_be_an_input_name_is_refused():
    raw = table("regression").rename(columns={"cut": "cut <b>"})
    with pytest.raises(DataError, match="use letters, digits"):
        column_types(raw, list(raw.columns), None)
    with pytest.raises(DataError, match=r"categorical column.*not among the features: nope"):
        column_types(table("regression"), ["size", "cut"], ["nope"])


def test_a_free_text_column_is_not_taken_for_a_category(tmp_path):
    raw = table("regression", n=300)
    raw["note"] = [f"free text {i}" for i in range(len(raw))]
    spec = OmegaConf.create(
        {
            "target": "value",
            "task": "regression",
            "features": None,
            "categorical": None,
            "time_column": None,
            "engineer": "none",
            "split": {"train": 0.6, "val": 0.2, "test": 0.2},
            "min_rows": 50,
        }
    )
    import onnxship.data.columns as columns

    limit, columns.MAX_CATEGORIES = columns.MAX_CATEGORIES, 100
    try:
        with pytest.raises(DataError, match=r"feature 'note' has .* distinct values"):
            prepare_columns(raw, spec, "test")
    finally:
        columns.MAX_CATEGORIES = limit


def test_missing_categories_reach_the_graph_as_empty_strings():
    frame = pd.DataFrame({"size": [1.0, np.nan], "cut": ["Ideal", None]})
    columns = [
        {"name": "size", "type": "float32"},
        {"name": "cut", "type": "string", "categories": ["Ideal"]},
    ]
    feed = graph_feed(frame, columns)
    assert feed["size"].dtype == np.float32 and feed["size"].shape == (2, 1)
    assert feed["cut"].tolist() == [["Ideal"], [""]]


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize("family_name", COLUMN_FAMILIES)
def test_every_family_of_columns_exports_one_graph_that_answers_like_native_or_says_why_not(
    tmp_path, family_name, task
):
    data, family, est, meta, entry = trained(tmp_path, family_name, task)
    gap = family.columns_export_gap
    if gap:  # the converter refuses categories: the reason is the converter's own
        with pytest.raises(Exception, match=gap):
            convert(meta, tmp_path, 15)
        return
    result = verdict(tmp_path, data, family, est, meta, entry)
    assert result["verdict"] == "pass", result["reasons"]
    sets = result["sets"]
    for name in ("unseen_categories", "missing_categories", "case_whitespace", "unicode", "long_strings"):
        assert sets[name]["rows"] > 0 and sets[name]["within_tolerance"] >= 0.99, (name, sets[name])
    io = describe_io(__import__("onnx").load(tmp_path / "model.onnx"))
    assert [(i["name"], i["dtype"]) for i in io["inputs"]] == [(c["name"], c["type"]) for c in data.columns]
    assert ModelIO.of_model(meta).mismatches(io) == []


def test_unknown_categories_into_an_infrequent_bucket_are_refused_by_the_runtime_so_never_registered(
    tmp_path,
):
    """OneHotEncoder(handle_unknown="infrequent_if_exist"): scikit-learn puts an unknown value in
    the infrequent column; skl2onnx's graph has no such rule and ONNX Runtime refuses the value."""
    spec = {
        "family": "pipeline",
        "encode": {"categories": "onehot_infrequent", "numbers": "impute", "min_frequency": 0.05},
        "params": {"estimator": "sklearn.linear_model.LogisticRegression"},
    }
    data, family, est, meta, entry = trained(tmp_path, "pipeline", "classification", spec)
    result = verdict(tmp_path, data, family, est, meta, entry)
    assert result["verdict"] == "fail"
    assert result["sets"]["test"]["within_tolerance"] == 1.0  # known values agree
    assert any(r.startswith("unseen_categories: ONNX Runtime refused") for r in result["reasons"])


def test_a_pipeline_ending_in_lightgbm_decides_like_lightgbm(tmp_path):
    """skl2onnx with onnxmltools' LightGBM converter registered; the thresholds snapped as for
    LightGBM alone (without, float32 rounding flips splits)."""
    spec = {
        "family": "pipeline",
        "encode": {"categories": "onehot", "numbers": "passthrough"},
        "params": {"estimator": "lightgbm.LGBMClassifier", "n_estimators": 30, "verbose": -1},
    }
    data, family, est, meta, entry = trained(tmp_path, "pipeline", "classification", spec)
    result = verdict(tmp_path, data, family, est, meta, entry)
    assert result["verdict"] == "pass", result["reasons"]


def test_a_pipeline_needs_a_table_of_columns():
    from onnxship.errors import ConfigError

    with pytest.raises(ConfigError, match="dataset of layout 'columns'"):
        families.get("pipeline").build({"params": {}}, {}, "regression", 0)
    with pytest.raises(ConfigError, match="takes feature matrices only"):
        families.get("linear").build_columns({}, {}, "regression", 0, [])


@pytest.mark.parametrize(
    ("estimator", "encode"),
    [
        ("sklearn.ensemble.RandomForestRegressor", {"categories": "ordinal", "numbers": "impute"}),
        ("xgboost.XGBRegressor", {"categories": "onehot", "numbers": "passthrough"}),
        ("lightgbm.LGBMRegressor", {"categories": "ordinal", "numbers": "passthrough"}),
    ],
    ids=["random-forest", "xgboost", "lightgbm"],
)
def test_pipelines_end_in_any_of_the_estimators_the_issue_names(tmp_path, estimator, encode):
    params = {"estimator": estimator, "n_estimators": 20}
    if estimator.startswith("lightgbm"):
        params["verbose"] = -1
    spec = {"family": "pipeline", "encode": encode, "params": params}
    data, family, est, meta, entry = trained(tmp_path, "pipeline", "regression", spec)
    result = verdict(tmp_path, data, family, est, meta, entry)
    assert result["verdict"] == "pass", result["reasons"]


@pytest.mark.parametrize("family_name", COLUMN_FAMILIES)
def test_the_benchmarks_native_call_answers_like_predict_with_the_category_coding_on_its_clock(
    tmp_path, family_name
):
    """What the benchmark times natively on a table (Family.native_call): the feed as the stage
    stores it, brought into a DataFrame before the clock; where the library's DataFrame codes the
    categories by the model's values, that coding is left to the timed call, as the graph's
    coding of the strings is on ONNX Runtime's clock."""
    from onnxship.data.columns import frame_of

    data, family, est, meta, entry = trained(tmp_path, family_name, "regression")
    feed = data.bench_feeds(entry, meta, 50)
    timed = family.native_call(est, meta)
    batch = timed.prepare(feed)
    if family.codes_categories_per_call:
        strings = [c["name"] for c in data.columns if c["type"] == "string"]
        assert strings and all(str(batch[name].dtype) != "category" for name in strings)
    answer = np.asarray(timed.run(batch), dtype=np.float64).reshape(-1)
    frame = family.native_frame(est, frame_of(feed, data.columns), data.columns)
    np.testing.assert_allclose(answer, family.predict(est, frame, "regression").values, rtol=1e-6)
