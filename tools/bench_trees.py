"""The zoo's tree models against their own libraries and against compiled trees, side by side:

    make bench-trees        (after make run; installs the peers extra: lleaves, treelite, tl2cgen)

For XGBoost, LightGBM and CatBoost (models/native/<model>, trained by make run):
  native            the library's own predict, one thread (the family's call, as the benchmark
                    stage times it)
  onnx_registered   ONNX Runtime on the variant the package stage registered
  oblivious_graph   (CatBoost) ORT on the oblivious trees in standard operators
                    (onnxship/trees/oblivious.py, the `oblivious` variant)
  lleaves           (LightGBM) the model compiled by LLVM (lleaves), one thread
  tl2cgen           (XGBoost, LightGBM) the model compiled to C by TL2cgen (treelite) and gcc,
                    one thread; its time includes wrapping the rows in its DMatrix, as a call does
A peer that is not installed or cannot take the model is recorded with the reason, not fatal.

Writes reports/peers/trees.json (with the commit, date and CPU it ran on): per model, agreement
with native on the test split (rows equal in float32, largest |difference|) for every engine, and
per batch size the p50 of each with its 95 % interval from interleaved rounds (order reversed each
round), ORT spinning off; then the ratio native / engine (> 1: faster than native), and where no
ONNX graph reaches native, by how
much (`onnx_behind_native`).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("xgboost", "lightgbm", "catboost")
BATCH_SIZES = (1, 10, 100, 1000, 10000)
CALL_BUDGET_S = 0.05  # calls per round: about this long for the slowest engine
ROUND_BUDGET_S = 6.0  # per batch size, all engines together
ONNX_ENGINES = ("onnx_registered", "oblivious_graph")


def session(model) -> Callable:
    """ORT on the graph at OnnxModel's defaults: one thread, spinning off."""
    from onnxship.runtime import OnnxModel

    graph = OnnxModel(model.SerializeToString())
    return lambda X: graph.run_feed({graph.input_name: X})[0].reshape(-1)


def agreement(native: np.ndarray, ours: np.ndarray) -> dict:
    ours = np.asarray(ours).reshape(-1)
    return {
        "rows": len(native),
        "rows_equal_float32": int((ours.astype(np.float32) == native.astype(np.float32)).sum()),
        "max_abs_diff": float(np.abs(ours.astype(np.float64) - native).max()),
    }


def timed(engines: dict[str, Callable], X: np.ndarray) -> dict:
    from onnxship.measure.intervals import interleaved

    slowest = 0.0
    for call in engines.values():  # warm-up, and how many calls fill a round
        call(X)
        started = time.perf_counter()
        call(X)
        slowest = max(slowest, time.perf_counter() - started)
    calls = max(1, int(CALL_BUDGET_S / max(slowest, 1e-6)))

    def round_of(call: Callable) -> Callable[[], list[float]]:
        def samples() -> list[float]:
            out = []
            for _ in range(calls):
                started = time.perf_counter()
                call(X)
                out.append(time.perf_counter() - started)
            return out

        return samples

    found = interleaved({n: round_of(c) for n, c in engines.items()}, q=50, target=0.02,
                        budget_s=ROUND_BUDGET_S, min_samples=30, min_rounds=4)  # fmt: skip
    result: dict = {}
    for name, (series, interval, why) in found.items():
        figures = {
            k: v * 1e3 if k in ("p50", "ci_low", "ci_high") else v for k, v in interval.as_dict().items()
        }
        result[name] = {**figures, "unit": "ms", "rounds": series.rounds, "stopped": why}
    for name in engines:
        if name != "native":
            result[name]["speedup_vs_native"] = result["native"]["p50"] / result[name]["p50"]
    graphs = [n for n in engines if n in ONNX_ENGINES]
    best = max(graphs, key=lambda n: result[n]["speedup_vs_native"])
    result["best_onnx"] = {"engine": best, "speedup_vs_native": result[best]["speedup_vs_native"]}
    if result[best]["speedup_vs_native"] < 1.0:
        result["onnx_behind_native"] = result[best]["p50"] / result["native"]["p50"]
    return result


