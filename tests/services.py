"""Real services for end-to-end tests: a throwaway PostgreSQL cluster (Debian's postgresql) and an
MLflow tracking server on it. `make test` installs postgresql when it is missing
(tests/system_packages.sh)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tools.wrk_load import free_port


def eventually(check, seconds: float = 30, every: float = 0.2):
    """Call `check` until it returns something truthy or `seconds` pass; its last result."""
    deadline = time.time() + seconds
    while True:
        result = check()
        if result or time.time() > deadline:
            return result
        time.sleep(every)


def wait_for(url: str, predicate, seconds: float = 30) -> httpx.Response:
    """GET `url` until `predicate(response)` holds or time runs out; the last response."""

    def fetch() -> httpx.Response | None:
        r = httpx.get(url)
        return r if predicate(r) else None

    return eventually(fetch, seconds) or httpx.get(url)


def postgres_bin() -> Path | None:
    """Debian keeps the server binaries out of PATH, under /usr/lib/postgresql/<major>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent  # a symlink into the versioned bin folder
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(candidates[-1]).parent if candidates else None


class Postgres:
    """initdb + pg_ctl on a free loopback port, in a temp dir; as the `postgres` user when run as
    root (PostgreSQL refuses to run as root)."""

    user = "onnxship"

    def __init__(self) -> None:
        bindir = postgres_bin()
        if bindir is None:
            raise RuntimeError(
                "PostgreSQL server binaries not found: install Debian's postgresql "
                "(bash tests/system_packages.sh, run by `make test`)"
            )
        self.bin = bindir
        self.port = free_port()
        # not under pytest's tmp dirs: their 0700 parents would lock the postgres user out
        self.dir = Path(tempfile.mkdtemp(prefix="onnxship-pg-"))
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stderr.strip()[-1000:]}")

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/mlflow"

    def start(self) -> Postgres:
        if self.as_root:
            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        self._run("initdb", "-D", str(data), "-U", self.user, "--auth=trust", "-E", "UTF8")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(self.dir / "log"), "-w", "start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "mlflow")
        return self

    def query(self, sql: str) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url) as conn, conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class S3Server:
    """moto's server mode: an S3-compatible object store on a loopback port, with one bucket.
    Clients find it through MLFLOW_S3_ENDPOINT_URL and dummy AWS credentials (`env`)."""

    def __init__(self, log: Path, bucket: str = "onnxship-artifacts") -> None:
        self.log, self.bucket, self.port = log, bucket, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return {
            "MLFLOW_S3_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "onnxship-test",
            "AWS_SECRET_ACCESS_KEY": "onnxship-test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="onnxship-test",
            aws_secret_access_key="onnxship-test",
        )

    def start(self, timeout: float = 60) -> S3Server:
        with open(self.log, "a") as out:
            command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                httpx.get(self.url)
                self.client().create_bucket(Bucket=self.bucket)
                return self
            except httpx.TransportError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"moto server did not start:\n{self.log.read_text()[-3000:]}")

    def keys(self) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return [o["Key"] for o in listed]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


class MlflowServer:
    """`mlflow server` with the given backend store, proxying artifacts from a local folder; or,
    with `s3_root` (s3://bucket/prefix), handing clients S3 artifact URIs they use directly
    (`--no-serve-artifacts`), as a production setup with object storage does."""

    def __init__(self, backend_uri: str, artifacts: Path, log: Path, s3_root: str | None = None) -> None:
        self.backend_uri, self.artifacts, self.log, self.s3_root = backend_uri, artifacts, log, s3_root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> MlflowServer:
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mlflow",
                    "server",
                    "--backend-store-uri",
                    self.backend_uri,
                    *(
                        ["--default-artifact-root", self.s3_root, "--no-serve-artifacts"]
                        if self.s3_root
                        else ["--artifacts-destination", str(self.artifacts)]
                    ),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stop() ends the server and its workers together
                # MLflow 3 starts job consumers (Huey processes, ~5 s of CPU each) for its GenAI
                # jobs; a model registry needs none
                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            )
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.url}/health").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


def start_server(
    registry: str,
    tmp_path_factory,
    models: list[str],
    wait_ready: bool = True,
    workers: int = 1,
    **settings: str,
) -> dict:
    """A real `python -m serving.http.serve` process over `registry`; `settings` are extra
    ONNXSHIP_SERVING_<KEY> values (strings, as the environment carries them)."""
    import json

    from tests.conftest import ROOT

    port = free_port()
    env = {
        **os.environ,
        "ONNXSHIP_SERVING_CONFIG": str(ROOT / "conf/serving/default.yaml"),
        "ONNXSHIP_SERVING_TRACKING_URI": registry,
        "ONNXSHIP_SERVING_MODELS": json.dumps(models),
        "ONNXSHIP_SERVING_DEFAULT_MODEL": models[0],
        "ONNXSHIP_SERVING_POLL_INTERVAL_S": "0.5",
        "ONNXSHIP_SERVING_MAX_BATCH_ROWS": "50",
        "ONNXSHIP_SERVING_MAX_BODY_BYTES": "200000",
        "ONNXSHIP_SERVING_CACHE_DIR": str(tmp_path_factory.mktemp("cache")),
    }
    env.update({f"ONNXSHIP_SERVING_{k.upper()}": str(v) for k, v in settings.items()})
    env.pop("MLFLOW_TRACKING_URI", None)
    log = tmp_path_factory.mktemp("log") / "server.log"
    command = [sys.executable, "-m", "serving.http.serve", "--port", str(port), "--workers", str(workers)]
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    wanted = "/health/ready" if wait_ready else "/health/live"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if httpx.get(f"{base}{wanted}").status_code == 200:
                return {"url": base, "proc": proc, "log": log, "uri": registry, "port": port}
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"server not up in 90 s:\n{log.read_text()[-3000:]}")


def stop(started: dict, timeout: float = 15) -> None:
    started["proc"].terminate()
    started["proc"].wait(timeout=timeout)


class Haproxy:
    """Debian's HAProxy in the foreground, balancing round-robin over `backends` (base URLs) and
    taking a backend out while its /health/ready is not 200, as a production balancer would."""

    def __init__(self, backends: list[str], folder: Path) -> None:
        self.backends, self.folder, self.port = backends, folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def config(self) -> str:
        servers = "\n".join(
            f"    server r{i} {url.removeprefix('http://')} check inter 300ms fall 2 rise 2"
            for i, url in enumerate(self.backends)
        )
        return f"""global
    maxconn 2000
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 2
    option redispatch
    retry-on conn-failure empty-response response-timeout
frontend serving
    bind 127.0.0.1:{self.port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /health/ready
    http-check expect status 200
{servers}
"""

    def start(self, timeout: float = 30) -> Haproxy:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(binary).exists():
            raise RuntimeError("haproxy not found: install Debian's haproxy (bash tests/system_packages.sh)")
        config = self.folder / "haproxy.cfg"
        config.write_text(self.config())
        log = open(self.folder / "haproxy.log", "a")  # noqa: SIM115 - kept open for the process's life
        self.proc = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
        ready = eventually(lambda: self._answers(), seconds=timeout)
        if not ready:
            self.stop()
            raise RuntimeError(f"haproxy did not start:\n{(self.folder / 'haproxy.log').read_text()[-2000:]}")
        return self

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
