"""onnxship-bench: benchmark and validate one model without the pipeline.

    onnxship-bench model.onnx                                  the ONNX file alone
    onnxship-bench model.onnx --native model.json --family xgboost --task regression
    onnxship-bench --registered xgboost@candidate              a registered version (MLflow)

What it does, with a progress bar on stderr, a readable table on stdout and, with --json, every
figure in a file:
  1. inputs: --data (.npy, or .csv of numeric columns) or, without it, random inputs shaped and
     typed like the graph's inputs (dynamic dimensions other than the batch: --dim name=size);
  2. validation: the graph runs, answers are finite, batch 1 and batch N answer alike, two runs
     answer alike; with --native, parity against the native model as the validate stage judges
     it (onnxship.parity.rows.compare: max |diff|, share of rows whose every value is within
     atol + rtol·|native|);
  3. latency: each runtime in its own process, in interleaved rounds until every p99 interval is
     within ±10 % or the budget ends (onnxship.measure.rounds), per batch size, with intervals;
  4. start-up and memory: fresh processes importing only their runtime (onnxship.measure.coldstart).
For a registered version the registry's record and every downloaded file are checked first, as
the server's watcher checks them (onnxship.version.verify; a version that failed a gate is timed
all the same, and says so), the version's own session settings are used, and the figures it was
registered with are shown beside.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from onnxship.contract import NATIVE
from onnxship.errors import PipelineError

DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64}
DTYPES |= {"tensor(int32)": np.int32, "tensor(float16)": np.float16, "tensor(bool)": np.bool_}


class CliError(PipelineError):
    """A bad argument or input, said plainly (exit 2)."""


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="onnxship-bench", description=__doc__.split("\n")[0])
    p.add_argument("onnx", nargs="?", help="the ONNX file (not with --registered)")
    p.add_argument("--native", help="the native model file the ONNX was converted from")
    p.add_argument("--family", help="its family: xgboost, lightgbm, catboost, sklearn, torch, ...")
    p.add_argument("--task", choices=["regression", "classification"], default="regression")
    p.add_argument("--registered", help="NAME@ALIAS or NAME/VERSION in the MLflow registry")
    p.add_argument(
        "--tracking-uri", default=None, help="MLflow store (default: $MLFLOW_TRACKING_URI or ./mlflow.db)"
    )
    p.add_argument("--data", help="inputs: .npy array or .csv of numeric feature columns")
    p.add_argument("--dim", action="append", default=[], help="size of a named dynamic dimension, name=size")
    p.add_argument("--batch-sizes", default="1,10,100,1000", help="comma-separated (default 1,10,100,1000)")
    p.add_argument("--budget-s", type=float, default=3.0, help="timing budget per batch size (default 3)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads, both runtimes (default 1)")
    p.add_argument("--cold-start-runs", type=int, default=3)
    p.add_argument("--atol", type=float, default=1e-4)
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--json", help="write every figure to this file")
    args = p.parse_args(argv)
    if bool(args.onnx) == bool(args.registered):
        p.error("give an ONNX file or --registered NAME@ALIAS, one of them")
    if args.native and not args.family:
        p.error("--native needs --family (how to load it)")
    return args


def registered_version(ref: str, tracking_uri: str | None, into: Path) -> tuple[Path, dict]:
    """Download a registered version and check every file against the registry's manifest."""
    from mlflow.tracking import MlflowClient

    name, sep, which = ref.partition("@") if "@" in ref else ref.partition("/")
    if not sep or not name or not which:
        raise CliError("--registered takes NAME@ALIAS or NAME/VERSION")
    from onnxship import store

    uri = tracking_uri or store.tracking_uri("sqlite:///mlflow.db")
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        # MLflow would create an empty store there; say where to look instead
        raise CliError("no MLflow store at the tracking URI: give --tracking-uri or set MLFLOW_TRACKING_URI")
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        if "@" in ref:
            mv = client.get_model_version_by_alias(name, which)
        else:
            mv = client.get_model_version(name, which)
    except Exception:
        raise CliError("no such registered version: check the name, alias or version and store") from None
    import mlflow.artifacts

    from onnxship.version.manifest import file_manifest
    from onnxship.version.verify import RejectedModel, verify, vouched

    try:  # the checks the server's watcher makes, but a version that failed a gate may be re-timed
        trusted = vouched(mv, approved=False)
        source = client.get_model_version_download_uri(name, mv.version)  # the run's artifact folder
        folder = Path(mlflow.artifacts.download_artifacts(source, dst_path=str(into), tracking_uri=uri))
        verify(folder, trusted)
        if file_manifest(folder) != trusted.manifest:  # the evidence files too, not only the served ones
            raise RejectedModel("the downloaded files differ from the registry's manifest")
    except RejectedModel as err:
        raise CliError(f"version {mv.version} refused: {err}") from None
    failed = sorted(g for g, ok in trusted.gates.items() if not ok)
    return folder, {"name": name, "version": mv.version, "failed_gates": failed}


