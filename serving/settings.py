"""Serving settings, read by both serving processes (the HTTP server and the registry side).

One source for each value: conf/serving/default.yaml beside this package (or the file named by
ONNXSHIP_SERVING_CONFIG; a missing file is an error, never a silent fallback), overridden by
ONNXSHIP_SERVING_<KEY> environment variables. Values the pipeline owns are referenced, not
copied: `tracking_uri: ${tracking.uri}` and `candidate_alias: ${package.alias}` resolve against
the conf/ groups chosen in conf/config.yaml (MLFLOW_TRACKING_URI wins, as in the pipeline).
Relative paths (a sqlite:/// store, cache_dir) are taken from the project root, so a server
started from another directory serves the same registry.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from onnxship import store

CONFIG_ENV = "ONNXSHIP_SERVING_CONFIG"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = PROJECT_ROOT / "conf" / "serving" / "default.yaml"
REFERENCED_GROUPS = ("tracking", "package")  # pipeline groups the serving YAML may refer to


class SettingsError(RuntimeError):
    """The serving configuration file is missing or refers to something that does not exist."""


def config_path() -> Path:
    path = Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    if not path.is_file():
        raise SettingsError(f"serving configuration not found: {path} (set {CONFIG_ENV} to a YAML file)")
    return path


def _chosen_group_file(conf: Path, group: str) -> Path | None:
    """conf/<group>/<option>.yaml for the option conf/config.yaml's defaults list picks."""
    root = conf / "config.yaml"
    if not root.is_file():
        return None
    for item in yaml.safe_load(root.read_text()).get("defaults", []):
        if isinstance(item, dict) and isinstance(item.get(group), str):
            return conf / group / f"{item[group]}.yaml"
    return None


def read_config(path: Path) -> dict[str, Any]:
    """The serving YAML with ${group.key} references to the pipeline's conf/ groups resolved."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    conf = path.resolve().parents[1]  # conf/serving/default.yaml -> conf/
    root: dict[str, Any] = {}
    for group in REFERENCED_GROUPS:
        found = _chosen_group_file(conf, group)
        loaded = yaml.safe_load(found.read_text()) if found and found.is_file() else None
        root[group] = loaded if isinstance(loaded, dict) else {}  # an empty file: nothing set
    uri = store.tracking_uri(root["tracking"].get("uri"))
    if uri:
        root["tracking"]["uri"] = uri
    merged = OmegaConf.create({**root, "serving": yaml.safe_load(path.read_text()) or {}})
    try:
        return OmegaConf.to_container(merged.serving, resolve=True)
    except OmegaConfBaseException as err:
        raise SettingsError(f"{path}: {err.msg if hasattr(err, 'msg') else err}") from None


class _YamlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return read_config(config_path())


class Settings(BaseSettings):
    """Every field comes from the YAML (or the environment): no defaults here to disagree with it."""

    model_config = SettingsConfigDict(env_prefix="ONNXSHIP_SERVING_", extra="ignore")

    tracking_uri: str
    models: list[str] = Field(min_length=1)
    alias: str
    candidate_alias: str
    default_model: str | None
    poll_interval_s: float = Field(gt=0)
    max_backoff_s: float = Field(gt=0)
    following_stall_s: float = Field(gt=0)
    registry_timeout_s: float = Field(gt=0)
    lock_timeout_s: float = Field(ge=1)
    download_deadline_s: float = Field(gt=0)
    registry_env_file: Path | None
    serve_local_copy: bool
    max_body_bytes: int = Field(gt=0)
    max_values: int = Field(gt=0)
    max_batch_rows: int = Field(gt=0)
    max_call_rows: int = Field(ge=16)
    max_answer_values: int = Field(gt=0)
    max_model_bytes: int = Field(gt=0)
    max_call_s: float = Field(gt=0)
    max_call_bytes: int = Field(gt=0)
    workers: int = Field(ge=1, le=64)
    max_in_flight: int = Field(ge=1)
    max_connections: int = Field(ge=1)
    max_header_bytes: int = Field(ge=1024)
    header_timeout_s: float = Field(gt=0)
    body_timeout_s: float = Field(gt=0)
    keep_alive_s: float = Field(gt=0)
    graceful_shutdown_s: float = Field(gt=0)
    cache_dir: Path
    state_dir: Path | None
    warmup_calls: int = Field(ge=0)
    shadow_models: list[str]
    shadow_share: float = Field(gt=0, le=1)
    shadow_queue: int = Field(ge=1)
    shadow_report_s: float = Field(gt=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _YamlSource(settings_cls)

    @field_validator("tracking_uri")
    @classmethod
    def _rooted_sqlite(cls, uri: str) -> str:
        prefix = "sqlite:///"
        if uri.startswith(prefix) and not Path(uri[len(prefix) :]).is_absolute():
            return prefix + str(PROJECT_ROOT / uri[len(prefix) :])
        return uri

    @field_validator("cache_dir", "state_dir", "registry_env_file")
    @classmethod
    def _rooted(cls, path: Path | None) -> Path | None:
        return path if path is None or path.is_absolute() else PROJECT_ROOT / path

    @model_validator(mode="after")
    def _shadowed_are_served(self) -> Settings:
        unserved = [m for m in self.shadow_models if m not in self.models]
        if unserved:
            raise ValueError(
                f"shadow_models: {len(unserved)} model(s) not in models (only served models are shadowed)"
            )
        return self

    @model_validator(mode="after")
    def _state_outside_cache(self) -> Settings:
        cache, state = self.cache_dir.resolve(), self.trusted_state_dir.resolve()
        if state == cache or cache in state.parents:
            raise ValueError("state_dir must not be inside cache_dir (a cache writer could forge it)")
        return self

    @property
    def trusted_state_dir(self) -> Path:
        return self.state_dir or self.cache_dir.with_name(self.cache_dir.name + ".state")

    @property
    def candidate_dirs(self) -> tuple[Path, Path]:
        """The candidates' cache and trusted state (shadow mode): their own folders, so that neither
        watcher prunes the other's versions ('.' cannot start a model name: no clash)."""
        return self.cache_dir / ".candidates", self.trusted_state_dir / ".candidates"

    def registry_env(self) -> dict[str, str]:
        """The watcher's extra environment: the registry URI (off its command line) and the
        KEY=VALUE lines of `registry_env_file`."""
        env = {"MLFLOW_TRACKING_URI": self.tracking_uri}
        if self.registry_env_file is None:
            return env
        for number, line in enumerate(self.registry_env_file.read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep or not key.strip().replace("_", "").isalnum():
                raise SettingsError(f"registry_env_file line {number}: expected KEY=VALUE")
            env[key.strip()] = value.strip()
        return env

    @property
    def default(self) -> str:
        return self.default_model or self.models[0]

    @property
    def inference_concurrency(self) -> int:
        """Calls one worker runs at once in its thread pool: two per core it may use (one
        computing while the other's answer is written), never fewer than 2."""
        return max(2, 2 * self.max_threads)

    @property
    def max_threads(self) -> int:
        """ORT threads one model may use in one worker: this host's cores shared by the workers
        (a version tuned on a bigger machine is clamped, not refused)."""
        return max(1, len(os.sched_getaffinity(0)) // self.workers)
