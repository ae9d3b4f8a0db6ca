"""Configuration: people edit conf/ (Hydra groups); params.yaml is its composition, which DVC tracks.

Stages read params.yaml: it is what DVC decided from, and what `dvc exp run -S key=value` edits
(with DVC's Hydra integration on, `dvc exp run` composes conf/ plus the overrides into it).
`make params` (python -m tools.params) rewrites params.yaml from conf/; tests/test_config.py and
`python -m tools.params --check` fail when the two drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from omegaconf._utils import get_yaml_loader
from omegaconf.errors import ConfigKeyError

from onnxship.errors import ConfigError

PARAMS_FILE = "params.yaml"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def conf_dir() -> Path:
    """conf/ of the project being run: the working directory's (DVC runs stages from the root),
    else the one beside this package."""
    local = Path.cwd() / "conf"
    return local if (local / "config.yaml").exists() else PROJECT_ROOT / "conf"


def compose_config(overrides: Sequence[str] = (), config_dir: Path | None = None) -> DictConfig:
    """Compose conf/config.yaml with Hydra overrides (tests and tools.params use this)."""
    with initialize_config_dir(version_base=None, config_dir=str(config_dir or conf_dir())):
        return compose(config_name="config", overrides=list(overrides))


class _ParamsLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """OmegaConf.load's YAML rules (floats such as 1e-3, no timestamps, a duplicate key is an
    error) on libyaml's parser: every stage reads params.yaml first, and OmegaConf's pure-Python
    loader took a quarter of a second of it."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> Any:
        keys = [k.value for k, _ in node.value if k.tag == yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG]
        duplicate = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
        if duplicate is not None:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, f"found duplicate key {duplicate}"
            )
        return super().construct_mapping(node, deep=deep)


_ParamsLoader.yaml_implicit_resolvers = get_yaml_loader().yaml_implicit_resolvers


def read_params(path: Path) -> DictConfig:
    """A params file as OmegaConf.load reads it, faster."""
    return OmegaConf.create(yaml.load(path.read_text(encoding="utf-8"), Loader=_ParamsLoader) or {})


def load_params(overrides: Sequence[str] = (), path: Path = Path(PARAMS_FILE)) -> DictConfig:
    """params.yaml with `key.path=value` overrides on top (e.g. model=xgboost from dvc.yaml).

    Overrides may only change values params.yaml has (a typo is an error, not a new key); choosing
    another conf/ group option (data=file) is a change of conf/, made there or with `dvc exp run -S`."""
    if not path.is_file():
        raise ConfigError(f"{path} is missing: run `make params` (it composes conf/)")
    cfg = read_params(path)
    groups = {p.name for p in conf_dir().iterdir() if p.is_dir()}
    for override in overrides:
        key = override.split("=", 1)[0]
        if "=" not in override or override.startswith(("+", "~")):
            raise ConfigError(f"overrides are key.path=value pairs, got: {override}")
        if key in groups:
            raise ConfigError(
                f"'{override}' picks a conf/ group option: set `{key}: ...` in conf/config.yaml's defaults "
                f"and run `make params`, or use `dvc exp run -S {override}`"
            )
    OmegaConf.set_struct(cfg, True)
    try:
        cfg.merge_with(OmegaConf.from_dotlist(list(overrides)))  # in place: no copy of the whole config
        return cfg
    except ConfigKeyError as err:
        raise ConfigError(f"override names a key params.yaml does not have: {err.key}") from None


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


def prepared_dir(cfg: DictConfig, name: str | None = None) -> Path:
    """Where a zoo entry's prepared data is: the main table (data/prepared), or the folder of the
    dataset it names with `dataset:` (data/prepared/<dataset>, from conf/datasets/)."""
    dataset = model_spec(cfg, name).get("dataset")
    if not dataset:
        return Path(cfg.paths.prepared)
    if dataset not in cfg.datasets:
        known = ", ".join(cfg.datasets) or "none"
        raise ConfigError(f"dataset '{dataset}' is not in conf/datasets (known: {known})")
    return Path(cfg.paths.prepared) / dataset