def graph_inputs(path: Path, dims: dict[str, int]) -> list[dict]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = []
    for i in session.get_inputs():
        if i.type not in DTYPES:
            raise CliError(
                f"input '{i.name}' has type {i.type}, which this tool cannot synthesize: give --data"
            )
        shape = [d if isinstance(d, int) else None for d in i.shape]
        rest = []
        for d, named in zip(shape[1:], i.shape[1:], strict=True):
            if d is None and named not in dims:
                raise CliError(f"input '{i.name}' has a dynamic dimension '{named}': give --dim {named}=SIZE")
            rest.append(d if d is not None else dims[named])
        out.append(
            {
                "name": i.name,
                "dtype": DTYPES[i.type],
                "shape": rest,
                "fixed_batch": shape[0] if shape else None,
            }
        )
    return out


def make_inputs(args: argparse.Namespace, inputs: list[dict], rows: int) -> dict[str, np.ndarray]:
    """{input name: array of `rows` rows}: --data, or seeded random values of the graph's type."""
    if args.data:
        path = Path(args.data)
        if not path.is_file():
            raise CliError("--data: no such file")
        if path.suffix == ".npy":
            data = np.load(path, allow_pickle=False)
        elif path.suffix == ".csv":
            data = np.genfromtxt(path, delimiter=",", skip_header=1)
        else:
            raise CliError("--data takes a .npy or .csv file")
        if len(inputs) != 1:
            raise CliError("--data feeds single-input graphs; this graph has several inputs")
        spec = inputs[0]
        data = np.asarray(data).reshape(len(data), *spec["shape"]) if data.ndim >= 1 else data
        return {spec["name"]: data.astype(spec["dtype"])[np.arange(rows) % len(data)]}
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in inputs:
        shape = (rows, *spec["shape"])
        if np.issubdtype(spec["dtype"], np.floating):
            feeds[spec["name"]] = rng.normal(size=shape).astype(spec["dtype"])
        else:
            feeds[spec["name"]] = rng.integers(0, 2, size=shape).astype(spec["dtype"])
    return feeds


def native_folder(args: argparse.Namespace, into: Path) -> Path:
    """The native file as the pipeline keeps it (the file + meta.json), so the benchmark's
    native runtime loads it exactly as it loads a zoo model."""
    from onnxship import families
    from onnxship.contract import NATIVE_META
    from onnxship.io import write_json

    source = Path(args.native)
    if not source.is_file():
        raise CliError("--native: no such file")
    try:
        family = families.get(args.family)
    except Exception:
        raise CliError(f"--family: unknown family (known: {', '.join(families.FAMILIES.names())})") from None
    folder = into / "native"
    folder.mkdir()
    est = family.bring(source, {"family": args.family}, args.task)
    family.store_brought(source, est, folder / family.native_file)
    write_json(
        folder / NATIVE_META, {"family": args.family, "task": args.task, "native_file": family.native_file}
    )
    return folder


