"""The benchmark's final measurement: native and every variant timed in interleaved rounds.

Each runtime (at the settings the tuning screen found fastest for a batch size) is loaded once in
its own spawned process, a RuntimeWorker, and waits on a pipe. Per batch size, onnxship.stats
.interleaved asks each worker in turn for one round of calls (~`round_s` of work), the order
reversed every round, until every runtime's p99 interval is within ±target or the budget ends. A
worker that is not timing blocks on its pipe: ORT spinning is off and OpenMP is told to wait
passively, so idle workers take no core from the one being timed. Noise that comes and goes
(another job on the machine, thermal throttling) therefore hits every runtime alike, and the
ratios between them hold where absolute figures drift.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from onnxship.stats import interleaved, percentile_interval


def worker_main(conn: Any, job: dict) -> None:
    """In the spawned process: load the runtime, then time rounds of calls on command."""
    from onnxship.benchmarking import load_runtime

    try:
        call, feeds, _ = load_runtime(job)
    except Exception as err:  # the parent reports it; a traceback in a child helps nobody
        conn.send(("error", f"{type(err).__name__}: {err}"))
        return
    conn.send(("ready", None))
    rows, batches = len(next(iter(feeds.values()))), {}
    while True:
        command = conn.recv()
        if command[0] == "stop":
            return
        _, size, calls = command
        samples: list[float] = []
        try:
            if size not in batches:  # a batch size's first round: build it and warm up, untimed
                batches[size] = {k: v[np.arange(size) % rows] for k, v in feeds.items()}
                for _ in range(job["bench"]["warmup_iterations"]):
                    call(batches[size])
            batch = batches[size]
            for _ in range(calls):
                start = time.perf_counter_ns()
                call(batch)
                samples.append((time.perf_counter_ns() - start) / 1e6)
        except Exception as err:
            conn.send(("error", f"{type(err).__name__}: {err}"))
            return
        conn.send(("samples", samples))


class RuntimeWorker:
    """One runtime under one set of settings, loaded in its own process, timing on command."""

    def __init__(self, job: dict) -> None:
        spawn = multiprocessing.get_context("spawn")
        self.conn, child = spawn.Pipe()
        self.process = spawn.Process(target=worker_main, args=(child, job), daemon=True)
        self.process.start()
        kind, detail = self.conn.recv()
        if kind != "ready":
            self.close()
            raise RuntimeError(f"{job['runtime']} could not be loaded for timing: {detail}")

    def time(self, size: int, calls: int) -> list[float]:
        self.conn.send(("time", size, calls))
        kind, samples = self.conn.recv()
        if kind != "samples":
            raise RuntimeError(f"timing failed at batch {size}: {samples}")
        return samples

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(("stop",))
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


def settings_key(job: dict) -> str:
    return job["runtime"] + json.dumps(job["runtime_settings"], sort_keys=True)


def calls_per_round(screen_p50_ms: float, round_s: float) -> int:
    """Calls that make one round about `round_s` long, from the screen's p50 (1 to 200)."""
    if not screen_p50_ms or not math.isfinite(screen_p50_ms):
        return 1
    return int(min(200, max(1, round(round_s * 1e3 / screen_p50_ms))))


def cell(samples: list[float], size: int, why: str, rounds: int) -> dict:
    """One runtime at one batch size: percentiles with their intervals and how many samples."""
    ms = np.asarray(samples)
    p50, p99 = percentile_interval(ms, 50), percentile_interval(ms, 99)
    return {
        "iterations": len(ms),
        "rounds": rounds,
        "stopped": why,  # "converged": every p99 within ±target; "budget": the time ran out
        "p50_ms": p50.estimate,
        "p50_ci_ms": [p50.low, p50.high],
        "p95_ms": percentile_interval(ms, 95).estimate,
        "p99_ms": p99.estimate,
        "p99_ci_ms": [p99.low, p99.high],
        "p99_rel_half_width": p99.relative_half_width,
        "ci_confidence": p99.confidence,
        "mean_ms": float(ms.mean()),
        "throughput_rows_s": size / (float(ms.mean()) / 1e3),
    }


