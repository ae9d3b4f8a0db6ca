"""The benchmark's measurement machinery on real processes and real ONNX Runtime sessions:
interleaved rounds between runtime workers, cold-start probes that import only their runtime,
and the lineage that groups one `dvc repro`'s stage runs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxship.measure.coldstart import cold_starts
from onnxship.measure.report import add_speedups
from onnxship.measure.rounds import (
    RuntimeWorker,
    calls_per_round,
    measure_interleaved,
    screen_in_workers,
    settings_key,
)
from onnxship.pipeline.lineage import is_dvc_run, pipeline_run_id, source_state
from tests.builders import identity_graph

SETTINGS = {"providers": ["CPUExecutionProvider"], "intra_op_threads": 1, "inter_op_threads": 1}
SETTINGS |= {"graph_optimization_level": "all", "allow_spinning": False}


def heavy_graph(path: Path, width: int = 64, layers: int = 24) -> Path:
    """Same input as the identity graph, many MatMuls: clearly slower per call."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [width, width], np.full(width * width, 0.01).tolist())
    nodes, last = [], "input"
    for i in range(layers):
        nodes.append(helper.make_node("MatMul", [last, "w"], [f"h{i}"]))
        last = f"h{i}"
    nodes.append(helper.make_node("Identity", [last], ["input_out"]))
    io = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", width]) for n in ("input", "input_out")
    ]
    graph = helper.make_graph(nodes, "heavy", [io[0]], [io[1]], initializer=[weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    return path


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("graphs")
    feeds = {"input": np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)}
    np.savez(folder / "inputs.npz", **feeds)
    common = {
        "data": str(folder / "inputs.npz"),
        "runtime_settings": SETTINGS,
        "bench": {"warmup_iterations": 2},
    }
    return {
        "light": common | {"runtime": "light", "path": str(identity_graph(folder / "light.onnx", feeds))},
        "heavy": common | {"runtime": "heavy", "path": str(heavy_graph(folder / "heavy.onnx"))},
        "folder": folder,
    }


def test_interleaved_rounds_time_each_runtime_in_its_own_process_with_intervals(graphs):
    jobs = {name: graphs[name] for name in ("light", "heavy")}
    screen = {name: {"batches": {"1": {"p50_ms": 0.05}, "64": {"p50_ms": 0.5}}} for name in jobs}
    rounds = {"round_s": 0.01, "target": 0.10, "budget_s": 1.5, "min_rounds": 3, "min_samples": 20}
    measured = measure_interleaved({1: jobs, 64: jobs}, screen, rounds)
    for size in ("1", "64"):
        light, heavy = measured["light"][size], measured["heavy"][size]
        assert heavy["p50_ms"] > 2 * light["p50_ms"], (light, heavy)
        for cell in (light, heavy):
            assert cell["rounds"] >= 3 and cell["iterations"] >= 3
            assert cell["p50_ci_ms"][0] <= cell["p50_ms"] <= cell["p50_ci_ms"][1]
            assert cell["p99_ci_ms"][0] <= cell["p99_ms"] <= cell["p99_ci_ms"][1]
            converged = cell["p99_rel_half_width"] <= 0.10 and cell["iterations"] >= 20
            assert converged or cell["stopped"] == "budget"  # "converged" only when it did
        assert light["rounds"] == heavy["rounds"]  # interleaved: every runtime in every round
    report = {"runtimes": {"native": {"batches": measured["heavy"]}, "light": {"batches": measured["light"]}}}
    add_speedups(report)
    cell = report["runtimes"]["light"]["batches"]["64"]
    assert cell["speedup_ci"][0] <= cell["speedup_vs_native_p50"] <= cell["speedup_ci"][1]
    assert cell["speedup_ci"][0] > 1


def test_a_runtime_that_cannot_load_is_named_not_traced(graphs):
    broken = graphs["folder"] / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(RuntimeError, match=r"^broken could not be loaded for timing: ") as caught:
        RuntimeWorker(graphs["light"] | {"runtime": "broken", "path": str(broken)})
    assert "Traceback" not in str(caught.value)


def test_rounds_are_sized_from_the_screen():
    assert calls_per_round(0.01, 0.05) == 200  # capped
    assert calls_per_round(5.0, 0.05) == 10
    assert calls_per_round(2500.0, 0.05) == 1
    assert calls_per_round(float("nan"), 0.05) == 1


def test_cold_start_processes_import_only_onnxruntime(graphs):
    jobs = [graphs[n] | {"peak_batch": 64} for n in ("light", "heavy")]
    figures = cold_starts(jobs, runs=3)
    for name in ("light", "heavy"):
        f = figures[name]
        assert f["runs"] == 3 and f["imports"] == ["numpy", "onnxruntime"]
        # what a deployment runs: no PyTorch, pandas, MLflow, or ONNX's Python package
        assert not {"torch", "pandas", "mlflow", "onnx", "sklearn"} & set(f["loaded"]), f["loaded"]
        assert {"numpy", "onnxruntime", "onnxship"} <= set(f["loaded"])
        for key in ("cold_start_s", "import_s", "load_s", "first_call_ms", "rss_rest_mb", "rss_peak_mb"):
            low, high = f[key]["ci"]
            assert 0 < low <= f[key]["median"] <= high, key
        parts = f["process_start_s"]["median"] + f["import_s"]["median"] + f["load_s"]["median"]
        assert parts <= f["cold_start_s"]["median"] * 1.5
        assert f["rss_rest_mb"]["median"] <= f["rss_peak_mb"]["median"]


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout


def test_the_tree_is_clean_when_only_pipeline_outputs_changed(tmp_path, monkeypatch):
    git(tmp_path, "init", "-q")
    files = {"stage.py": "a = 1\n", "dvc.lock": "x\n", "reports/r.json": "{}\n", "data/.gitignore": "/p\n"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    git(tmp_path, "add", "-A")
    git(tmp_path, "-c", "user.email=t@e.invalid", "-c", "user.name=t", "commit", "-qm", "c")
    monkeypatch.chdir(tmp_path)
    head = git(tmp_path, "rev-parse", "HEAD").strip()
    assert source_state() == {"git_commit": head, "git_tree": "clean"}
    (tmp_path / "dvc.lock").write_text("rewritten by dvc repro\n")
    (tmp_path / "reports" / "r.json").write_text('{"p50": 1}\n')
    (tmp_path / "stray.txt").write_text("untracked\n")
    (tmp_path / "data" / ".gitignore").unlink()  # DVC removes an output's entry while it re-runs
    assert source_state()["git_tree"] == "clean"
    (tmp_path / "stage.py").write_text("a = 2\n")
    dirty = source_state()
    assert dirty["git_tree"] == "dirty" and dirty["git_commit"] == head
    (tmp_path / "stage.py").write_text("a = 3\n")
    assert source_state()["git_diff_sha256"] != dirty["git_diff_sha256"]
    (tmp_path / "stage.py").write_text("a = 2\n")
    assert source_state()["git_diff_sha256"] == dirty["git_diff_sha256"]  # same edit, same digest


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        (["/venv/bin/python", "/venv/bin/dvc", "repro"], True),
        (["dvc", "exp", "run", "-S", "seed=1"], True),
        (["python", "-m", "dvc", "repro", "-s", "train@xgboost"], True),
        (["dvc", "status"], False),
        (["python", "-m", "stages.train", "model=xgboost"], False),
        (["/bin/sh", "-c", "python -m stages.train"], False),
    ],
)
def test_dvc_runs_are_recognised_from_their_command_line(cmdline, expected):
    assert is_dvc_run(cmdline) is expected


