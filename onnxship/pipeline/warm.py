"""Warm start for stage processes: a fork server that has the heavy libraries imported already.

`dvc repro` runs every stage as a new Python process, and a new process spends seconds importing
MLflow, Hydra, ONNX, the model frameworks and PyTorch before the stage does anything: over the
80-odd stage runs of the default pipeline that was most of the time outside the stages. Here the
first stage run starts a server in the background (and runs itself as before); the server imports
those libraries once and then answers each later stage run by forking a child that runs the stage.
The child is a fresh process in everything the stage sees: its own pid and process group, the
caller's working directory, environment, arguments and stdin/stdout/stderr (passed over the socket
as file descriptors), exit status passed back. Only third-party libraries are preloaded; the
project's own code (onnxship, stages) is imported by the child from the caller's directory, so an
edit is always seen.

Which server serves a call is decided by what the preloaded imports depend on: the interpreter,
the installed packages and the environment (libraries read variables such as OMP_NUM_THREADS or
PYTHONHASHSEED when they load), hashed into the socket's name. A call in another environment gets
its own server. A server exits after IDLE_S without work. The socket lives in Linux's abstract
namespace (no file to clean up) and answers only processes of the same user (SO_PEERCRED).

A stage that sets library variables before its imports (train: numeric-kernel pins for
byte-reproducible weights) passes them to run(): they are part of the environment its server
starts with. ONNXSHIP_WARM=0 turns warm starts off; a call that finds no server runs cold.

    python -m stages <stage> key=value ...   # stages/__main__.py calls run() below
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

ENABLED_ENV = "ONNXSHIP_WARM"  # "0": always cold
PRELOAD_ENV = "ONNXSHIP_WARM_PRELOAD"  # comma-separated modules, instead of PRELOAD
SERVED_ENV = "ONNXSHIP_WARM_SERVED"  # set in a child the server forked (tests read it)
# a server with no stage to run for this long exits. `dvc repro` runs each model's chain (train …
# package) before the next model's, so train's server (its own environment) waits a whole chain
# between calls: 25-95 s here, ~3 min for a release-size Chronos. A server that left restarts
# cold, and its preload beside a running stage took a core from it: LightGBM's 2-thread fit ran
# 7.4 s instead of 0.8 (OpenMP waits at every barrier for the descheduled thread)
IDLE_S = 200.0
CONNECT_S = 5.0  # how long a call waits for a server that is up to take it
# what the stages import that takes seconds; a module missing here is skipped
PRELOAD = (
    "numpy", "pandas", "scipy.stats", "sklearn", "psutil", "omegaconf", "hydra",
    "onnx", "onnxslim", "onnxmltools", "skl2onnx",
    "mlflow", "mlflow.tracking", "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    # what MLflow imports on first use, not at its own import: set_tracking_uri resets tracing
    # (OpenTelemetry's SDK), the SQLite store loads its dialect, runs record the git commit
    "mlflow.tracing.processor.base_mlflow", "sqlalchemy.dialects.sqlite", "git",
    "xgboost", "lightgbm", "catboost", "torch", "chronos", "matplotlib",
    "torch.onnx", "onnxscript",  # the PyTorch exporter's first call imports these
)  # fmt: skip
# Not onnxruntime: it starts native threads when it loads, which a forked child does not have
# (the child aborts at exit). Each stage imports it itself (a few tenths of a second).
# set by DVC per stage, or by the shell: not part of what the preloaded libraries saw
VOLATILE_ENV = ("DVC_STAGE", "_", "SHLVL", "PWD", "OLDPWD", "ONNXSHIP_PIPELINE_RUN")
# the project's own packages: never taken from the server, always imported from the caller's tree
OWN_PACKAGES = ("onnxship", "stages", "serving", "tools", "tests")


def server_key(env: dict[str, str] | None = None) -> str:
    """What the preloaded imports depend on: interpreter, installed packages, environment."""
    env = dict(os.environ if env is None else env)
    for name in VOLATILE_ENV:
        env.pop(name, None)
    site = [p for p in sys.path if p.endswith("site-packages")]
    installed = [(p, os.stat(p).st_mtime_ns) for p in site if os.path.isdir(p)]
    blob = json.dumps([sys.executable, sys.version, installed, sorted(env.items())])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def address(key: str, starting: bool = False) -> str:
    return f"\0onnxship-warm-{key}{'-starting' if starting else ''}"


def _connect(name: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_S)
        sock.connect(name)
        sock.settimeout(None)
        return sock
    except OSError:
        sock.close()
        return None


def _start_server(key: str) -> None:
    """A detached server (its own session, so a Ctrl-C of this run does not stop it)."""
    with contextlib.suppress(OSError):
        subprocess.Popen(
            [sys.executable, "-m", "onnxship.pipeline.warm", "--serve", key],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )


def _run_cold(module: str, args: Sequence[str]) -> int:
    """This process becomes the stage (exec keeps the pid, so its parents are the caller's)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", module, *args])
    return 1  # not reached


def run(
    module: str, args: Sequence[str], env: Mapping[str, str] | None = None, start_server: bool = True
) -> int:
    """Run `python -m <module> <args>` warm when a server is up, else cold (starting a server for
    the calls after this one, unless `start_server` is false), with `env` on top of this
    environment (variables the module sets before its imports). Returns the stage's exit status."""
    os.environ.update(env or {})
    if os.environ.get(ENABLED_ENV) == "0" or not sys.platform.startswith("linux"):
        return _run_cold(module, args)
    from onnxship.pipeline.lineage import PIPELINE_RUN_ENV, pipeline_run_id

    env = dict(os.environ)
    # the stage's lineage looks for `dvc repro` among its parents: a forked child has the server
    # there instead, so the id is found here, in the caller, and passed on
    env.setdefault(PIPELINE_RUN_ENV, pipeline_run_id())
    key = server_key(env)
    sock = _connect(address(key))
    if sock is None:
        starting = _connect(address(key, starting=True))
        if starting is not None:
            starting.close()
        elif start_server:
            _start_server(key)
        return _run_cold(module, args)
    with sock:
        return _call(sock, {"module": module, "args": list(args), "cwd": os.getcwd(), "env": env})


def _call(sock: socket.socket, request: dict) -> int:
    payload = json.dumps(request).encode()
    socket.send_fds(sock, [struct.pack("!Q", len(payload))], [0, 1, 2])
    sock.sendall(payload)
    reader = sock.makefile("rb")
    first = reader.readline().split()
    if first[:1] != [b"pid"]:
        print("warm start: the server did not start the stage", file=sys.stderr)
        return 1
    child = int(first[1])

    def forward(signum, _frame):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child, signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, forward)
    last = reader.readline().split()
    if last[:1] != [b"exit"]:
        print("warm start: lost the stage's server before the stage ended", file=sys.stderr)
        return 1
    return int(last[1])