def final_jobs(jobs: dict[str, dict], screen: dict[str, dict], base: dict) -> dict[int, dict[str, dict]]:
    """{size: {runtime: its job at the settings the screen found fastest at that size}}."""
    sizes = sorted({int(size) for best in screen.values() for size in best["batches"]})
    return {
        size: {
            runtime: job | {"runtime_settings": base | screen[runtime]["batches"][str(size)]["settings"]}
            for runtime, job in jobs.items()
        }
        for size in sizes
    }


def measure_interleaved(
    jobs_by_size: dict[int, dict[str, dict]],
    screen: dict | None,
    rounds: dict,
    progress: Callable[[], object] | None = None,
) -> dict:
    """{runtime: {size: cell}} for `jobs_by_size` ({size: {runtime: job at its best settings}}),
    each size's runtimes timed in interleaved rounds. `screen` is the tuning screen's best cells
    per runtime (their p50 sizes the rounds); `rounds` is the config (budget_s, round_s, target,
    min_rounds). One worker per distinct (runtime, settings), kept for every size it wins.
    Without a screen, a pilot of 3 calls per runtime sizes the rounds. `progress` is called after
    each batch size."""
    workers: dict[str, RuntimeWorker] = {}
    out: dict[str, dict] = {}
    try:
        for size, jobs in jobs_by_size.items():
            runners = {}
            for runtime, job in jobs.items():
                key = settings_key(job)
                if key not in workers:
                    workers[key] = RuntimeWorker(job)
                if screen is None:  # a pilot: 3 calls, untimed for the figures
                    pilot = float(np.median(workers[key].time(size, 3)))
                else:
                    pilot = screen[runtime]["batches"][str(size)]["p50_ms"]
                calls = calls_per_round(pilot, rounds["round_s"])
                runners[runtime] = lambda w=workers[key], c=calls, s=size: w.time(s, c)
            measured = interleaved(
                runners,
                q=99,
                target=rounds["target"],
                budget_s=rounds["budget_s"],
                min_samples=rounds.get("min_samples", 20),
                min_rounds=rounds.get("min_rounds", 3),
            )
            for runtime, (series, _, why) in measured.items():
                out.setdefault(runtime, {})[str(size)] = cell(series.samples, size, why, series.rounds)
            if progress:
                progress()
    finally:
        for worker in workers.values():
            worker.close()
    return out


def measure_model(native: dict, variants: list[dict], base: dict, bench: dict) -> dict:
    """The benchmark of one model: {"tuning": every settings combination screened, "runtimes":
    each runtime's interleaved figures at its best settings per batch size, "cold_start"}."""
    from onnxship.coldstart import cold_starts
    from onnxship.tuning import best_per_batch, measure_tuned

    # 1. the screen: every settings combination, briefly, each in its own process
    measured = measure_tuned(native, variants, base, bench.get("tuning") or {})
    screen = {runtime: best_per_batch(m) for runtime, m in measured.items()}
    # 2. the figures: each runtime at its best settings, in interleaved rounds
    jobs = {native["runtime"]: native} | {v["runtime"]: v for v in variants}
    final = measure_interleaved(final_jobs(jobs, screen, base), screen, bench["interleaved"])
    runtimes = {
        runtime: best
        | {
            "batches": {
                b: final[runtime][b] | {"settings": c["settings"]} for b, c in best["batches"].items()
            }
        }
        for runtime, best in screen.items()
    }
    # 3. start-up and memory in fresh processes that import only their runtime
    peak = max(bench["batch_sizes"])
    probes = [j | {"runtime_settings": base, "peak_batch": peak} for j in jobs.values()]
    return {
        "tuning": measured,
        "runtimes": runtimes,
        "cold_start": cold_starts(probes, bench["cold_start_runs"]),
    }
