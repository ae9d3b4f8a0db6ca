"""Configuration: Hydra composes conf/; params.yaml is that composition, tracked by DVC.

The rule (README "Configuration"): people edit conf/; `make params` (python -m stages.params)
rewrites params.yaml from it; every stage refuses to run when params.yaml and a fresh
composition of conf/ differ, so DVC's change detection never works from stale values.
Command-line overrides (python -m stages.train model=xgboost zoo.models.xgboost.params.max_depth=4)
apply on top for one-off runs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from stages.common.errors import ConfigError, PipelineError

PARAMS_FILE = "params.yaml"


def conf_dir() -> Path:
    """conf/ of the project being run (the working directory, as DVC runs stages from the root)."""
    local = Path.cwd() / "conf"
    if (local / "config.yaml").exists():
        return local
    return Path(__file__).resolve().parents[2] / "conf"


def compose_config(overrides: Sequence[str] = (), config_dir: Path | None = None) -> DictConfig:
    """Compose conf/config.yaml with Hydra overrides (what tests and the stages both use)."""
    with initialize_config_dir(version_base=None, config_dir=str(config_dir or conf_dir())):
        return compose(config_name="config", overrides=list(overrides))


def as_plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def params_drift(params_path: Path = Path(PARAMS_FILE), config_dir: Path | None = None) -> list[str]:
    """Keys whose value differs between params.yaml and a fresh composition of conf/."""
    composed = as_plain(compose_config(config_dir=config_dir))
    if not params_path.exists():
        return [f"{params_path} is missing"]
    on_disk = yaml.safe_load(params_path.read_text()) or {}
    return sorted(_diff(composed, on_disk))


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in set(a) | set(b):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in a or key not in b:
                out.append(name)
            else:
                out.extend(_diff(a[key], b[key], name))
        return out
    return [] if a == b else [prefix or "<root>"]


def model_spec(cfg: DictConfig, name: str | None = None) -> DictConfig:
    """The zoo entry a per-model stage works on; a clear error when it is unset or unknown."""
    name = name or cfg.get("model")
    if not name:
        raise ConfigError(
            f"this stage works on one zoo model: pass model=<name> (one of: {', '.join(cfg.zoo.models)})"
        )
    if name not in cfg.zoo.models:
        raise ConfigError(f"model '{name}' is not in the zoo (zoo.models has: {', '.join(cfg.zoo.models)})")
    return cfg.zoo.models[name]


def run_stage(run: Callable[[DictConfig], dict], argv: Sequence[str] | None = None) -> dict:
    """Entry point of every stage script: compose, refuse stale params.yaml, run, report errors."""
    overrides = list(sys.argv[1:] if argv is None else argv)
    try:
        drift = params_drift()
        if drift:
            raise ConfigError(
                "params.yaml is out of step with conf/ ("
                + ", ".join(drift[:8])
                + (" ..." if len(drift) > 8 else "")
                + "): run `make params` and commit params.yaml"
            )
        cfg = compose_config(overrides)
        return run(cfg)
    except PipelineError as err:
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        raise SystemExit(1) from None
