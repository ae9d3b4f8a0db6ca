"""`make run` ends with where its time went, and the README's figures are generated from that."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ROOT
from tools import timings


def test_stage_seconds_sum_per_stage_in_pipeline_order_with_the_slowest_model():
    rows = [
        ("benchmark", "xgboost", 30.0),
        ("train", "xgboost", 2.0),
        ("benchmark", "cnn", 45.5),
        ("prepare", None, 1.0),
    ]
    table = timings.stage_seconds(rows)
    assert list(table) == ["prepare", "train", "benchmark"]
    assert table["benchmark"] == {"runs": 2, "seconds": 75.5, "slowest": ["cnn", 45.5]}
    assert table["prepare"]["slowest"] == ["prepare", 1.0]


def test_the_readme_section_is_filled_between_its_markers_only(tmp_path: Path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## How long it takes\n\n{timings.BEGIN}\nold\n{timings.END}\n\nafter\n")
    monkeypatch.setattr(timings, "README", readme)
    report = {
        "run": {
            "wall_s": 600.0,
            "cpus": 2,
            "commit": "abc1234",
            "date": "2026-12-06",
            "stages": timings.stage_seconds([("benchmark", "cnn", 45.5)]),
        },
        "test": {
            "wall_s": 840.0,
            "cpus": 2,
            "cpu": "AMD EPYC, AVX2",
            "commit": "abc1234",
            "date": "2026-12-06",
        },
    }
    text = timings.render(report)
    timings.fill_readme(text)
    out = readme.read_text()
    assert "old" not in out and out.endswith(f"{timings.END}\n\nafter\n")
    assert "`make run`: **10.0 min**" in out and "`make test`: **14.0 min**" in out
    assert "| benchmark | 1 | 46 | cnn (46 s) |" in out
    assert "commit `abc1234`" in out
    # the CPU where it was recorded: the same commit takes minutes longer on a slower one
    assert (
        "(2 cores AMD EPYC, AVX2, commit" in out
        and "**10.0 min** wall, install included (2 cores, commit" in out
    )
    assert timings.cpu().rsplit(", ", 1)[1] in ("AVX-512 VNNI", "AVX-512", "AVX-VNNI", "AVX2", "no AVX2")


def test_the_readme_holds_the_markers_make_run_fills():
    text = (ROOT / "README.md").read_text()
    assert text.count(timings.BEGIN) == 1 and text.count(timings.END) == 1