def peer_engines(name: str, est, workdir: Path) -> tuple[dict[str, Callable], dict[str, str]]:
    """Compiled-tree peers that take this model: (engines, {peer: why not})."""
    engines: dict[str, Callable] = {}
    missing: dict[str, str] = {}
    if name == "catboost":
        return engines, {"lleaves": "LightGBM only", "tl2cgen": "treelite reads no CatBoost model"}
    path = workdir / ("model.json" if name == "xgboost" else "model.txt")
    (est.get_booster() if name == "xgboost" else est).save_model(str(path))
    if name == "lightgbm":
        try:
            import lleaves

            compiled = lleaves.Model(model_file=str(path))
            compiled.compile(cache=str(workdir / "lleaves.o"))
            engines["lleaves"] = lambda X: compiled.predict(X, n_jobs=1)
        except ImportError as err:
            missing["lleaves"] = f"not installed ({err.name}): make bench-trees installs the peers extra"
        except Exception as err:  # a compiler that fails is recorded, not fatal
            missing["lleaves"] = f"{type(err).__name__}: {err}"
    else:
        missing["lleaves"] = "LightGBM only"
    try:
        import tl2cgen
        import treelite

        load = (
            treelite.frontend.load_xgboost_model
            if name == "xgboost"
            else treelite.frontend.load_lightgbm_model
        )
        library = workdir / "tl2cgen.so"
        tl2cgen.export_lib(load(str(path)), toolchain="gcc", libpath=str(library), nthread=2)
        predictor = tl2cgen.Predictor(str(library), nthread=1)
        engines["tl2cgen"] = lambda X: predictor.predict(tl2cgen.DMatrix(X)).reshape(-1)
    except ImportError as err:
        missing["tl2cgen"] = f"not installed ({err.name}): make bench-trees installs the peers extra"
    except Exception as err:  # e.g. no C compiler
        missing["tl2cgen"] = f"{type(err).__name__}: {err}"
    return engines, missing


def bench_model(name: str, X: np.ndarray, workdir: Path) -> dict:
    import onnx

    from onnxship import families
    from onnxship.io import read_json
    from onnxship.trees.oblivious import rewrite

    family, est, meta = families.load_native(ROOT / "models" / "native" / name)
    family.set_threads(1)
    native = family.native_call(est, meta)  # what the benchmark stage times natively
    variant = read_json(ROOT / "reports" / "package" / f"{name}.json")["variant"]
    graph = onnx.load(str(ROOT / "models" / "optimized" / name / f"{variant}.onnx"))
    engines = {"native": native.run, "onnx_registered": session(graph)}
    if name == "catboost":
        standard = copy.deepcopy(onnx.load(str(ROOT / "models" / "onnx" / name / "model.onnx")))
        if rewrite(standard) == 1:
            engines["oblivious_graph"] = session(standard)
    peers, missing = peer_engines(name, est, workdir)
    engines |= peers
    answers = np.asarray(engines["native"](X), dtype=np.float64).reshape(-1)
    report: dict = {
        "registered_variant": variant,
        "peers_missing": missing,
        "agreement_on_test_split": {n: agreement(answers, engines[n](X)) for n in engines if n != "native"},
        "batches": {},
    }
    for batch in BATCH_SIZES:
        rows = np.ascontiguousarray(np.resize(X, (batch, X.shape[1])))
        figures = report["batches"][str(batch)] = timed(engines, rows)
        print(f"{name} batch {batch}: " + ", ".join(f"{n} {figures[n]['p50']:.3f} ms" for n in engines))
    return report


def main() -> int:
    import pandas as pd

    from onnxship.contract import NATIVE_META
    from onnxship.io import read_json, write_json

    missing = [m for m in MODELS if not (ROOT / "reports" / "package" / f"{m}.json").exists()]
    if missing:
        print(f"no registered {', '.join(missing)}: run `make run` first", file=sys.stderr)
        return 2
    test = pd.read_parquet(ROOT / "data" / "prepared" / "test.parquet")
    from tools.timings import commit, cpu

    # figures belong to a machine and a commit: both are recorded beside them
    report: dict = {
        "threads": 1,
        "batch_sizes": list(BATCH_SIZES),
        "machine": {"cpu": cpu(), "cpus": os.cpu_count()},
    }
    report |= {"commit": commit(), "date": time.strftime("%Y-%m-%d"), "models": {}}
    for name in MODELS:
        features = read_json(ROOT / "models" / "native" / name / NATIVE_META)["features"]
        X = test[features].to_numpy(np.float32)
        with tempfile.TemporaryDirectory(prefix=f"bench-trees-{name}-") as workdir:
            report["models"][name] = bench_model(name, X, Path(workdir))
    write_json(ROOT / "reports" / "peers" / "trees.json", report)
    print(json.dumps({m: r["agreement_on_test_split"] for m, r in report["models"].items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
