"""The params.yaml keys each stage reads, as one small file per stage (and zoo model).

DVC learns of a parameter change through these files, as it learns of a code change through
reports/code (tools/stage_deps.py): dvc.yaml's stage `params` depends on all of params.yaml and
runs this tool, which writes `reports/params/<stage>/<model>.yaml` (per-model stages) or
`reports/params/<stage>.yaml` holding the values of the keys in READS below; each stage depends on
its own file. A stage re-runs exactly when a value it reads changes, `dvc params diff` and
`dvc exp show` still list every key (stage `params` tracks them all), and dvc.lock holds each
params block once instead of once per stage and model: DVC re-reads and re-writes dvc.lock around
every stage (seconds each for a quarter-megabyte lock), so its size is paid a hundred times.

    python -m tools.stage_params --write reports/params   # stage `params`
    python -m tools.stage_params                          # print what each stage reads
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

PARAMS_STAGE = "params"
PARAMS_DIR = Path("reports/params")
MODEL = "{model}"  # in a key: the zoo model a per-model stage runs for
# stage -> the params.yaml keys it reads (what each stage's @stage logs to MLflow, and the
# model's zoo entry); per-model stages are those whose keys name MODEL or that dvc.yaml runs with
# foreach (PER_MODEL)
READS: dict[str, tuple[str, ...]] = {
    "prepare": ("data", "datasets", "paths.prepared"),
    "checkpoint": ("checkpoints", "seed"),
    # a stacking entry holds its bases' entries (conf/zoo interpolates them), so this is exact
    "train": (f"zoo.models.{MODEL}", "seed"),
    "export": ("export",),
    "optimize": ("optimize", f"zoo.models.{MODEL}"),
    "validate": ("validate", "runtime", "seed", f"zoo.models.{MODEL}"),
    # package's choice rule too: start-up is measured for the variant it will register
    "benchmark": (
        "benchmark", "runtime", f"zoo.models.{MODEL}",
        "package.select_batch_size", "package.min_gain_over_base",
    ),
    # tracking: pointing the pipeline at another MLflow store registers the models there
    "package": ("package", "runtime", "tracking"),
    "summarize": ("zoo.models",),
}  # fmt: skip
PER_MODEL = ("train", "export", "optimize", "validate", "benchmark", "package")


def params_file(stage: str, model: str | None = None) -> Path:
    """The file dvc.yaml names as the stage's params dependency (model: `${key}` in dvc.yaml)."""
    return PARAMS_DIR / stage / f"{model}.yaml" if stage in PER_MODEL else PARAMS_DIR / f"{stage}.yaml"


def value_at(params: dict, key: str) -> object:
    node: object = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"params.yaml has no key {key!r} (tools/stage_params.py READS)")
        node = node[part]
    return node


def stage_values(params: dict, stage: str, model: str | None = None) -> dict:
    """{key: value} for every key the stage reads, the model's name filled in."""
    keys = [key.replace(MODEL, model or "") for key in READS[stage]]
    return {key: value_at(params, key) for key in keys}


def write_params_files(folder: Path, params_yaml: Path = Path("params.yaml")) -> list[Path]:
    """One file per stage (and model) in `folder`, and nothing else there."""
    params = yaml.safe_load(params_yaml.read_text())
    models = list(value_at(params, "zoo.models"))
    wanted: dict[Path, str] = {}
    for stage in READS:
        for model in models if stage in PER_MODEL else [None]:
            path = folder / params_file(stage, model).relative_to(PARAMS_DIR)
            wanted[path] = yaml.safe_dump(stage_values(params, stage, model), sort_keys=True)
    for stale in [p for p in folder.rglob("*.yaml") if p not in wanted] if folder.exists() else []:
        stale.unlink()  # a model that left the zoo
    for path, text in wanted.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    return sorted(wanted)


def main(argv: list[str]) -> int:
    if "--write" in argv:
        at = argv.index("--write") + 1
        folder = Path(argv[at]) if len(argv) > at else PARAMS_DIR
        written = write_params_files(folder)
        print(f"wrote {len(written)} params files under {folder}")
        return 0
    for stage, keys in READS.items():
        print(f"{stage}{' (per model)' if stage in PER_MODEL else ''}: {', '.join(keys)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
