"""Registry side of serving, run in the watcher process (never in the server process): download only
the files serving reads, each listed first (a folder or an oversized file is refused before a byte
is fetched), then check every byte against what the registry vouches for (onnxship.version.manifest),
the metadata against its schema, the graph for external data, and probe it in a child process
(a malformed graph can crash ONNX Runtime; a slow or memory-hungry one is refused there).

Errors come in three kinds: RejectedModel (this version's content is wrong: the same answer every
time, never retried), Stalled (a deadline of ours passed: the download, the cache lock; retried,
and shown in readiness until it clears) and everything else raised by download() (the registry or
the store failed: retried with backoff).
"""

from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from onnxship.contract import MODEL_FILE
from onnxship.version.verify import MAX_JSON_BYTES, RejectedModel, Vouched

PROBE_TIMEOUT_S = 120
DOWNLOAD_DEADLINE_S = 900.0


class Stalled(Exception):
    """A deadline of the watcher's own passed (cache lock, download): retried, surfaced as a stall."""


@dataclass(frozen=True)
class ProbeBudget:
    """What one inference of a served model may cost, measured by the probe in its own process."""

    max_call_s: float = 2.0
    max_call_bytes: int = 512 << 20

    def args(self) -> list[str]:
        return ["--max-call-s", str(self.max_call_s), "--max-call-bytes", str(self.max_call_bytes)]


# what a probe child needs of this process's environment: never the registry's or the store's
# credentials (a probe runs a graph nobody has vouched for as code)
PROBE_ENV = (
    "PATH",
    "HOME",
    "TMPDIR",
    "LANG",
    "LC_ALL",
    "PYTHONPATH",
    "PYTHONDONTWRITEBYTECODE",
    "VIRTUAL_ENV",
    "LD_LIBRARY_PATH",
    "OMP_NUM_THREADS",
)


def die_with_parent() -> None:
    """Linux: this process is killed when the one that started it ends (a watcher restarted in the
    middle of a download or a probe leaves no orphan working on)."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: orphans end with their own deadline


def size_cap(name: str, max_model_bytes: int) -> int:
    return max_model_bytes if name == MODEL_FILE else MAX_JSON_BYTES


_in_flight = 0  # downloads running now, in any thread of this process
_in_flight_lock = threading.Lock()
_starting_up = True  # until the watcher's first round ends, the forkserver is kept for the others
# alias moves are rare but come in bursts (a promotion, its rollback, the next model's move): the
# forkserver waits this long idle before it stops, so one start (~2 s of CPU importing MLflow)
# serves the burst; the memory limits already count it (serving/deploy/k8s, tests/test_deploy.py)
DOWNLOADER_IDLE_S = 60.0
_idle_since = 0  # bumped whenever the forkserver falls idle: a stop timer acts only on its own idle spell


@functools.cache
def _downloader() -> multiprocessing.context.BaseContext:
    """A forkserver with MLflow imported: each download is a fork of it (milliseconds), not a
    fresh interpreter importing MLflow (seconds), and never a fork of this threaded process. The
    first is itself a fork of the watcher taken before its model threads (fork_downloader); one
    started again after an idle stop is a new interpreter preloading PRELOAD."""
    from serving.registry.download import PRELOAD

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def fork_downloader() -> bool:
    """Start the download forkserver as a fork of this process: call it once MLflow is imported
    and before any thread but the heartbeat runs (no registry client, no store connection yet).
    A forkserver started the usual way is a new interpreter importing MLflow again, about 2.4 s
    of CPU at every watcher start. False where this CPython's forkserver differs from the one
    this was written against (3.11: no authentication key): warm_downloader starts it instead."""
    import socket
    from multiprocessing import connection, forkserver, resource_tracker, util

    from serving.registry.events import holding_output

    server = forkserver._forkserver
    if hasattr(server, "_forkserver_authkey") or getattr(server, "_forkserver_pid", 0) is not None:
        return False
    _downloader()
    resource_tracker.ensure_running()  # its own small process, as the usual start makes it
    address = connection.arbitrary_address("AF_UNIX")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(address)
    if not util.is_abstract_socket_namespace(address):
        os.chmod(address, 0o600)
    listener.listen()
    alive_r, alive_w = os.pipe()  # the forkserver ends when this process closes alive_w (exits)
    try:
        with holding_output():  # no other thread is inside a print that the child would inherit locked
            pid = os.fork()
    except OSError:  # no fork now (memory, process limit): the usual start, with the same result
        for fd in (alive_r, alive_w):
            os.close(fd)
        listener.close()
        if not util.is_abstract_socket_namespace(address):
            os.unlink(address)
        return False
    if pid == 0:
        watcher = os.getppid()
        _serve_downloads(listener.detach(), alive_r, alive_w, watcher)
    os.close(alive_r)
    listener.close()
    server._forkserver_address, server._forkserver_alive_fd, server._forkserver_pid = address, alive_w, pid
    return True


def _serve_downloads(listener_fd: int, alive_r: int, alive_w: int, watcher: int) -> NoReturn:
    """The forked child: CPython's forkserver loop. It dies with the watcher even mid-download
    (each download holds the "alive" pipe that would otherwise end it, and its own deadline lived
    in the watcher), and holds no end of the watcher's event stream, so a server reading it sees
    the watcher's end at once."""
    import traceback
    from multiprocessing import forkserver

    code = 0
    try:
        os.close(alive_w)
        die_with_parent()
        if os.getppid() != watcher:  # the watcher ended before the line above took effect
            os._exit(0)
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # downloads answer over their own pipes
        forkserver.main(listener_fd, alive_r, [])
    except SystemExit:  # the loop's own end: every client closed the "alive" pipe
        pass
    except BaseException:
        traceback.print_exc()
        code = 1
    os._exit(code)