def test_stages_of_one_dvc_run_share_an_id_and_the_next_run_gets_another(tmp_path, monkeypatch):
    """A stand-in `dvc repro` (a script named dvc) starts two stage processes through a shell, as
    DVC does; both report the same id, and a second `dvc repro` a different one."""
    code = "from onnxship.pipeline.lineage import pipeline_run_id; print(pipeline_run_id())"
    stage = f"{sys.executable} -c '{code}'"
    fake = tmp_path / "dvc"
    fake.write_text(
        textwrap.dedent(f"""
        import subprocess
        for _ in range(2):
            subprocess.run({stage!r}, shell=True, check=True)
        """)
    )
    monkeypatch.delenv("ONNXSHIP_PIPELINE_RUN", raising=False)
    root = Path(__file__).resolve().parents[1]

    def repro() -> list[str]:
        done = subprocess.run([sys.executable, str(fake), "repro"], capture_output=True, text=True, cwd=root)
        return done.stdout.split()

    first, second = repro(), repro()
    assert len(set(first)) == 1 and first[0].startswith("dvc-")
    assert len(set(second)) == 1 and second[0] != first[0]
    assert pipeline_run_id() == "standalone"  # pytest is no dvc run
    monkeypatch.setenv("ONNXSHIP_PIPELINE_RUN", "nightly-42")
    assert pipeline_run_id() == "nightly-42"