def validate(
    onnx_path: Path, settings: dict, feeds: dict[str, np.ndarray], native: Path | None, args
) -> dict:
    """Runs, finite, batch 1 vs N, repeatable; and parity against the native model if given."""
    from onnxship.parity.rows import row_diff
    from onnxship.runtime import InferenceSettings, create_session

    session = create_session(onnx_path, InferenceSettings.from_mapping(settings))
    names = [o.name for o in session.get_outputs()]
    whole = session.run(names, feeds)
    again = session.run(names, feeds)
    rows = min(16, len(next(iter(feeds.values()))))
    single = [session.run(names, {k: v[i : i + 1] for k, v in feeds.items()}) for i in range(rows)]
    numeric = [i for i, out in enumerate(whole) if isinstance(out, np.ndarray) and out.dtype.kind in "fiub"]
    report: dict[str, Any] = {"outputs": {names[i]: list(whole[i].shape) for i in numeric}}
    report["finite"] = all(np.isfinite(whole[i].astype(np.float64)).all() for i in numeric)
    report["repeatable_max_abs_diff"] = max(float(row_diff(whole[i], again[i]).max()) for i in numeric)
    report["batch_1_vs_n_max_abs_diff"] = max(
        float(
            row_diff(
                np.concatenate([s[i] for s in single]).astype(np.float64), whole[i][:rows].astype(np.float64)
            ).max()
        )
        for i in numeric
    )
    # batch 1 vs N is reported, not gated: INT8-dynamic graphs quantize over the batch, by design
    checks = [
        report["finite"],
        report["repeatable_max_abs_diff"] == 0,
    ]
    if native is not None:
        report["parity"] = parity(native, whole, names, feeds, args)
        checks.append(report["parity"]["within_tolerance"] == 1.0)
    report["passed"] = all(checks)
    return report


def parity(native: Path, outputs: list, names: list[str], feeds: dict, args) -> dict:
    """Native predictions vs the ONNX output of the same shape (probabilities for classifiers),
    judged as the validate stage judges rows (onnxship.parity.rows.compare): a row is within
    tolerance when every value in it is within atol + rtol * |native|."""
    from onnxship import families
    from onnxship.contract import Prediction
    from onnxship.parity.rows import compare, outputs_of

    family, est, meta = families.load_native(native)
    (X,) = feeds.values()
    pred = family.predict(est, X, meta["task"])
    expected = outputs_of(pred, len(X))
    for name, out in zip(names, outputs, strict=True):
        if (
            isinstance(out, np.ndarray)
            and out.dtype.kind == "f"
            and out.reshape(len(X), -1).shape == expected.shape
        ):
            got = out.reshape(len(X), -1).astype(np.float64)
            onnx_pred = (
                Prediction(got.reshape(-1)) if pred.proba is None else Prediction(got.argmax(axis=1), got)
            )
            figures = compare(pred, onnx_pred, args.atol, args.rtol)
            # the histogram is for the pipeline's plots; label agreement needs the model's class
            # labels, which an outside classifier may not number 0..k-1 as the argmax does
            figures.pop("diff_histogram")
            figures.pop("label_agreement", None)
            return {"output": name} | figures
    raise CliError(
        f"no ONNX output has the native prediction's shape {list(expected.shape)} "
        "(classifiers: convert without ZipMap so probabilities are a tensor)"
    )


def measure(jobs: dict[str, dict], sizes: list[int], args, progress) -> dict:
    from onnxship.measure.rounds import measure_interleaved

    rounds = {"round_s": 0.05, "target": 0.10, "budget_s": args.budget_s, "min_rounds": 3, "min_samples": 20}
    out = measure_interleaved({s: jobs for s in sizes}, None, rounds, progress=progress)
    if NATIVE in out:
        from onnxship.measure.report import add_speedups

        report = {"runtimes": {rt: {"batches": cells} for rt, cells in out.items()}}
        add_speedups(report)
    return out


