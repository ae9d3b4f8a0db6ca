"""conf/ and params.yaml stay in step; config errors name what is wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from onnxship.errors import ConfigError
from onnxship.pipeline.config import as_plain, compose_config, model_spec, params_drift
from tests.conftest import ROOT


def test_params_yaml_matches_conf():
    assert params_drift(ROOT / "params.yaml", ROOT / "conf") == [], "run `make params` and commit params.yaml"


def test_drift_is_detected(tmp_path: Path):
    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    zoo = tmp_path / "conf" / "zoo" / "default.yaml"
    zoo.write_text(zoo.read_text().replace("max_depth: 6", "max_depth: 4"))
    assert params_drift(tmp_path / "params.yaml", tmp_path / "conf") == [
        # the stacks hold their bases' entries (conf/zoo interpolates them): their copy changes too
        "zoo.models.stack_ridge.base.xgboost.params.max_depth",
        "zoo.models.xgboost.params.max_depth",
    ]


def test_the_full_zoo_is_the_default_zoo_and_the_second_of_a_kind():
    default = as_plain(compose_config(config_dir=ROOT / "conf"))["zoo"]["models"]
    full = as_plain(compose_config(["zoo=full"], config_dir=ROOT / "conf"))["zoo"]["models"]
    assert {name: full[name] for name in default} == default
    extra = set(full) - set(default)
    assert extra == {"stack_lightgbm", "diamonds_lightgbm", "chronos2_finetuned"}
    # the extra stack trains copies of the default zoo's bases, as the default stack does
    assert full["stack_lightgbm"]["base"] == full["stack_ridge"]["base"]


def test_a_stage_warns_on_drift_and_compares_each_state_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    from onnxship.pipeline import runner

    shutil.copytree(ROOT / "conf", tmp_path / "conf")
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the agreement stamp lands here
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    runner.warn_on_drift()
    assert not caplog.records and len(list(tmp_path.glob("onnxship-params-agree-*"))) == 1
    zoo = tmp_path / "conf" / "zoo" / "default.yaml"
    zoo.write_text(zoo.read_text().replace("max_depth: 6", "max_depth: 4"))
    for _ in range(2):  # a disagreement is never remembered: every stage says it
        caplog.clear()
        runner.warn_on_drift()
        assert "zoo.models.xgboost.params.max_depth" in caplog.text
    assert len(list(tmp_path.glob("onnxship-params-agree-*"))) == 1


def test_unknown_model_is_named():
    cfg = compose_config(["model=nope"], config_dir=ROOT / "conf")
    with pytest.raises(ConfigError, match=r"'nope' is not in the zoo.*xgboost"):
        model_spec(cfg)


def test_command_line_overrides_apply():
    cfg = compose_config(
        ["zoo.models.xgboost.params.max_depth=3", "data=file", "data.path=x.csv", "data.target=y"],
        config_dir=ROOT / "conf",
    )
    assert cfg.zoo.models.xgboost.params.max_depth == 3
    assert cfg.data.source == "file"


def test_stage_overrides_change_only_keys_params_yaml_has():
    from onnxship.pipeline.config import load_params

    cfg = load_params(["model=xgboost", "zoo.models.xgboost.params.max_depth=4"], ROOT / "params.yaml")
    assert cfg.model == "xgboost" and cfg.zoo.models.xgboost.params.max_depth == 4
    with pytest.raises(ConfigError, match=r"params\.yaml does not have: xgbost"):
        load_params(["zoo.models.xgbost.params.max_depth=4"], ROOT / "params.yaml")
    with pytest.raises(ConfigError, match=r"'data=file' picks a conf/ group option.*make params"):
        load_params(["data=file", "data.path=x.csv"], ROOT / "params.yaml")


def test_params_are_read_by_omegaconfs_yaml_rules(tmp_path: Path):
    """load_params reads with libyaml (a stage's first quarter-second was OmegaConf's loader):
    the same values, floats such as 1e-3, dates left as strings, duplicate keys refused."""
    from omegaconf import OmegaConf

    from onnxship.pipeline.config import read_params

    for path in (ROOT / "params.yaml", ROOT / "conf" / "zoo" / "default.yaml"):  # the latter unresolved
        assert OmegaConf.to_container(read_params(path)) == OmegaConf.to_container(OmegaConf.load(path)), path
    odd = tmp_path / "odd.yaml"
    odd.write_text("lr: 1e-3\nday: 2026-01-01\nnothing: ~\nlist: [1, 2.5]\n")
    assert as_plain(read_params(odd)) == as_plain(OmegaConf.load(odd)) == {
        "lr": 0.001, "day": "2026-01-01", "nothing": None, "list": [1, 2.5]
    }  # fmt: skip
    odd.write_text("a: 1\nb: {c: 2}\na: 3\n")
    with pytest.raises(Exception, match="duplicate key a"):
        read_params(odd)
