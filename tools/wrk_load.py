"""Load-client helpers for the serving benchmarks: wrk runs parsed into figures, free ports,
waiting for a server to be ready, stopping it with its children."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

import httpx

LATENCY_LINE = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$")
UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrk(url: str, body: str, connections: int, duration: float) -> dict:
    """One bounded wrk run: req/s, latency percentiles (ms), and non-2xx answers."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
    seconds = f"{max(1, round(duration))}s"
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}", "--latency", "-s", script.name, url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=True).stdout
    os.unlink(script.name)
    result: dict = {"connections": connections}
    for line in out.splitlines():
        if m := LATENCY_LINE.match(line):
            result[f"p{m.group(1)}_ms"] = float(m.group(2)) * UNIT_MS[m.group(3)]
        elif line.startswith("Requests/sec:"):
            result["req_s"] = float(line.split()[1])
        elif "Non-2xx or 3xx responses" in line:
            result["non_2xx"] = int(line.split()[-1])
        elif m := re.match(r"^\s+(\d+) requests in", line):
            result["requests"] = int(m.group(1))
    result.setdefault("non_2xx", 0)
    return result


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready in {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
