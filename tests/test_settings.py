"""Serving settings have one source each: the YAML beside the package (whatever the working
directory), values the pipeline owns referenced from its conf/ groups, env overrides on top."""

from __future__ import annotations

from pathlib import Path

import pytest

from onnxship.pipeline.config import compose_config
from serving.settings import CONFIG_ENV, PROJECT_ROOT, Settings, SettingsError, read_config
from tests.conftest import ROOT


def test_started_elsewhere_the_server_reads_the_project_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    settings = Settings()
    composed = compose_config(config_dir=ROOT / "conf")
    assert settings.models == list(composed.serving.models)
    assert settings.alias == composed.serving.alias
    # the registry the pipeline packages into, found from the project root, not the working dir
    assert (
        settings.tracking_uri
        == f"sqlite:///{PROJECT_ROOT / composed.tracking.uri.removeprefix('sqlite:///')}"
    )
    assert settings.candidate_alias == composed.package.alias
    assert settings.cache_dir == PROJECT_ROOT / composed.serving.cache_dir


def test_a_missing_config_file_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "nope.yaml"))
    with pytest.raises(SettingsError, match=r"serving configuration not found: .*nope\.yaml"):
        Settings()


def test_environment_overrides_the_yaml(monkeypatch):
    monkeypatch.setenv("ONNXSHIP_SERVING_ALIAS", "candidate")
    monkeypatch.setenv("ONNXSHIP_SERVING_MODELS", '["lightgbm"]')
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    settings = Settings()
    assert (settings.alias, settings.models, settings.tracking_uri) == (
        "candidate",
        ["lightgbm"],
        "http://127.0.0.1:5999",
    )


def test_a_reference_to_an_unknown_pipeline_key_is_named(tmp_path: Path):
    conf = tmp_path / "conf"
    (conf / "serving").mkdir(parents=True)
    (conf / "serving" / "default.yaml").write_text("tracking_uri: ${tracking.nowhere}\n")
    with pytest.raises(SettingsError, match="nowhere"):
        read_config(conf / "serving" / "default.yaml")


def test_the_yaml_and_the_settings_class_list_the_same_keys():
    yaml_keys = set(read_config(ROOT / "conf" / "serving" / "default.yaml"))
    assert yaml_keys == set(Settings.model_fields), "every setting is in the YAML, and only settings"


def test_an_empty_conf_group_file_sets_nothing_rather_than_crashing(tmp_path):
    import shutil

    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    for found in (conf / "tracking").glob("*.yaml"):
        found.write_text("")  # an empty YAML file loads as None
    with pytest.raises(SettingsError, match="tracking"):
        read_config(conf / "serving" / "default.yaml")
