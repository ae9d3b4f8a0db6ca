"""Server settings: conf/serving/default.yaml, overridden by ONNXSHIP_SERVING_<KEY> env vars."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

CONFIG_ENV = "ONNXSHIP_SERVING_CONFIG"
DEFAULT_CONFIG = Path("conf/serving/default.yaml")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ONNXSHIP_SERVING_", extra="ignore")

    tracking_uri: str = "sqlite:///mlflow.db"
    models: list[str] = Field(default_factory=lambda: ["xgboost"], min_length=1)
    alias: str = "champion"
    default_model: str | None = None
    poll_interval_s: float = Field(5.0, gt=0)
    registry_timeout_s: float = Field(10.0, gt=0)
    serve_local_copy: bool = False
    max_body_bytes: int = Field(1 << 20, gt=0)
    max_batch_rows: int = Field(1000, gt=0)
    cache_dir: Path = Path(".serving-cache")
    warmup_calls: int = Field(20, ge=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG))
        yaml_source = YamlConfigSettingsSource(settings_cls, yaml_file=path if path.exists() else None)
        return init_settings, env_settings, yaml_source

    @property
    def default(self) -> str:
        return self.default_model or self.models[0]
