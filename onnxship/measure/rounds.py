"""The benchmark's final measurement: native and every variant timed in interleaved rounds.

Each runtime (at the settings the tuning screen found fastest for a batch size) is loaded once in
its own process, a RuntimeWorker, and waits on a pipe: ONNX Runtime in a spawned one, native in a
fork of the stage where its libraries are loaded already under the same OpenMP wait policy
(start_method). Per batch size, onnxship.measure.intervals
.interleaved asks each worker in turn for one round of calls (~`round_s` of work), the order
reversed every round, until every runtime's `stop_on` percentile has its interval within ±target
(the p50 in the default benchmark: speedups and their intervals are built from p50s; the p99 in
`benchmark=deep`) or the budget ends. A
worker that is not timing blocks on its pipe: ORT spinning is off and OpenMP is told to wait
passively, so idle workers take no core from the one being timed. Noise that comes and goes
(another job on the machine, thermal throttling) therefore hits every runtime alike, and the
ratios between them hold where absolute figures drift.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from onnxship.contract import FLOOR, NATIVE
from onnxship.measure.intervals import Series, interleaved, percentile_interval

log = logging.getLogger("onnxship.stage")


def worker_main(conn: Any, job: dict, parents_end: Any = None) -> None:
    """In the worker process: load the runtime, then time rounds of calls on command (a fork
    closes its copy of the parent's end of the pipe first)."""
    from onnxship.measure.timing import load_and_call_once, ready_to_load

    if parents_end is not None:
        parents_end.close()
    try:
        ready_to_load(job)  # native's libraries, imported off the load clock
        call, feeds, loaded = load_and_call_once(job)
    except Exception as err:  # the parent reports it; a traceback in a child helps nobody
        conn.send(("error", f"{type(err).__name__}: {err}"))
        return
    conn.send(("ready", loaded))
    set_threads = native_thread_setter(job)
    rows, batches, warm = len(next(iter(feeds.values()))), {}, set()
    threads = job["runtime_settings"].get("intra_op_threads")
    while True:
        command = conn.recv()
        if command[0] == "stop":
            # every sample is sent: skip the interpreter's teardown of what was loaded (about 1.5 s
            # with PyTorch, which the benchmark would wait out closing this worker)
            conn.close()
            os._exit(0)
        _, size, calls, *wanted = command
        samples: list[float] = []
        try:
            if wanted and wanted[0] is not None and wanted[0] != threads and set_threads:
                threads = wanted[0]
                set_threads(threads)
                warm.clear()  # a resized thread pool: every size warms up again
            if size not in batches:  # in the runtime's own form (TimedCall.prepare), off the clock
                batches[size] = call.prepare({k: v[np.arange(size) % rows] for k, v in feeds.items()})
            if (size, threads) not in warm:  # a batch size's first round (per thread count): warm up, untimed
                warm.add((size, threads))
                for _ in range(job["bench"]["warmup_iterations"]):
                    call.run(batches[size])
            batch, run = batches[size], call.run
            for _ in range(calls):
                start = time.perf_counter_ns()
                run(batch)
                samples.append((time.perf_counter_ns() - start) / 1e6)
        except Exception as err:
            conn.send(("error", f"{type(err).__name__}: {err}"))
            return
        conn.send(("samples", samples))


def native_thread_setter(job: dict) -> Callable[[int], None] | None:
    """For native: its family's thread setting, which takes effect between calls, so one process
    times every thread count of the screen (a Chronos model loads in seconds). None for ONNX:
    a session's threads are fixed when it is built."""
    if job["runtime"] != NATIVE:
        return None
    from pathlib import Path

    from onnxship import families
    from onnxship.io import read_json

    meta = read_json(Path(job["native_dir"]) / "meta.json")
    return families.get(meta["family"]).set_threads


def threads_of(job: dict) -> int | None:
    """The thread count a native worker is asked to switch to for this job (None: ONNX)."""
    return job["runtime_settings"].get("intra_op_threads") if job["runtime"] == NATIVE else None


FORK_NATIVE = "fork_native"  # a native job's key: its caller has run no OpenMP work (see start_method)


def start_method(job: dict) -> str:
    """How a job's worker process starts. Native: a fork of this process where the caller says
    that is the same as a fresh one for its calls (`FORK_NATIVE`: the benchmark stage, which has
    run no native work; libgomp hangs in a fork of a process that has), on Linux, with OpenMP's
    wait policy (read once, when it loads) already the job's: the pipeline's stages run with it.
    A stage forked from a warm server then does not import PyTorch and Chronos again (~6 s a
    model). Its resident memory includes this process's pages: the benchmark takes native's from
    the cold start. ONNX Runtime, and anything else: spawned, a fresh process."""
    from onnxship.measure.coldstart import wait_policy

    forkable = job["runtime"] == NATIVE and job.get(FORK_NATIVE) and sys.platform.startswith("linux")
    return "fork" if forkable and os.environ.get("OMP_WAIT_POLICY") == wait_policy(job) else "spawn"


class RuntimeWorker:
    """One runtime under one set of settings, loaded in its own process, timing on command."""

    def __init__(self, job: dict) -> None:
        self.start_method = start_method(job)
        context = multiprocessing.get_context(self.start_method)
        self.conn, child = context.Pipe()
        # a fork holds a copy of this end too: it closes it, so a stage that dies (SIGKILL, no
        # clean-up) leaves it an EOF, not a worker waiting for ever
        ours = self.conn if self.start_method == "fork" else None
        self.process = context.Process(target=worker_main, args=(child, job, ours), daemon=True)
        self.process.start()
        child.close()  # the child's end lives in the child: a worker that dies is then an EOFError here
        kind, detail = self.conn.recv()
        self.runtime = job["runtime"]
        self.loaded = detail if kind == "ready" else {}  # load time, file size, first call, RSS
        if kind != "ready":
            self.close()
            raise RuntimeError(f"{job['runtime']} could not be loaded for timing: {detail}")

    def time(self, size: int, calls: int, threads: int | None = None) -> list[float]:
        """`calls` timed calls at batch `size` (native: after switching to `threads`)."""
        self.conn.send(("time", size, calls, threads))
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


class PhaseClock:
    """Seconds per benchmark phase, and progress lines with an ETA for the long ones."""

    def __init__(self, model: str) -> None:
        self.model, self.laps = model, {}
        self.started = self.last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.laps[phase] = round(now - self.last, 2)
        self.last = now
        log.info("benchmark %s: %s done in %.1f s", self.model, phase, self.laps[phase])

    def counter(self, phase: str, steps: list[str]) -> Callable[[], None]:
        """A callback for each finished step of `phase` (named by `steps`, in order): logs which
        step finished, k/n, and the time left at this pace."""
        done = [0]

        def step() -> None:
            done[0] += 1
            spent = time.perf_counter() - self.last
            eta = spent / done[0] * (len(steps) - done[0])
            label = steps[done[0] - 1] if done[0] <= len(steps) else ""
            log.info(
                "benchmark %s: %s %s done (%d/%d), about %.0f s left",
                self.model,
                phase,
                label,
                done[0],
                len(steps),
                eta,
            )

        return step


def inherited_screens(screen: dict[str, dict], variants: list[dict], mode: str) -> dict[str, dict]:
    """With `screen: representative`, only native and the first variant went over the settings
    grid: every other variant takes the first one's winning settings per batch size (variants of
    one graph share its operators, so the settings that win for one win for its rewrites). Their
    rounds are sized by a pilot and their load figures come from their timing worker."""
    if mode != "representative" or not variants:
        return {}
    lead = variants[0]["runtime"]
    return {
        v["runtime"]: {
            "sha256": v.get("sha256"),
            "batches": {
                size: {"settings": cell["settings"], "screened_as": lead}
                for size, cell in screen[lead]["batches"].items()
            },
        }
        for v in variants[1:]
    }


def settings_for_all(best: dict, sizes: list[int]) -> dict:
    """A screen that timed only some batch sizes (`screen_batch_sizes`: the release-size models,
    whose large batches take seconds a call) gives each other size the winner of the largest
    screened size below it (or the smallest screened); those sizes are sized by a pilot."""
    screened = sorted(int(s) for s in best["batches"])
    batches = dict(best["batches"])
    for size in sizes:
        if str(size) not in batches:
            below = [s for s in screened if s <= size] or screened[:1]
            batches[str(size)] = {
                "settings": best["batches"][str(below[-1])]["settings"],
                "screened_at": below[-1],
            }
    return best | {"batches": {str(s): batches[str(s)] for s in sizes}}


def settings_key(job: dict) -> str:
    """Which worker runs `job`: one per runtime and session settings; native's thread count is
    switched inside its one worker (native_thread_setter), so it is not part of native's key."""
    settings = dict(job["runtime_settings"])
    if job["runtime"] == NATIVE:
        settings.pop("intra_op_threads", None)
    return job["runtime"] + json.dumps(settings, sort_keys=True)


def calls_per_round(screen_p50_ms: float, round_s: float) -> int:
    """Calls that make one round about `round_s` long, from the screen's p50 (1 to 200)."""
    if not screen_p50_ms or not math.isfinite(screen_p50_ms):
        return 1
    return int(min(200, max(1, round(round_s * 1e3 / screen_p50_ms))))


def cell(series: Series, size: int, why: str, stop_on: float = 99) -> dict:
    """One runtime at one batch size: percentiles with their intervals and how many samples."""
    ms = np.asarray(series.samples)
    p50, p99 = percentile_interval(ms, 50), percentile_interval(ms, 99)
    return {
        "iterations": len(ms),
        "rounds": series.rounds,
        "round_p50s_ms": series.round_p50s,  # paired with native's, round by round: the speedup's interval
        "stopped": why,  # "converged": every stop_on percentile within ±target; "budget": time ran out
        "stop_on": stop_on,
        "stop_rel_half_width": (
            p50 if stop_on == 50 else percentile_interval(ms, stop_on)
        ).relative_half_width,
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
    loads: dict | None = None,
    pool: dict[str, RuntimeWorker] | None = None,
) -> dict:
    """{runtime: {size: cell}} for `jobs_by_size` ({size: {runtime: job at its best settings}}),
    each size's runtimes timed in interleaved rounds. `screen` is the tuning screen's best cells
    per runtime (their p50 sizes the rounds); `rounds` is the config (budget_s, round_s, target,
    min_rounds). One worker per distinct (runtime, settings), kept for every size it wins.
    A runtime the screen did not time gets a pilot of 3 calls to size its rounds. `progress` is
    called after each batch size; `loads`, if given, gets each runtime's load figures. Workers
    already in `pool` (the screen's) are reused, and closed by the caller."""
    pool = {} if pool is None else pool
    workers: dict[str, RuntimeWorker] = {}  # the ones opened here
    out: dict[str, dict] = {}
    try:
        for size, jobs in jobs_by_size.items():
            runners = {}
            for runtime, job in jobs.items():
                key = settings_key(job)
                if key not in workers and key not in pool:
                    workers[key] = RuntimeWorker(job)
                worker = pool.get(key) or workers[key]
                screened = (screen or {}).get(runtime, {}).get("batches", {}).get(str(size), {})
                # not screened: a pilot of 3 calls sizes the rounds, untimed for the figures
                threads = threads_of(job)
                pilot = screened.get("p50_ms") or float(np.median(worker.time(size, 3, threads)))
                if loads is not None:
                    loads.setdefault(runtime, worker.loaded)
                calls = calls_per_round(pilot, rounds["round_s"])
                runners[runtime] = lambda w=worker, c=calls, s=size, t=threads: w.time(s, c, t)
            measured = interleaved(
                runners,
                q=rounds.get("stop_on", 99),
                target=rounds["target"],
                budget_s=rounds["budget_s"],
                min_samples=rounds.get("min_samples", 20),
                min_rounds=rounds.get("min_rounds", 3),
                pair_with=NATIVE if NATIVE in runners else None,
            )
            for runtime, (series, _, why) in measured.items():
                out.setdefault(runtime, {})[str(size)] = cell(series, size, why, rounds.get("stop_on", 99))
            if progress:
                progress()
    finally:
        for worker in workers.values():
            worker.close()
    return out


def screen_in_workers(
    jobs: list[dict], sizes: list[int], bench: dict, pool: dict, progress: Callable[[], object] | None = None
) -> list[dict]:
    """The tuning screen: each job (one runtime under one settings combination) loaded once in a
    RuntimeWorker, kept in `pool` for the rounds, and timed briefly per batch size (at least
    `min_iterations` calls, about `time_budget_s` of them, after the worker's warm-up). Figures in
    the shape onnxship.measure.screen.best_per_batch reads."""
    from onnxship.measure.timing import summarize_samples

    measured = []
    for i, job in enumerate(jobs):
        worker = pool.get(settings_key(job)) or pool.setdefault(settings_key(job), RuntimeWorker(job))
        batches, threads = {}, threads_of(job)
        for size in sizes:
            pilot = float(np.median(worker.time(size, 1, threads)))  # the first call at a size warms up first
            calls = int(
                min(
                    bench["max_iterations"],
                    max(bench["min_iterations"], bench["time_budget_s"] * 1e3 / pilot),
                )
            )
            batches[str(size)] = summarize_samples(worker.time(size, calls, threads), size)
        measured.append(worker.loaded | {"batches": batches, "sha256": job.get("sha256")})
        if progress:
            progress()
        if i + 1 == len(jobs) or jobs[i + 1]["runtime"] != job["runtime"]:
            close_losers(jobs[: i + 1], measured, job["runtime"], pool)
    return measured


def close_losers(jobs: list[dict], measured: list[dict], runtime: str, pool: dict) -> None:
    """Once a runtime's grid is screened, close its workers that are fastest at no batch size:
    only the winners go on to the rounds (a release-size graph holds ~0.5 GB a process)."""
    mine = [(j, m) for j, m in zip(jobs, measured, strict=True) if j["runtime"] == runtime]
    winners = {
        settings_key(min(mine, key=lambda jm: jm[1]["batches"][size]["p50_ms"])[0])
        for size in mine[0][1]["batches"]
    }
    for job, _ in mine:
        if settings_key(job) not in winners and settings_key(job) in pool:
            pool.pop(settings_key(job)).close()


def measure_model(
    native: dict,
    variants: list[dict],
    base: dict,
    bench: dict,
    name: str = "",
    cold_start_of: Callable[[dict], list[str]] | None = None,
    floor: dict | None = None,
) -> dict:
    """The benchmark of one model: {"tuning": every settings combination screened, "runtimes":
    each runtime's interleaved figures at its best settings per batch size, "cold_start",
    "phases_s": seconds each phase took}. Progress goes to the log: phase, batch size, ETA.
    `cold_start_of(runtimes)` names the runtimes whose start-up is measured (default: all). `floor`
    (onnxship.measure.timing.floor_job), if given, joins every size's rounds at its own settings
    and comes back as "ort_floor": {"batches": ...}; it is not screened and not a runtime."""
    from onnxship.measure.coldstart import cold_starts
    from onnxship.measure.screen import best_per_batch, tuned_figures, tuned_knobs, tuning_jobs

    clock = PhaseClock(name or native.get("model", "model"))
    pool: dict[str, RuntimeWorker] = {}  # one process per runtime and settings, screen and rounds
    try:
        # 1. the screen: settings combinations, briefly, each runtime in its own process
        mode = bench.get("screen", "every")
        screen_jobs = tuning_jobs(native, variants, base, bench.get("tuning") or {}, mode)
        labels = [
            f"{j['runtime']} {tuned_knobs(j['runtime_settings'], j['runtime'] == native['runtime'])}"
            for j in screen_jobs
        ]
        sizes = bench.get("screen_batch_sizes") or bench["batch_sizes"]
        figures = screen_in_workers(screen_jobs, sizes, bench, pool, clock.counter("screen", labels))
        measured = tuned_figures(screen_jobs, figures, native["runtime"])
        clock.lap("screen")
        forked = {w.runtime for w in pool.values() if w.start_method == "fork"}
        screen = {rt: settings_for_all(best_per_batch(m), bench["batch_sizes"]) for rt, m in measured.items()}
        screen |= inherited_screens(screen, variants, mode)
        # 2. the figures: each runtime at its best settings, in interleaved rounds
        jobs = {native["runtime"]: native} | {v["runtime"]: v for v in variants}
        by_size = final_jobs(jobs, screen, base)
        if floor is not None:
            by_size = {size: size_jobs | {FLOOR: floor} for size, size_jobs in by_size.items()}
        winners = {settings_key(job) for size_jobs in by_size.values() for job in size_jobs.values()}
        for key in [k for k in pool if k not in winners]:  # free the losers' memory
            pool.pop(key).close()
        loads: dict[str, dict] = {}
        rounds = clock.counter("rounds", [f"batch {size}" for size in by_size])
        final = measure_interleaved(by_size, screen, bench["interleaved"], rounds, loads, pool)
        clock.lap("rounds")
    finally:
        for worker in pool.values():
            worker.close()
    runtimes = {
        runtime: (best if "load_seconds" in best else best | loads[runtime])
        | {
            "batches": {
                b: final[runtime][b] | {k: c[k] for k in ("settings", "screened_as", "screened_at") if k in c}
                for b, c in best["batches"].items()
            }
        }
        for runtime, best in screen.items()
    }
    # 3. start-up and memory in fresh processes that import only their runtime
    peak = max(bench["batch_sizes"])
    started = cold_start_of(runtimes) if cold_start_of else list(jobs)
    probes = [jobs[r] | {"runtime_settings": base, "peak_batch": peak} for r in jobs if r in started]
    runs = bench["cold_start_runs"]
    cold = cold_starts(probes, runs, clock.counter("cold start", [f"round {i + 1}" for i in range(runs)]))
    clock.lap("cold_start")
    for runtime in forked & set(cold):  # a fork's resident memory includes the stage's: a fresh process's
        fresh = {"rss_after_load_mb": cold[runtime]["rss_rest_mb"]["median"], "rss_from": "cold_start"}
        runtimes[runtime] |= fresh
        measured[runtime] = [entry | fresh for entry in measured[runtime]]
    floored = {FLOOR: loads[FLOOR] | {"batches": final[FLOOR]}} if floor is not None else {}
    return {"tuning": measured, "runtimes": runtimes, "cold_start": cold, "phases_s": clock.laps} | floored
