"""Cold start and memory, as a deployment would see them: one fresh process per measurement that
imports only what its runtime needs.

`python -m onnxship.measure.coldstart '<job json>'` is that process. It reports, on one JSON line:
  import_s        importing the runtime (ONNX: numpy + onnxruntime; native: the libraries its
                  family's loader names, e.g. xgboost or torch + chronos: Family.loader_imports)
  load_s          reading the model file into a ready session / estimator
  first_call_ms   the first prediction (one row / one window)
  rss_rest_mb     resident memory after that first prediction, idle
  rss_peak_mb     the process's peak resident memory after one call at the largest batch size
and the parent (cold_starts) adds process start (interpreter up to our first line) and the whole
span from spawning the process to the first answer. Processes start from a warm file cache (the
timing workers read the same files): a first boot of a node reads slower disks.
Runtimes are started in interleaved order (A B …, then … B A) `runs` times; each figure is the
median with its order-statistic interval and the run count.

Native processes also import onnxship's family glue (numpy, onnx's Python package): about 10 MB
and 0.2 s, counted in their load.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the probe imports nothing of ours before its clocks start
    from onnxship.measure.calls import TimedCall

START = time.monotonic()  # CLOCK_MONOTONIC is system-wide: the parent compares it to its own


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    """This process's high-water RSS (VmHWM). Not getrusage's ru_maxrss: Linux carries that over
    from the parent across fork and exec, so a probe started by a big process would report the
    parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def fed_like_the_graph(native_call: TimedCall, feeds: dict, job: dict) -> TimedCall:
    """The native call, taking the feed the ONNX graph takes. Models from the pipeline share the
    contract's input names; a graph converted elsewhere (onnxship-bench) may name its one input
    otherwise, and its job says so (`rename_native_input`): native then gets it as `input`."""
    from onnxship.contract import INPUT

    if not job.get("rename_native_input") or len(feeds) != 1:
        return native_call
    (name,) = feeds
    return native_call.fed_as(lambda feed: {INPUT: feed[name]})


def windows_spec(job: dict) -> Any:
    """The ForecastSpec of a forecaster whose graph takes other tensors than its benchmark windows
    (Chronos' rows and group ids), or None."""
    from pathlib import Path

    from onnxship.contract import NATIVE_META, SERIES, ForecastSpec, Task

    meta_path = Path(job.get("native_dir") or "") / NATIVE_META
    if not job.get("native_dir") or not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("task") != Task.FORECAST:
        return None
    spec = ForecastSpec.from_metadata(meta)
    return None if spec.graph.layout == SERIES else spec


def _probe(job: dict) -> dict:
    import importlib

    t = time.monotonic()
    import numpy as np

    # contract.NATIVE, spelled out: this process imports nothing of ours before its clocks start
    native = job["runtime"] == "native"
    for module in job.get("imports") or ([] if native else ["onnxruntime"]):
        with contextlib.suppress(Exception):  # one its loader imported inside a try: not needed
            importlib.import_module(module)
    imported = time.monotonic()
    with np.load(job["data"]) as saved:
        feeds = {k: saved[k] for k in saved.files}
    before_load = time.monotonic()
    if native:
        from pathlib import Path

        from onnxship import families

        family, est, meta = families.load_native(Path(job["native_dir"]))
        family.set_threads(job["runtime_settings"]["intra_op_threads"])
        call = fed_like_the_graph(family.native_call(est, meta), feeds, job)
    else:
        from onnxship.runtime import InferenceSettings, OnnxModel

        model = OnnxModel(job["path"], InferenceSettings.from_mapping(job["runtime_settings"]))
        (name, *more) = feeds
        call = model.run_feed if more else (lambda feed: model.run(feed[name]))
        spec = windows_spec(job)
        if spec is not None:  # Chronos: windows -> rows, as native's call does
            call = lambda feed: model.run_feed(spec.graph_feed(feed))  # noqa: E731
    loaded = time.monotonic()
    call({k: v[:1] for k, v in feeds.items()})
    first = time.monotonic()
    rest = rss_mb()
    rows = len(next(iter(feeds.values())))
    pick = np.arange(job["peak_batch"]) % rows
    call({k: v[pick] for k, v in feeds.items()})
    return {
        "loaded": loaded_packages(),
        "started_at": START,
        "first_answer_at": first,
        "import_s": imported - t,
        "load_s": loaded - before_load,
        "first_call_ms": (first - loaded) * 1e3,
        "rss_rest_mb": rest,
        "rss_peak_mb": _peak_rss_mb(),
    }