def warm_downloader() -> None:
    """Start the forkserver now, so that it imports MLflow while the watcher starts (the first
    downloads then cost a fork); it is kept until `end_startup` and stopped when idle after."""
    from multiprocessing import forkserver

    global _in_flight
    with _in_flight_lock:
        _in_flight += 1  # busy while it starts: an end of the start-up meanwhile waits for it
    try:
        _downloader()
        forkserver.ensure_running()
    finally:
        with _in_flight_lock:
            _in_flight -= 1
        if not _starting_up:
            release_downloader()


def end_startup() -> None:
    """The watcher's first round is over: from now on the forkserver is stopped when idle."""
    global _starting_up
    _starting_up = False
    release_downloader()


def release_downloader() -> None:
    """Stop the forkserver once it has stayed idle DOWNLOADER_IDLE_S: it holds MLflow's imports
    (~170 MB), and the next download after that starts it again (about a second)."""
    global _idle_since
    with _in_flight_lock:
        _idle_since += 1
        spell = _idle_since
    timer = threading.Timer(DOWNLOADER_IDLE_S, _stop_if_still_idle, args=(spell,))
    timer.daemon = True  # a watcher that ends does not wait for it (the forkserver ends with it)
    timer.start()


FORKSERVER_EXIT_S = 5.0  # an idle forkserver ends at once when told; one that does not is killed


def _stop_if_still_idle(spell: int) -> None:
    """Tell the idle forkserver to end and forget it, under the lock downloads count themselves
    under (the next download starts a new one); wait for its end outside that lock, bounded, so
    a forkserver that does not end blocks no download (CPython's own _stop waits under it,
    without a timeout)."""
    from multiprocessing import forkserver, util

    server = forkserver._forkserver
    with _in_flight_lock:
        if spell != _idle_since or _in_flight:  # a download since (or now): its own end re-arms
            return
        with server._lock:  # what ensure_running holds while it reads these
            pid, alive_w = server._forkserver_pid, server._forkserver_alive_fd
            address = server._forkserver_address
            if pid is None:
                return
            server._forkserver_pid = server._forkserver_alive_fd = server._forkserver_address = None
        os.close(alive_w)  # its end of the "alive" pipe: the forkserver's loop ends
    _reap(pid, FORKSERVER_EXIT_S)
    if address and not util.is_abstract_socket_namespace(address):
        with contextlib.suppress(OSError):
            os.unlink(address)


def _reap(pid: int, within_s: float) -> None:
    """Wait up to `within_s` for child `pid` to end, then kill it and wait for that."""
    deadline = time.monotonic() + within_s
    try:
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                print(f"the download forkserver did not end within {within_s:.0f} s: killed", file=sys.stderr)
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
            time.sleep(0.05)
    except ChildProcessError:  # reaped already
        pass


