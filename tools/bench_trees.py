"""CatBoost's oblivious trees three ways, side by side on the zoo's own model: CatBoost itself, ONNX
Runtime on its exporter's TreeEnsembleRegressor, and ONNX Runtime on the graph of standard
operators (onnxship/trees/oblivious.py), which is not yet a registered variant (issue 23).

    make bench-trees        (after make run: reads models/native/catboost and models/onnx/catboost)

Writes reports/peers/trees.json: agreement with CatBoost on the test split (rows equal in float32,
largest |difference|) for both graphs, and per batch size the p50 of each engine with its 95 %
interval, from interleaved rounds (order reversed each round), one thread each, ORT spinning off.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BATCH_SIZES = (1, 10, 100, 1000, 10000)
CALL_BUDGET_S = 0.05  # calls per round: about this long for the slowest engine
ROUND_BUDGET_S = 6.0  # per batch size, all engines together


def session(model) -> Callable:
    """ORT on the graph at OnnxModel's defaults: one thread, spinning off."""
    from onnxship.runtime import OnnxModel

    graph = OnnxModel(model.SerializeToString())
    return lambda X: graph.run_feed({graph.input_name: X})[0].reshape(-1)


def agreement(native: np.ndarray, ours: np.ndarray) -> dict:
    return {
        "rows": len(native),
        "rows_equal_float32": int((ours == native.astype(np.float32)).sum()),
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
    result = {}
    for name, (series, interval, why) in found.items():
        figures = {
            k: v * 1e3 if k in ("p50", "ci_low", "ci_high") else v for k, v in interval.as_dict().items()
        }
        result[name] = {**figures, "unit": "ms", "rounds": series.rounds, "stopped": why}
    for name in engines:
        if name != "native":
            result[f"{name}_speedup_vs_native"] = result["native"]["p50"] / result[name]["p50"]
    return result


def main() -> int:
    import onnx

    from onnxship import families
    from onnxship.io import write_json
    from onnxship.trees.oblivious import rewrite

    model = "catboost"
    native_dir, onnx_file = (
        ROOT / "models" / "native" / model,
        ROOT / "models" / "onnx" / model / "model.onnx",
    )
    if not onnx_file.exists():
        print(f"no {onnx_file.relative_to(ROOT)}: run `make run` first", file=sys.stderr)
        return 2
    import pandas as pd

    _, est, meta = families.load_native(native_dir)

    test = pd.read_parquet(ROOT / "data" / "prepared" / "test.parquet")
    X = test[meta["features"]].to_numpy(np.float32)
    exported = onnx.load(str(onnx_file))
    standard = copy.deepcopy(exported)
    if rewrite(standard) != 1:
        print("the exported graph holds no oblivious ensemble", file=sys.stderr)
        return 1
    engines = {
        "native": lambda rows: est.predict(rows, thread_count=1),
        "tree_ensemble": session(exported),
        "oblivious_graph": session(standard),
    }
    native = np.asarray(engines["native"](X), dtype=np.float64)
    report = {
        "model": model,
        "threads": 1,
        "agreement_on_test_split": {n: agreement(native, engines[n](X)) for n in engines if n != "native"},
        "batches": {},
    }
    for batch in BATCH_SIZES:
        rows = np.ascontiguousarray(np.resize(X, (batch, X.shape[1])))
        report["batches"][str(batch)] = timed(engines, rows)
        figures = report["batches"][str(batch)]
        print(f"batch {batch}: " + ", ".join(f"{n} {figures[n]['p50']:.3f} ms" for n in engines))
    write_json(ROOT / "reports" / "peers" / "trees.json", report)
    print(json.dumps(report["agreement_on_test_split"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