def render(result: dict) -> str:
    lines = [f"model: {result['model']}", ""]
    v = result["validation"]
    lines.append(
        f"validation: {'PASSED' if v['passed'] else 'FAILED'}  finite={v['finite']}  "
        f"repeatable max|Δ|={v['repeatable_max_abs_diff']:.3g}  "
        f"batch 1 vs N max|Δ|={v['batch_1_vs_n_max_abs_diff']:.3g}"
    )
    if "parity" in v:
        p = v["parity"]
        lines.append(
            f"parity vs native ({p['output']}): max|Δ|={p['max_abs_diff']:.3g}, "
            f"{p['within_tolerance']:.2%} within tolerance"
        )
    lines += [
        "",
        f"{'runtime':<10} {'batch':>6} {'p50 ms [95% CI]':>26} {'p99 ms [95% CI]':>26} "
        f"{'speedup [CI]':>20} {'n':>7}",
    ]
    for runtime, cells in result["latency"].items():
        for size, c in cells.items():
            p50 = f"{c['p50_ms']:.4g} [{c['p50_ci_ms'][0]:.4g}–{c['p50_ci_ms'][1]:.4g}]"
            p99 = f"{c['p99_ms']:.4g} [{c['p99_ci_ms'][0]:.4g}–{c['p99_ci_ms'][1]:.4g}]"
            sp = c.get("speedup_vs_native_p50")
            speed = (
                f"{sp:.2f}× [{c['speedup_ci'][0]:.2f}–{c['speedup_ci'][1]:.2f}]"
                if sp and runtime != NATIVE
                else ""
            )
            lines.append(f"{runtime:<10} {size:>6} {p50:>26} {p99:>26} {speed:>20} {c['iterations']:>7}")
    lines.append("")
    for runtime, s in result["cold_start"].items():
        lines.append(
            f"{runtime:<10} cold start {s['cold_start_s']['median']:.3g} s "
            f"(import {s['import_s']['median']:.3g} s, "
            f"load {s['load_s']['median']:.3g} s), RSS at rest {s['rss_rest_mb']['median']:.0f} MB, "
            f"peak {s['rss_peak_mb']['median']:.0f} MB  (median of {s['runs']} fresh processes)"
        )
    if result.get("registered_figures"):
        lines += ["", "as registered: " + json.dumps(result["registered_figures"])]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    from tqdm import tqdm

    from onnxship.io import read_json, sha256_file
    from onnxship.measure.coldstart import cold_starts

    sizes = sorted({int(s) for s in args.batch_sizes.split(",") if s.strip()})
    dims = {}
    for item in args.dim:
        key, _, value = item.partition("=")
        if not value.isdigit():
            raise CliError("--dim takes name=size")
        dims[key] = int(value)
    settings = {
        "providers": ["CPUExecutionProvider"],
        "intra_op_threads": args.threads,
        "allow_spinning": False,
    }
    with tempfile.TemporaryDirectory(prefix="onnxship-bench-") as tmp:
        tmp_path, recorded = Path(tmp), None
        if args.registered:
            folder, version = registered_version(args.registered, args.tracking_uri, tmp_path / "version")
            onnx_path, meta = folder / "model.onnx", read_json(folder / "onnxship.json")
            settings = meta.get("inference_settings", settings) | {"allow_spinning": False}
            recorded = meta.get("latency_ms")
            label = f"{version['name']} v{version['version']}"
            if version["failed_gates"]:  # timed all the same; serving would refuse it
                label += f" (failed at packaging: {', '.join(version['failed_gates'])})"
        else:
            onnx_path, label = Path(args.onnx), args.onnx
            if not onnx_path.is_file():
                raise CliError("no such ONNX file")
        inputs = graph_inputs(onnx_path, dims)
        fixed = inputs[0]["fixed_batch"]
        sizes = [fixed] if fixed else sizes
        feeds = make_inputs(args, inputs, max(sizes))
        np.savez(tmp_path / "inputs.npz", **feeds)
        native = native_folder(args, tmp_path) if args.native else None
        common = {
            "data": str(tmp_path / "inputs.npz"),
            "runtime_settings": settings,
            "bench": {"warmup_iterations": 3},
        }
        jobs = {"onnx": common | {"runtime": "onnx", "path": str(onnx_path)}}
        if native is not None:
            native_job = {"runtime": NATIVE, "native_dir": str(native), "rename_native_input": True}
            jobs = {NATIVE: common | native_job} | jobs
        steps = len(sizes) + args.cold_start_runs
        with tqdm(total=steps, desc="onnxship-bench", file=sys.stderr, unit="step") as bar:
            validation = validate(
                onnx_path, settings, {k: v[: min(64, len(v))] for k, v in feeds.items()}, native, args
            )
            latency = measure(jobs, sizes, args, progress=lambda: bar.update(1))
            probes = [j | {"peak_batch": max(sizes)} for j in jobs.values()]
            starts = cold_starts(probes, args.cold_start_runs, progress=lambda: bar.update(1))
        result = {
            "model": label,
            "sha256": sha256_file(onnx_path),
            "settings": settings,
            "validation": validation,
            "latency": {rt: cells for rt, cells in latency.items()},
            "cold_start": starts,
        }
        if recorded:
            result["registered_figures"] = recorded
        return result


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        result = run(args)
    except (PipelineError, RuntimeError) as err:  # said plainly: no traceback for a bad input
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(render(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0 if result["validation"]["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