def packaging_run_alive(client: Any, mv: Any) -> None:
    """The run that packaged the version still exists: a deleted run's version is withdrawn."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(mv.run_id)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RejectedModel(f"the run that packaged version {mv.version} no longer exists") from None
        raise
    if run.info.lifecycle_stage != "active":
        raise RejectedModel(f"the run that packaged version {mv.version} was deleted")


def download(
    trusted: Vouched,
    dest: Path,
    tracking_uri: str,
    max_model_bytes: int,
    deadline_s: float = DOWNLOAD_DEADLINE_S,
) -> Path:
    """Fetch the served files into dest, all or nothing, within `deadline_s`. Each file is listed
    first: a folder where a file belongs or a file over its cap is a RejectedModel before anything
    is fetched; then the bytes written are held to the same caps. The partial folder is this
    process's own, so watchers sharing a cache never delete each other's work."""
    import mlflow.artifacts

    listed = {
        Path(info.path).name: info
        for info in mlflow.artifacts.list_artifacts(artifact_uri=trusted.source, tracking_uri=tracking_uri)
    }
    caps = {name: size_cap(name, max_model_bytes) for name in trusted.files}
    for name in trusted.files:
        info = listed.get(name)
        if info is None:
            raise RejectedModel(f"{name} is listed in the manifest but not in the artifact store")
        if info.is_dir:
            raise RejectedModel(f"{name} is a folder in the artifact store, not a file")
        if info.file_size is not None and info.file_size > caps[name]:
            raise RejectedModel(f"{name} is {info.file_size} bytes, over the {caps[name]} cap")
    partial = dest.with_name(f"{dest.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    partial.mkdir(parents=True)
    try:
        _fetch_in_child(trusted, partial, tracking_uri, caps, deadline_s)
        for name in trusted.files:
            got = partial / name
            if got.is_symlink() or not got.is_file() or got.stat().st_size > caps[name]:
                raise RejectedModel(f"{name} as downloaded is not a plain file within its size cap")
        shutil.rmtree(dest, ignore_errors=True)
        partial.rename(dest)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return dest


def _fetch_in_child(
    trusted: Vouched, folder: Path, tracking_uri: str, caps: dict[str, int], deadline_s: float
):
    from serving.registry.download import fetch_files

    global _in_flight
    with _in_flight_lock:
        _in_flight += 1
    try:
        return _run_fetch_child(fetch_files, trusted, folder, tracking_uri, caps, deadline_s)
    finally:
        with _in_flight_lock:
            _in_flight -= 1
        if not _starting_up:
            release_downloader()


def _run_fetch_child(
    fetch_files, trusted: Vouched, folder: Path, tracking_uri: str, caps: dict, deadline_s: float
):
    context = _downloader()
    receive, reply = context.Pipe(duplex=False)
    child = context.Process(
        target=fetch_files,
        args=(trusted.source, tracking_uri, str(folder), caps, dict(os.environ), reply),
        daemon=True,
    )
    child.start()
    reply.close()
    try:
        answered = receive.poll(deadline_s)
        outcome = receive.recv() if answered else None
    except EOFError:  # the child died without a word (killed, out of memory)
        outcome = ("error", "the download process ended without an answer")
    finally:
        if child.is_alive():
            child.kill()
        child.join(5)
        receive.close()
    if outcome is None:
        raise Stalled(f"download of version {trusted.version} did not finish within {deadline_s:g} s")
    kind, detail = outcome
    if kind == "too_big":
        raise RejectedModel(f"{detail} as downloaded is larger than its size cap")
    if kind != "ok":
        raise RuntimeError(f"download of version {trusted.version} failed: {detail}")


def probe(
    folder: Path, budget: ProbeBudget | None = None, manifest: dict[str, str] | None = None
) -> dict[str, Any]:
    """Load and run the model in a child process, within its per-call budgets; a crash there
    cannot take the server down. With `manifest`, the probe hashes the bytes it loads against it
    (what it vouches for is what was verified, even if the folder changes meanwhile)."""
    budget = budget or ProbeBudget()
    pinned = ["--manifest", json.dumps(manifest)] if manifest else []
    try:
        done = subprocess.run(
            [sys.executable, "-m", "serving.registry.probe", str(folder), *budget.args(), *pinned],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            env={k: v for k, v in os.environ.items() if k in PROBE_ENV},
        )
    except subprocess.TimeoutExpired as err:
        raise RejectedModel(f"probe did not finish in {PROBE_TIMEOUT_S}s") from err
    if done.returncode != 0:
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}"
        last = (done.stderr.strip().splitlines() or [""])[-1]
        raise RejectedModel(f"probe failed ({how}): {last[:500]}")
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise RejectedModel("probe printed no result") from None