# --- the server ---------------------------------------------------------------------------------


def serve(key: str) -> int:
    """Preload, then fork a handler per call. Returns in every process it forks, too: each one's
    exit status goes back to main()."""
    starting = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        starting.bind(address(key, starting=True))  # one server per key: a second one stops here
    except OSError:
        return 0
    starting.listen(1)
    wanted = os.environ.get(PRELOAD_ENV)
    for module in wanted.split(",") if wanted is not None else PRELOAD:
        if module:
            with contextlib.suppress(Exception):
                __import__(module)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(address(key))
    except OSError:
        return 0
    listener.listen(64)
    starting.close()
    handlers: set[int] = set()
    last = time.monotonic()
    while True:
        for pid in list(handlers):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    handlers.discard(pid)
                    last = time.monotonic()
        ready, _, _ = select.select([listener], [], [], 1.0)
        if ready:
            conn, _ = listener.accept()
            pid = os.fork()
            if pid == 0:
                listener.close()
                return _handle(conn)
            conn.close()
            handlers.add(pid)
            last = time.monotonic()
        elif not handlers and time.monotonic() - last > IDLE_S:
            return 0


def _same_user(conn: socket.socket) -> bool:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid == os.getuid()


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    header, fds, _flags, _addr = socket.recv_fds(conn, 8, 3)
    if len(header) != 8 or len(fds) != 3:
        raise ConnectionError("incomplete request")
    (size,) = struct.unpack("!Q", header)
    payload = b""
    while len(payload) < size:
        chunk = conn.recv(size - len(payload))
        if not chunk:
            raise ConnectionError("incomplete request")
        payload += chunk
    return json.loads(payload), fds


def _handle(conn: socket.socket) -> int:
    """One call: fork the stage's process, tell the caller its pid, then its exit status; if the
    caller goes away first, stop the stage (its whole process group)."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    if not _same_user(conn):
        return 1
    try:
        request, fds = _receive(conn)
    except (OSError, ValueError):
        return 1
    child = os.fork()
    if child == 0:
        conn.close()
        return _become_stage(request, fds)
    for fd in fds:
        os.close(fd)
    conn.sendall(f"pid {child}\n".encode())
    while True:
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            with contextlib.suppress(OSError):  # killed by a signal: 128 + its number, as a shell says
                conn.sendall(f"exit {128 - code if code < 0 else code}\n".encode())
            return 0
        ready, _, _ = select.select([conn], [], [], 0.2)
        if ready and not conn.recv(1):  # the caller is gone (killed): so is its stage
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child, signal.SIGTERM)
            os.waitpid(child, 0)
            return 0


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _become_stage(request: dict, fds: list[int]) -> int:
    """In the forked child: take the caller's process context, then run the stage module."""
    import random
    import runpy
    import traceback

    os.setpgid(0, 0)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"] | {SERVED_ENV: "1"})
    line_buffered = bool(os.environ.get("PYTHONUNBUFFERED")) or os.isatty(1)
    # new stream objects over the caller's descriptors, buffered as a new process would buffer them
    sys.stdin = sys.__stdin__ = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = sys.__stdout__ = open(1, "w", closefd=False, buffering=1 if line_buffered else -1)  # noqa: SIM115
    sys.stderr = sys.__stderr__ = open(2, "w", closefd=False, buffering=1, errors="backslashreplace")  # noqa: SIM115
    for name in list(sys.modules):  # the project's code comes from the caller's tree
        if name.split(".")[0] in OWN_PACKAGES:
            del sys.modules[name]
    sys.path[0] = request["cwd"]
    sys.argv = ["-m", *request["args"]]
    random.seed()  # a fresh process would not share the server's random state
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as done:
        return _exit_status(done.code)
    except KeyboardInterrupt:
        return 130
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def main(argv: Sequence[str]) -> int:
    if len(argv) == 2 and argv[0] == "--serve":
        return serve(argv[1])
    usage = "usage: python -m onnxship.pipeline.warm --serve KEY (started by `python -m stages`)"
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
