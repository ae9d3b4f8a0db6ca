"""Latency measurement: one runtime per fresh process (load time, first call, RSS belong to it
alone), each batch size timed call by call until its budget is spent.

measure_runtime runs in a spawned child process: keep its imports inside it, so the child loads
only what that runtime needs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from onnxship.contract import FLOOR, NATIVE
from onnxship.io import size_bytes
from onnxship.measure.calls import TimedCall
from onnxship.measure.gpu_memory import GPU_PROVIDERS, process_vram_mb


def bench_settings(group: dict, entry: dict) -> dict:
    """The benchmark settings for one zoo entry: the group's, then the entry's own (forecasters:
    batch sizes 1, 8, 32 windows), then the group's `heavy` block where the entry says its calls
    take seconds."""

    def over(base: dict, top: dict) -> dict:  # `interleaved` merges key by key, the rest replaces
        return base | top | {"interleaved": base.get("interleaved", {}) | top.get("interleaved", {})}

    bench = over({k: v for k, v in group.items() if k != "heavy"}, entry)
    if bench.pop("heavy", False):
        bench = over(bench, group.get("heavy", {}))
    if bench.get("cold_start", "all") not in ("all", "served"):
        raise ValueError(f"benchmark.cold_start must be 'all' or 'served', not {bench['cold_start']!r}")
    return bench


def variants_to_time(opt: dict, bench: dict, validation: dict) -> tuple[list[str], dict[str, str]]:
    """The variants to time, and why each other one is not: a failed pass, or (with
    `only_proven`) a failed validation. Package registers only proven variants, so timing the
    others would only describe files nobody can be served."""
    skipped = {v: "optimization failed" for v, e in opt["variants"].items() if e["status"] != "ok"}
    timed = [v for v, e in opt["variants"].items() if e["status"] == "ok"]
    if bench.get("only_proven"):
        passed = validation.get("passed", [])
        skipped |= {v: "failed validation" for v in timed if v not in passed}
        timed = [v for v in timed if v in passed]
    return timed, skipped


def summarize_samples(samples_ms: list[float], rows: int) -> dict:
    """A screen cell: percentiles of call times (ms) and rows per second."""
    ms = np.asarray(samples_ms)
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        "iterations": len(ms),
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "mean_ms": ms.mean(),
        "throughput_rows_s": rows / (ms.mean() / 1e3),
    }


def time_calls(call: TimedCall, feed: dict[str, np.ndarray], bench: dict) -> dict:
    batch = call.prepare(feed)
    for _ in range(bench["warmup_iterations"]):
        call.run(batch)
    samples: list[int] = []
    deadline = time.perf_counter() + bench["time_budget_s"]
    while len(samples) < bench["max_iterations"] and (
        len(samples) < bench["min_iterations"] or time.perf_counter() < deadline
    ):
        start = time.perf_counter_ns()
        call.run(batch)
        samples.append(time.perf_counter_ns() - start)
    return summarize_samples(list(np.asarray(samples) / 1e6), len(next(iter(feed.values()))))


def ready_to_load(job: dict) -> None:
    """Before a runtime's load clock starts: native's OpenMP wait policy (read once, when the
    library loads, so before any is imported in a fresh process) and the libraries its family's
    loader needs (families.Family.loader_imports). Load figures are then the model's load alone,
    as ONNX Runtime's are, whether this process is fresh or a fork that has them already."""
    if job["runtime"] != NATIVE:
        return
    import importlib

    from onnxship.measure.coldstart import native_imports, wait_policy

    policy = wait_policy(job)
    if policy:
        os.environ["OMP_WAIT_POLICY"] = policy
    else:  # spinning: the library's default, whatever the stage runs with
        os.environ.pop("OMP_WAIT_POLICY", None)
    for module in native_imports(job):
        importlib.import_module(module)


def load_runtime(job: dict) -> tuple[TimedCall, dict[str, np.ndarray], int]:
    """In a fresh process: (call, the benchmark's inputs by name, the model file's bytes) for one
    runtime: the native library, or an ONNX Runtime session built as serving builds it."""
    with np.load(job["data"]) as saved:  # the inputs by name: one "input", or a forecaster's feed
        feeds = {k: saved[k] for k in saved.files}
    if job["runtime"] == NATIVE:
        ready_to_load(job)  # a no-op where the caller readied it, off the clock
        from onnxship import families
        from onnxship.measure.coldstart import fed_like_the_graph

        family, est, meta = families.load_native(Path(job["native_dir"]))
        family.set_threads(job["runtime_settings"]["intra_op_threads"])
        call = fed_like_the_graph(family.native_call(est, meta), feeds, job)
        return call, feeds, size_bytes(Path(job["native_dir"]) / meta["native_file"])
    from onnxship.runtime import InferenceSettings, OnnxModel

    model = OnnxModel(job["path"], InferenceSettings.from_mapping(job["runtime_settings"]))
    file_bytes = Path(job["path"]).stat().st_size
    from onnxship.measure.coldstart import windows_spec

    spec = windows_spec(job) if job["runtime"] != FLOOR else None  # the floor takes the windows as they are
    if spec is not None:  # forecast windows -> the graph's rows, as native's call lays them out
        return TimedCall(lambda feed: model.run_feed(spec.graph_feed(feed))[0]), feeds, file_bytes
    if len(feeds) == 1:  # feature rows / tensors: through the checked path serving uses
        (name,) = feeds
        return TimedCall(model.run, lambda feed: feed[name]), feeds, file_bytes
    from onnxship.data.columns import as_served  # a table's columns: pandas only here

    return TimedCall(model.run_feed, as_served), feeds, file_bytes