def loaded_packages() -> list[str]:
    """Top-level packages this process has imported, the standard library aside."""
    names = {m.split(".")[0] for m in sys.modules}
    return sorted(n for n in names - set(sys.stdlib_module_names) if not n.startswith("_"))


def wait_policy(job: dict) -> str | None:
    """The OpenMP wait policy native runs under: PASSIVE with spinning off (OpenMP - PyTorch,
    LightGBM - busy-waits between calls unless told not to), else the library's default."""
    # the pipeline's stages run with it already (onnxship/pipeline/kernels.py: QUIET_OPENMP)
    return None if job["runtime_settings"].get("allow_spinning", True) else "PASSIVE"


def native_imports(job: dict) -> list[str]:
    """The libraries a native job's model needs to load: its family's loader_imports (read from
    the model's meta.json; families.Family says what counts)."""
    from pathlib import Path

    from onnxship import families
    from onnxship.contract import NATIVE_META

    meta = json.loads((Path(job["native_dir"]) / NATIVE_META).read_text())
    return list(families.get(meta["family"]).loader_imports)


def run_probe(job: dict) -> dict:
    """One fresh process (this module as a script); its figures plus process start and total."""
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if job["runtime"] == "native" and (policy := wait_policy(job)):
        env["OMP_WAIT_POLICY"] = policy  # as the benchmark's native workers run
    spawned = time.monotonic()
    args = [sys.executable, "-m", "onnxship.measure.coldstart", json.dumps(job)]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"cold-start probe of {job['runtime']} failed: {last[:300]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return out | {
        "process_start_s": out.pop("started_at") - spawned,
        "cold_start_s": out.pop("first_answer_at") - spawned,
    }


FIGURES = ("cold_start_s", "process_start_s", "import_s", "load_s", "first_call_ms")
FIGURES += ("rss_rest_mb", "rss_peak_mb")


def cold_starts(jobs: list[dict], runs: int, progress: Callable[[], object] | None = None) -> dict[str, dict]:
    """{runtime: {figure: {median, ci, n}}} over `runs` interleaved rounds of fresh processes
    (`progress` is called after each round)."""
    from onnxship.contract import NATIVE
    from onnxship.measure.intervals import percentile_interval

    jobs = [
        j | {"imports": native_imports(j)} if j["runtime"] == NATIVE and "imports" not in j else j
        for j in jobs
    ]
    samples: dict[str, list[dict]] = {j["runtime"]: [] for j in jobs}
    for round_ in range(runs):
        for job in jobs if round_ % 2 == 0 else jobs[::-1]:
            samples[job["runtime"]].append(run_probe(job))
        if progress:
            progress()
    out = {}
    for job in jobs:
        runtime, measured = job["runtime"], samples[job["runtime"]]
        out[runtime] = {"imports": job.get("imports", ["numpy", "onnxruntime"]), "runs": runs}
        out[runtime]["loaded"] = measured[0]["loaded"]  # every package the process held
        for figure in FIGURES:
            interval = percentile_interval([m[figure] for m in measured], 50)
            out[runtime][figure] = {"median": interval.estimate, "ci": [interval.low, interval.high]}
    return out


if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    print(json.dumps(_probe(request)), flush=True)
    # every figure is taken: skip the interpreter's teardown of what was loaded (about 1.5 s with
    # PyTorch, paid by the benchmark waiting for this process, measuring nothing)
    os._exit(0)
