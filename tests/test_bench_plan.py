"""What the default benchmark times and how, and what `benchmark=deep` changes: the plan is
checked here in milliseconds; tests/test_stages.py checks the figures of a real run."""

from __future__ import annotations

import pytest

from onnxship.measure.rounds import inherited_screens, settings_for_all
from onnxship.measure.screen import tuning_jobs
from onnxship.measure.timing import bench_settings, variants_to_time
from onnxship.packaging.choice import served_runtimes
from onnxship.pipeline.config import as_plain, compose_config
from tests.conftest import ROOT

BASE = {"intra_op_threads": 1, "execution_mode": "sequential", "inter_op_threads": 1, "allow_spinning": False}


def group(name: str) -> dict:
    return as_plain(compose_config([f"benchmark={name}"], config_dir=ROOT / "conf").benchmark)


def test_the_default_is_quick_and_deep_is_one_switch_away():
    quick, deep = group("default"), group("deep")
    assert (quick["screen"], quick["only_proven"], quick["cold_start"]) == ("representative", True, "served")
    assert (deep["screen"], deep["only_proven"], deep["cold_start"]) == ("every", False, "all")
    # the quick rounds stop on the p50 (what a speedup is made of), the deep ones on the p99
    assert quick["interleaved"]["stop_on"] == 50 and deep["interleaved"]["stop_on"] == 99
    assert quick["interleaved"]["budget_s"] < deep["interleaved"]["budget_s"]


def test_a_heavy_zoo_entry_takes_the_groups_heavy_block_over_its_own_batch_sizes():
    quick, deep = group("default"), group("deep")
    bench = bench_settings(dict(quick), {"batch_sizes": [1, 8, 32], "heavy": True})
    # calls of seconds: the quick default leaves batch 32 to the deep benchmark
    assert bench["batch_sizes"] == [1, 8] and bench["screen_batch_sizes"] == [1] and "heavy" not in bench
    assert bench_settings(dict(deep), {"batch_sizes": [1, 8, 32], "heavy": True})["batch_sizes"] == [1, 8, 32]
    assert bench["interleaved"] == quick["interleaved"] | quick["heavy"]["interleaved"]
    assert bench["min_iterations"] == quick["heavy"]["min_iterations"]
    light = bench_settings(dict(quick), {"batch_sizes": [1, 8]})
    assert light["interleaved"] == quick["interleaved"] and "heavy" not in light


def test_only_proven_variants_are_timed_and_the_others_named():
    opt = {
        "variants": {v: {"status": "ok"} for v in ("base", "fp16", "int8")} | {"slim": {"status": "failed"}}
    }
    validation = {"passed": ["base", "int8"]}
    timed, skipped = variants_to_time(opt, {"only_proven": True}, validation)
    assert timed == ["base", "int8"]
    assert skipped == {"slim": "optimization failed", "fp16": "failed validation"}
    timed, skipped = variants_to_time(opt, {"only_proven": False}, validation)
    assert timed == ["base", "fp16", "int8"] and skipped == {"slim": "optimization failed"}


def test_a_representative_screen_grids_native_and_the_first_variant_only():
    native = {"runtime": "native"}
    variants = [{"runtime": v} for v in ("base", "ort_all", "int8")]
    tuning = {
        "intra_op_threads": [1, 2],
        "execution_mode": ["sequential", "parallel"],
        "inter_op_threads": [1],
    }
    every = tuning_jobs(native, variants, BASE, tuning, "every")
    quick = tuning_jobs(native, variants, BASE, tuning, "representative")
    assert {j["runtime"] for j in quick} == {"native", "base"}
    assert len([j for j in quick if j["runtime"] == "base"]) == len(
        [j for j in every if j["runtime"] == "int8"]
    )
    with pytest.raises(ValueError, match=r"benchmark\.screen must be"):
        tuning_jobs(native, variants, BASE, tuning, "some")
    # the other variants take the first one's winners, per batch size
    lead = {
        "batches": {
            "1": {"p50_ms": 1.0, "settings": {"intra_op_threads": 1}},
            "100": {"p50_ms": 2.0, "settings": {"intra_op_threads": 2}},
        }
    }
    inherited = inherited_screens({"base": lead}, variants, "representative")
    assert set(inherited) == {"ort_all", "int8"}
    assert inherited["int8"]["batches"]["100"] == {"settings": {"intra_op_threads": 2}, "screened_as": "base"}
    assert inherited_screens({"base": lead}, variants, "every") == {}


def test_start_up_is_measured_for_what_package_would_register():
    validation = {"passed": ["base", "ort_all", "int8"], "variants": {"int8": {"lossy": True}}}
    runtimes = {
        "native": {"batches": {"1": {"p50_ms": 10.0}}},
        "base": {"batches": {"1": {"p50_ms": 2.0}}},
        "ort_all": {"batches": {"1": {"p50_ms": 1.99}}},  # within min_gain of base: base is kept
        "int8": {"batches": {"1": {"p50_ms": 1.0}}},  # lossy, and twice as fast: taken
    }
    assert served_runtimes(validation, 1, 1.05)(runtimes) == ["native", "int8"]
    assert served_runtimes(validation, 1, 3.0)(runtimes) == ["native", "base"]  # base is registered


def test_sizes_the_screen_skipped_take_the_winner_of_the_largest_screened_size_below():
    best = {"load_seconds": 1.0, "batches": {"1": {"p50_ms": 5.0, "settings": {"intra_op_threads": 2}}}}
    full = settings_for_all(best, [1, 8, 32])
    assert list(full["batches"]) == ["1", "8", "32"] and full["load_seconds"] == 1.0
    assert full["batches"]["32"] == {"settings": {"intra_op_threads": 2}, "screened_at": 1}
    assert full["batches"]["1"]["p50_ms"] == 5.0
