"""`onnxship ship`: one model you bring, from its file to a registered version, in one command.

    onnxship ship model.txt --data table.csv --target churn
    onnxship ship pipeline.skops --data table.parquet --target price --name diamonds
    onnxship ship model.joblib --data table.csv --target y --trust-pickle
    onnxship ship model.json --data table.csv --target y --quick   # a short benchmark (CI)

The model goes through the pipeline's own stages, in this process, on a project folder of its
own (--out): prepare (the table, typed: numbers and categories), train (the file is loaded, which
proves it sound, and scored on the table's test split), export, optimize, validate, benchmark,
package. The same reports (reports/<stage>/<name>.json) and MLflow runs as `dvc repro` come out,
and the version is registered (alias `candidate`) only when every gate passed.

Model files, by suffix: XGBoost .json/.ubj, LightGBM .txt, CatBoost .cbm, scikit-learn .skops
(loaded without pickle: only scikit-learn, NumPy, SciPy, XGBoost and LightGBM types) or
.joblib/.pkl (unpickling runs the file's code: only with --trust-pickle), PyTorch as a
torch.export program .pt2 (its tensors are unpickled: --trust-pickle too), and .onnx alone (no
native model, so no parity: optimized and timed, never registered).

With --native-fallback, a model no ONNX variant can carry is registered natively instead (MLflow's
own model of its family, tagged runtime: native with the reason; exit 0).

Exit codes: 0 registered (an .onnx file: timed); 1 refused (export failed or a gate failed: the
reason is printed, nothing registered); 2 bad input (an unknown file type, a missing target
column, a table whose columns do not fit the model, a file that does not load), nothing written
to the registry.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from onnxship.errors import PipelineError

REGISTERED, REFUSED, BAD_INPUT = 0, 1, 2
FAMILY_OF_SUFFIX = {
    ".json": "xgboost",
    ".ubj": "xgboost",
    ".txt": "lightgbm",
    ".cbm": "catboost",
    ".skops": "scikit-learn",
    ".joblib": "scikit-learn",
    ".pkl": "scikit-learn",
    ".pickle": "scikit-learn",
    ".pt2": "torch_export",
    ".onnx": "onnx",
}
# loading runs code the file holds: joblib/pickle, and a torch.export program's tensors
# (torch.export.load reads them with weights_only=False)
PICKLES = (".joblib", ".pkl", ".pickle", ".pt2")
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")
STAGES = ("prepare", "train", "export", "optimize", "validate", "benchmark", "package")
MAX_BATCH = 100_000  # rows in one timed call; the benchmark holds every size's inputs in memory


class ShipError(PipelineError):
    """A bad input to `onnxship ship`, said plainly (exit 2)."""


def parser(prog: str = "onnxship ship") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Take one model file through export, optimize, validate, benchmark and package.",
        epilog="exit codes: 0 registered, 1 refused (the reason is printed), 2 bad input",
    )
    kinds = " ".join(FAMILY_OF_SUFFIX)
    p.add_argument("model", type=Path, help=f"the model file ({kinds})")
    p.add_argument("--data", type=Path, required=True, help="the table to judge it on (.csv or .parquet)")
    p.add_argument("--target", required=True, help="the column the model predicts")
    p.add_argument("--task", choices=["regression", "classification"], help="default: from the target column")
    p.add_argument("--name", help="registered model name (default: the file's stem)")
    p.add_argument("--family", help="the model's family when the suffix does not say (e.g. pipeline)")
    p.add_argument(
        "--categorical",
        nargs="*",
        default=None,
        help="columns to take as categories (default: non-numeric ones)",
    )
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow .joblib/.pkl files: unpickling runs the file's code",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="the project folder for its data, models and reports (default: ./ship/<name>)",
    )
    p.add_argument("--tracking-uri", help="the MLflow store to register in (default: sqlite in --out)")
    p.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        metavar="N",
        help="the batch sizes to time, native vs ONNX (default: conf/benchmark's); the registered "
        "variant is the fastest proven one at the first",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a short benchmark (conf/experiment/smoke.yaml's: batches 1 and 100 unless --batch-sizes, "
        "one thread count, brief rounds): every gate still runs, the timings are indicative",
    )
    p.add_argument(
        "--native-fallback",
        action="store_true",
        help="if no ONNX variant can be proven, register the native model (runtime: native, with the "
        "reason); serving runs it in MLflow's scoring server",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return ship(args)
    except PipelineError as err:  # a bad file, table or argument: said plainly, nothing registered
        print(f"error: {err}", file=sys.stderr)
        return BAD_INPUT


def ship(args: argparse.Namespace) -> int:
    model, table = args.model.resolve(), args.data.resolve()
    suffix = model.suffix.lower()
    if not model.is_file():
        raise ShipError(f"model file not found: {args.model}")
    if suffix not in FAMILY_OF_SUFFIX:
        raise ShipError(f"unknown model file type '{suffix}' (known: {', '.join(FAMILY_OF_SUFFIX)})")
    if suffix in PICKLES and not args.trust_pickle:
        raise ShipError(
            f"{args.model.name} is unpickled to load: that runs whatever code it holds. Save a "
            "scikit-learn model with skops (skops.io.dump), or pass --trust-pickle if you trust the file"
        )
    if args.batch_sizes and not all(0 < size <= MAX_BATCH for size in args.batch_sizes):
        raise ShipError(f"--batch-sizes: whole numbers from 1 to {MAX_BATCH}")
    name = args.name or re.sub(r"[^A-Za-z0-9_\-]", "_", model.stem)
    if not NAME.match(name):
        raise ShipError("--name: letters, digits, '_' and '-', starting with a letter (64 at most)")
    if FAMILY_OF_SUFFIX[suffix] == "onnx":
        return onnx_alone(model, args)
    frame = read_table(table, args.target)
    task = args.task or guess_task(frame[args.target])
    out = (args.out or Path("ship") / name).resolve()
    cfg = ship_config(name, model, table, frame, task, args, out)
    fit_columns(cfg, name, frame)
    return run_stages(cfg, name)


def read_table(path: Path, target: str) -> Any:
    from omegaconf import OmegaConf

    from onnxship.data.tables import load_raw
    from onnxship.errors import DataError

    try:
        frame, _ = load_raw(OmegaConf.create({"source": "file", "path": str(path)}))
    except DataError as err:  # said as the option the user typed
        raise ShipError(f"--data: {str(err).removeprefix('data.path: ')}") from None
    if target not in frame.columns:
        raise ShipError(f"--target: the table has no column '{target}' (it has {len(frame.columns)} columns)")
    return frame


def guess_task(target: Any) -> str:
    """Numbers with many distinct values: regression; anything else: classification."""
    import pandas as pd

    numeric = pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(target)
    return "regression" if numeric and target.nunique() > 20 else "classification"


def ship_config(name: str, model: Path, table: Path, frame: Any, task: str, args: Any, out: Path) -> Any:
    """The pipeline's configuration for this one model: conf/ as it is, with the table as the data,
    one zoo entry bringing the file, and every path inside `out`."""
    import pandas as pd
    from omegaconf import OmegaConf

    from onnxship.pipeline.config import compose_config

    features = [c for c in frame.columns if c not in (args.target, "rownames")]
    strings = [
        c
        for c in features
        if not pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
    ]
    categorical = list(args.categorical) if args.categorical is not None else strings
    columns = bool(categorical)
    family = args.family or family_for(FAMILY_OF_SUFFIX[model.suffix.lower()], columns)
    cfg = compose_config()
    OmegaConf.set_struct(cfg, False)
    cfg.data = OmegaConf.create(
        {
            "layout": "columns" if columns else None,
            "source": "file",
            "package": None,
            "item": None,
            "path": str(table),
            "target": args.target,
            "task": task,
            "features": features,
            "categorical": categorical if columns else None,
            "time_column": None,
            "engineer": "none",
            "start": None,
            "freq": None,
            # the model is already trained: most rows judge it; a few are the validation rows
            # calibration reads (and the train rows a columns table takes its known categories from)
            "split": {"train": 0.1, "val": 0.1, "test": 0.8, "shuffle": True, "seed": 0},
            "min_rows": 20,
            "feature_dtype": "float32",
        }
    )
    cfg.datasets = {}
    cfg.zoo.models = {name: {"family": family, "path": str(model)}}
    cfg.model = name
    for key in ("prepared", "native", "onnx", "optimized", "reports", "checkpoints"):
        cfg.paths[key] = str(out / cfg.paths[key])
    # --tracking-uri, else the user's MLFLOW_TRACKING_URI (MLflow's own convention), else a store
    # in --out; the stages read the variable first, so it is set to the choice
    store = f"sqlite:///{out / 'mlflow.db'}"
    cfg.package.native_fallback = bool(getattr(args, "native_fallback", False))
    if getattr(args, "quick", False):
        cfg.benchmark = quick_benchmark()
        # the size the version is chosen at stays the configured one, and is timed
        sizes = {*cfg.benchmark.batch_sizes, cfg.package.select_batch_size}
        cfg.benchmark.batch_sizes = sorted(sizes)
    if getattr(args, "batch_sizes", None):
        cfg.package.select_batch_size = args.batch_sizes[0]
        cfg.benchmark.batch_sizes = sorted(set(args.batch_sizes))
    cfg.tracking.uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or store
    os.environ["MLFLOW_TRACKING_URI"] = cfg.tracking.uri
    cfg.tracking.artifact_root = str(out / "mlartifacts")
    return cfg


def quick_benchmark() -> Any:
    """--quick: the smoke experiment's benchmark block (conf/experiment/smoke.yaml), nothing else
    of that experiment."""
    from hydra.errors import HydraException

    from onnxship.pipeline.config import compose_config

    try:
        return compose_config(["experiment=smoke"]).benchmark
    except HydraException as err:  # a project's own conf/ without the smoke experiment
        raise ShipError(
            f"--quick reads conf/experiment/smoke.yaml, which did not load ({type(err).__name__})"
        ) from None


def fit_columns(cfg: Any, name: str, frame: Any) -> None:
    """Load the model (a file that does not load stops here) and take the table's columns in the
    model's order; a model that names features the table lacks, or wants another count of
    unnamed ones, stops here, before anything is written."""
    from onnxship import families

    family = families.get(cfg.zoo.models[name].family)
    est = family.bring(Path(cfg.zoo.models[name].path), cfg.zoo.models[name], cfg.data.task)
    names = model_feature_names(est)
    features = list(cfg.data.features)
    if names is None:
        width = model_feature_count(est)
        if width is not None and width != len(features):
            raise ShipError(
                f"--data: the model takes {width} features, the table has {len(features)} besides the target"
            )
        return
    missing = [n for n in names if n not in features]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ShipError(f"--data: the table lacks {len(missing)} column(s) the model takes: {shown}")
    cfg.data.features = names  # the model's order
    if cfg.data.categorical:
        cfg.data.categorical = [c for c in cfg.data.categorical if c in names]


def model_feature_names(est: Any) -> list[str] | None:
    """The feature names a fitted model keeps, whatever its library; None when it keeps none."""
    for get in (
        lambda e: e.feature_names_in_,  # scikit-learn API (also XGBoost's and LightGBM's wrappers)
        lambda e: e.feature_name(),  # a LightGBM Booster
        lambda e: e.feature_names_,  # CatBoost
        lambda e: e.get_booster().feature_names,  # XGBoost
    ):
        try:
            names = get(est)
        except Exception:
            continue
        if (
            names is not None
            and len(names)
            and not all(re.fullmatch(r"(f|Column_)\d+", str(n)) for n in names)
        ):
            return [str(n) for n in names]
    return None


def model_feature_count(est: Any) -> int | None:
    for get in (
        lambda e: e.n_features_in_,
        lambda e: e.num_feature(),
        lambda e: e.get_booster().num_features(),
    ):
        try:
            return int(get(est))
        except Exception:
            continue
    return None


def family_for(kind: str, columns: bool) -> str:
    """The family of a file kind: scikit-learn objects are `pipeline` on a table of categories
    (a ColumnTransformer in front), else `sklearn`."""
    if kind == "scikit-learn":
        return "pipeline" if columns else "sklearn"
    return kind


def run_stages(cfg: Any, name: str) -> int:
    """The stages in order, in this process, with a progress bar; the model's summary row last."""
    import importlib

    from tqdm import tqdm

    from onnxship.io import read_json

    Path(cfg.paths.reports).parent.mkdir(parents=True, exist_ok=True)  # the inputs were sound: now write
    with tqdm(total=len(STAGES), desc=f"ship {name}", unit="stage", file=sys.stderr) as bar:
        for stage in STAGES:
            bar.set_postfix_str(stage)
            importlib.import_module(f"stages.{stage}").run(cfg)
            bar.update(1)
    package = read_json(Path(cfg.paths.reports) / "package" / f"{name}.json")
    print_row(cfg, name, package)
    return REGISTERED if package.get("registered") else REFUSED