def test_the_screen_keeps_one_process_per_winner_for_the_rounds(graphs):
    bench = {"min_iterations": 5, "max_iterations": 50, "time_budget_s": 0.01}
    one, two = (graphs["heavy"] | {"runtime_settings": SETTINGS | {"intra_op_threads": n}} for n in (1, 2))
    pool: dict = {}
    try:
        measured = screen_in_workers([one, two], [1, 64], bench, pool)
        assert [set(m["batches"]) for m in measured] == [{"1", "64"}, {"1", "64"}]
        for m in measured:
            assert m["load_seconds"] > 0 and m["rss_after_load_mb"] > 0 and m["file_bytes"] > 0
            assert all(c["iterations"] >= 5 and c["p50_ms"] > 0 for c in m["batches"].values())
        # the settings fastest at no batch size lost their process; each winner kept its own
        winners = {
            settings_key(
                min(zip((one, two), measured, strict=True), key=lambda jm: jm[1]["batches"][s]["p50_ms"])[0]
            )
            for s in ("1", "64")
        }
        assert set(pool) == winners
        assert all(w.process.is_alive() for w in pool.values())
    finally:
        for worker in pool.values():
            worker.close()


def test_one_native_worker_times_every_thread_count():
    """Native switches threads between calls (its family's setting), so its screen loads it once;
    an ONNX session's threads are fixed when it is built: one worker per setting."""
    from onnxship.measure.rounds import threads_of

    native = [{"runtime": "native", "runtime_settings": SETTINGS | {"intra_op_threads": n}} for n in (1, 2)]
    onnx_jobs = [{"runtime": "base", "runtime_settings": SETTINGS | {"intra_op_threads": n}} for n in (1, 2)]
    assert settings_key(native[0]) == settings_key(native[1])
    assert settings_key(onnx_jobs[0]) != settings_key(onnx_jobs[1])
    assert [threads_of(j) for j in native] == [1, 2] and threads_of(onnx_jobs[0]) is None


def test_native_is_timed_in_a_fork_only_where_its_caller_asks_and_openmp_waits_as_the_job_says(monkeypatch):
    """OpenMP reads its wait policy once, when it loads, and libgomp hangs in a fork of a process
    that ran OpenMP work: a fork times native as a fresh process would only where the caller says
    it ran none (the benchmark stage) and the policy here is the job's (PASSIVE, spinning off)."""
    from onnxship.measure.rounds import FORK_NATIVE, start_method

    quiet = {"runtime": "native", "runtime_settings": SETTINGS, FORK_NATIVE: True}
    spinning = quiet | {"runtime_settings": SETTINGS | {"allow_spinning": True}}
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert [start_method(quiet), start_method(spinning)] == ["fork", "spawn"]
    assert start_method(quiet | {FORK_NATIVE: False}) == "spawn"  # onnxship-bench: parity ran natively first
    assert start_method(quiet | {"runtime": "base"}) == "spawn"  # ONNX Runtime: always its own process
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert [start_method(quiet), start_method(spinning)] == ["spawn", "fork"]