def load_and_call_once(job: dict) -> tuple[TimedCall, dict[str, np.ndarray], dict]:
    """In a fresh process: load one runtime and make its first call (one row / one window);
    (call, feeds, {load_seconds, file_bytes, first_call_ms, rss_after_load_mb})."""
    import psutil

    started = time.perf_counter()
    call, feeds, file_bytes = load_runtime(job)
    loaded = {"load_seconds": time.perf_counter() - started, "file_bytes": file_bytes}
    first = time.perf_counter()
    call({k: v[:1] for k, v in feeds.items()})
    loaded["first_call_ms"] = (time.perf_counter() - first) * 1e3
    loaded["rss_after_load_mb"] = psutil.Process().memory_info().rss / 2**20
    return call, feeds, loaded


def measure_runtime(job: dict) -> dict:
    """Runs in a fresh process: load one runtime, time the first call, then every batch size."""
    import psutil

    proc = psutil.Process()
    rss_start = proc.memory_info().rss
    call, feeds, loaded = load_and_call_once(job)
    rows = len(next(iter(feeds.values())))
    rss_loaded = proc.memory_info().rss
    batches = {}
    for size in job["bench"]["batch_sizes"]:
        pick = np.arange(size) % rows
        batches[str(size)] = time_calls(call, {k: v[pick] for k, v in feeds.items()}, job["bench"])
    rss_end = proc.memory_info().rss
    placement = {}
    if job.get("placement"):  # which provider ran each node (GPU sessions: CPU fallbacks)
        from onnxship.measure.placement import node_placement

        placement = {
            "placement": node_placement(
                job["path"], list(job["runtime_settings"]["providers"]), {k: v[:1] for k, v in feeds.items()}
            )
        }
    if set(job["runtime_settings"].get("providers", [])) & set(GPU_PROVIDERS):
        placement["vram_mb"] = process_vram_mb(os.getpid())  # None: NVML could not say
    return placement | {
        **loaded,
        "rss_peak_mb": max(rss_end, rss_loaded) / 2**20,
        "rss_growth_mb": (max(rss_end, rss_loaded) - rss_start) / 2**20,
        "batches": batches,
    }


def floor_graph(path: Path, feeds: dict[str, np.ndarray]) -> Path:
    """A graph that takes the model's inputs and reads only their shapes (one small int64 output):
    what a call costs in ONNX Runtime with no model work - binding the inputs, the checks, one
    output - whatever the inputs are (an identity graph would copy strings back out)."""
    import onnx
    from onnx import TensorProto, helper

    # strings (typed columns) stay strings; numbers are float32, as the runtime's check makes them
    inputs = [
        helper.make_tensor_value_info(
            name,
            TensorProto.STRING if arr.dtype.kind in "OU" else TensorProto.FLOAT,
            ["batch", *arr.shape[1:]],
        )
        for name, arr in feeds.items()
    ]
    nodes = [helper.make_node("Shape", [k], [f"{k}_shape"]) for k in feeds]
    nodes.append(helper.make_node("Concat", [f"{k}_shape" for k in feeds], ["shapes"], axis=0))
    output = helper.make_tensor_value_info("shapes", TensorProto.INT64, [None])
    graph = helper.make_graph(nodes, "ort_floor", inputs, [output])
    # IR version 9: what the exporters here write and every ONNX Runtime in use loads
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    return path


def floor_job(common: dict, settings: dict, folder: Path) -> dict:
    """The floor graph on the benchmark's own inputs, as a job for the interleaved rounds: timed
    in the same rounds as native and the variants, so native / floor is the most any graph served
    through this call path can gain at each batch size."""
    with np.load(common["data"]) as saved:
        path = floor_graph(folder / "floor.onnx", {k: saved[k] for k in saved.files})
    return {**common, "runtime": FLOOR, "path": str(path), "runtime_settings": settings}


def measure_each(jobs: list[dict]) -> list[dict]:
    """Each job (one runtime under one set of session settings) in its own fresh spawned process,
    one after the other, so runtimes never compete for the cores; the sha256 of the file timed is
    kept with its figures. Results in the order of the jobs."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    spawn = multiprocessing.get_context("spawn")
    results = []
    for job in jobs:
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            result = pool.submit(measure_runtime, job).result()
        # which file was timed: package registers a variant only if it is this exact file
        results.append({**result, "sha256": job.get("sha256")})
    return results


def gpu_runs(base_settings: dict, wanted: list[str], jobs: list[dict]) -> dict:
    """Every variant job on each GPU provider that can run here (CPU as the fallback for nodes the
    GPU cannot take, with the placement audited), or the line saying why it was skipped. Native
    stays on the CPU: the PyTorch here is a CPU build, and tree libraries are timed as served."""
    from onnxship.measure.providers import usable_gpu_providers

    usable, skipped = usable_gpu_providers(list(wanted))
    out: dict = {p: {"skipped": why} for p, why in skipped.items()}
    for provider in usable:
        settings = base_settings | {"providers": [provider, "CPUExecutionProvider"]}
        on_gpu = [job | {"runtime_settings": settings, "placement": True} for job in jobs]
        out[provider] = {
            "runtimes": dict(zip([j["runtime"] for j in on_gpu], measure_each(on_gpu), strict=True))
        }
    return out