def print_row(cfg: Any, name: str, package: dict) -> None:
    """The model's row of reports/summary.md (same columns), and where its version went."""
    from onnxship.report.summary import SUMMARY_HEAD, display_row, model_row, table

    row = display_row(model_row(cfg, name))
    print("\n".join(table([h for h in SUMMARY_HEAD if h in row], [row])))
    if package.get("runtime") == "native":
        version, alias, why = package["version"], package["alias"], package["native_reason"]
        print(f"registered NATIVE: {package['registered_model']} version {version}, alias '{alias}' ({why})")
    elif package.get("registered"):
        version, alias = package["version"], package["alias"]
        print(f"registered: {package['registered_model']} version {version}, alias '{alias}'")
    else:
        print(f"not registered: {'; '.join(package.get('reasons') or ['see the reports'])}")
    print(f"reports: {cfg.paths.reports}  MLflow: {cfg.tracking.uri}")


def onnx_alone(model: Path, args: Any) -> int:
    """An ONNX file without its native model: nothing to prove parity against, so never
    registered. Its lossless variants (conf/optimize's that apply to every family and lose
    nothing) are written beside it in --out, and the file and each variant are checked (it runs,
    answers are finite, batch 1 = batch N) and timed by `onnxship bench`."""
    from onnxship.cli import bench
    from onnxship.passes import apply_chain, for_family, plan
    from onnxship.pipeline.config import as_plain, compose_config

    print(
        "an ONNX file alone: there is no native model to prove parity against, so nothing is "
        "registered; its lossless variants are made and everything is checked and timed",
        file=sys.stderr,
    )
    out = (args.out or Path("ship") / model.stem).resolve()
    out.mkdir(parents=True, exist_ok=True)
    chains = plan(for_family(as_plain(compose_config().optimize.variants), "onnx"))
    files = {"base": model}
    for variant, chain in chains.items():
        if any(step.lossy for step, _ in chain):
            continue
        try:
            apply_chain(model, out / f"{variant}.onnx", chain)
            files[variant] = out / f"{variant}.onnx"
        except Exception as err:  # a pass that cannot take this graph: said, the others go on
            print(f"{variant}: not made ({type(err).__name__}: {str(err)[:200]})", file=sys.stderr)
    timing, sizes = [], getattr(args, "batch_sizes", None)  # onnxship bench's defaults, unless said
    if getattr(args, "quick", False):
        quick = quick_benchmark()
        timing += [
            "--budget-s",
            str(quick.interleaved.budget_s),
            "--cold-start-runs",
            str(quick.cold_start_runs),
        ]
        sizes = sizes or quick.batch_sizes
    if sizes:
        timing += ["--batch-sizes", ",".join(str(b) for b in sorted(set(sizes)))]
    worst = 0
    for variant, path in files.items():
        print(f"\n== {variant} ({path.name})")
        worst = max(worst, bench.main([str(path), "--json", str(out / f"{variant}.bench.json"), *timing]))
    return worst
