"""What the input check in front of a small ONNX Runtime call costs, measured side by side.

    python -m tools.bench_check [models/optimized/lightgbm/base.onnx] [--rounds 40] [--calls 500]

One process, one session (one intra-op thread, spinning off), one float32 row of the test split:
in interleaved rounds (onnxship.measure.intervals.interleaved: the order reversed each round) it
times `session.run` alone, the C++ session it wraps alone (what OnnxModel calls for one input on
the CPU), `session.run` after each finiteness check the runtime has used (a float64 sum; a float32
dot; a Python sum, onnxship/runtime.py's path for a few values), and the whole checked call the
benchmark makes (OnnxModel.run), on the float32 row and on the float64 row the benchmark feeds
(the test split as stored; the check converts it). Per variant: the p50 of every call with its
95 % interval; writes reports/runtime/check_cost.json.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from onnxship.io import write_json
from onnxship.measure.intervals import interleaved

REPORT = Path("reports/runtime/check_cost.json")


def variants(model, row: np.ndarray) -> dict:
    session, names, feed_name = model.session, model.output_names, model.input_name
    inner = session._sess  # the C++ session InferenceSession.run calls after checking the feed

    def run_alone() -> None:
        session.run(names, {feed_name: row})

    def inner_alone() -> None:
        inner.run(names, {feed_name: row}, None)

    def after_sum64() -> None:
        if np.isfinite(row.sum(dtype=np.float64)):
            session.run(names, {feed_name: row})

    def after_dot() -> None:
        flat = row.reshape(-1)
        if math.isfinite(float(np.dot(flat, flat))):
            session.run(names, {feed_name: row})

    def after_python_sum() -> None:
        if math.isfinite(sum(row.reshape(-1).tolist())):
            session.run(names, {feed_name: row})

    def checked_call() -> None:
        model.run(row)

    row64 = row.astype(np.float64)

    def checked_call_float64() -> None:
        model.run(row64)

    return {
        "run_alone": run_alone,
        "inner_alone": inner_alone,
        "after_sum64": after_sum64,
        "after_dot": after_dot,
        "after_python_sum": after_python_sum,
        "checked_call": checked_call,
        "checked_call_float64": checked_call_float64,
    }


def main(argv: list[str]) -> int:
    from onnxship.runtime import InferenceSettings, OnnxModel

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default="models/optimized/lightgbm/base.onnx")
    parser.add_argument("--data", default="data/prepared/test.parquet")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args(argv)
    if not Path(args.model).exists():
        print(f"{args.model} is missing: run `make run` first", file=sys.stderr)
        return 2
    model = OnnxModel(args.model, InferenceSettings(intra_op_threads=1, allow_spinning=False))
    import pandas as pd

    frame = pd.read_parquet(args.data)
    row = np.ascontiguousarray(frame.iloc[:1, : model.n_features].to_numpy(np.float32))
    calls = variants(model, row)
    for call in calls.values():  # warm each path
        for _ in range(50):
            call()

    def timed(call) -> Callable[[], list[float]]:
        def one_turn() -> list[float]:  # µs per call, `calls` calls
            samples = []
            for _ in range(args.calls):
                start = time.perf_counter_ns()
                call()
                samples.append((time.perf_counter_ns() - start) / 1e3)
            return samples

        return one_turn

    # exactly `rounds` rounds, the order reversed each round (no interval target, no time budget)
    measured = interleaved(
        {name: timed(call) for name, call in calls.items()},
        q=50,
        target=0.0,
        budget_s=0.0,
        min_rounds=args.rounds,
    )
    result = {
        name: {"p50_us": round(p50.estimate, 2), "p50_ci_us": [round(p50.low, 2), round(p50.high, 2)]}
        for name, (_, p50, _) in measured.items()
    }
    base = result["run_alone"]["p50_us"]
    for entry in result.values():
        entry["vs_run_alone"] = round(entry["p50_us"] / base, 3)
    report = {
        "model": args.model,
        "rows": 1,
        "settings": {
            "intra_op_threads": 1,
            "allow_spinning": False,
            "rounds": args.rounds,
            "calls_per_round": args.calls,
        },
        "machine": platform.processor() or platform.machine(),
        "interleaved": True,
        "us_per_call": result,
    }
    write_json(REPORT, report)
    for name, entry in result.items():
        print(
            f"{name:20s} p50 {entry['p50_us']:7.2f} us  95% CI {entry['p50_ci_us']}  x{entry['vs_run_alone']}"
        )
    print(f"-> {REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