@pytest.fixture(scope="module")
def native_job(tmp_path_factory) -> dict:
    """A tiny XGBoost model as the pipeline keeps one (the file and meta.json), and its inputs."""
    import json

    from tests.builders import data, fitted

    folder = tmp_path_factory.mktemp("native")
    X, y = data("regression")
    family, est = fitted("xgboost", "regression", X, y)
    family.save(est, folder / family.native_file)
    meta = {"family": "xgboost", "task": "regression", "native_file": family.native_file}
    (folder / "meta.json").write_text(json.dumps(meta))
    np.savez(folder / "inputs.npz", input=X.astype(np.float32))
    settings = SETTINGS | {"intra_op_threads": 1}
    return {"runtime": "native", "native_dir": str(folder), "data": str(folder / "inputs.npz")} | {
        "bench": {"warmup_iterations": 1},
        "runtime_settings": settings,
    }


def test_a_spinning_native_job_loads_without_the_stages_passive_policy(native_job, monkeypatch):
    from onnxship.measure.timing import ready_to_load

    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # as every stage but train runs
    spinning = native_job | {"runtime_settings": native_job["runtime_settings"] | {"allow_spinning": True}}
    ready_to_load(spinning)
    assert "OMP_WAIT_POLICY" not in os.environ
    ready_to_load(native_job)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_a_forked_native_worker_ends_when_its_stage_is_killed(native_job):
    """A fork holds a copy of the stage's end of its pipe: it closes it, so a stage killed without
    clean-up leaves the worker an EOF, not a wait for ever holding the model's memory."""
    import json
    import signal

    import psutil

    from tests.conftest import ROOT

    stage = textwrap.dedent(
        """
        import json, os, sys, time
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        from onnxship.measure.rounds import FORK_NATIVE, RuntimeWorker
        worker = RuntimeWorker(json.loads(sys.argv[1]) | {FORK_NATIVE: True})
        print(worker.start_method, worker.process.pid, flush=True)
        time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", stage, json.dumps(native_job)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        how, pid = proc.stdout.readline().split()
        assert how == "fork"
        worker = psutil.Process(int(pid))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        psutil.wait_procs([worker], timeout=15)
        assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
    finally:
        proc.kill()


def test_the_floor_graphs_speedup_is_stated_as_the_ceiling_where_the_call_is_a_large_share():
    """add_speedups gives the floor (report["ort_floor"]) its ratio to native; the summary states
    it where the floor graph takes a third or more of the registered variant's time."""
    from onnxship.report.summary import call_ceiling

    def cell(p50: float) -> dict:
        return {"p50_ms": p50, "p50_ci_ms": [p50 * 0.9, p50 * 1.1]}

    report = {
        "runtimes": {
            "native": {"batches": {"1": cell(0.075), "1000": cell(10.0)}},
            "base": {"batches": {"1": cell(0.030), "1000": cell(5.0)}},
        },
        "ort_floor": {"batches": {"1": cell(0.015), "1000": cell(0.05)}},
    }
    add_speedups(report)
    assert report["ort_floor"]["batches"]["1"]["speedup_vs_native_p50"] == pytest.approx(5.0)
    line = call_ceiling(report, "base", 1)
    assert "0.015 ms against `base`'s 0.03 ms" in line and "more than 5.00× [4.09–6.11]" in line
    assert call_ceiling(report, "base", 1000) == ""  # 0.05 of 5 ms: the model's work dominates
    report["ort_floor"]["batches"]["1"] |= {"p50_ms": 0.028, "p50_ci_ms": [0.026, 0.029]}
    assert call_ceiling(report, "base", 1) == ""  # within the variant's interval: bounds nothing
    assert call_ceiling({"runtimes": report["runtimes"]}, "base", 1) == ""  # no floor timed
