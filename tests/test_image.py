"""The serving image, built and run (issue 22, item 3): `make image`'s build (tools/image.py), run
by the Deployment under `podman kube play` (non-root, read-only root) against an MLflow tracking
server on the host with tiny registered models, its probes passing; the manifests against the
Kubernetes API schema.

Needs podman (tests/system_packages.sh installs it); skipped, with the reason, where it cannot run.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests import tiny_versions
from tests.conftest import ROOT
from tests.registry_helpers import register_folder
from tests.services import MlflowServer, eventually, free_port
from tools import image

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("image")]
DEPLOYMENT = ROOT / "serving" / "deploy" / "k8s" / "deployment.yaml"
MODELS = ["tiny_reg", "toy_forecaster"]
CREDENTIALS = "MLFLOW_TRACKING_USERNAME=reader\n"


def podman(*args: str, env: dict, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run(["podman", *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {args[0]} failed: {done.stderr[-2000:]}")
    return done


@pytest.fixture(scope="module")
def engine_env() -> dict:
    if not shutil.which("podman"):
        pytest.skip("podman is not installed (tests/system_packages.sh installs it as root)")
    env = image.engine_env()
    info = subprocess.run(["podman", "info"], env=env, capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        pytest.skip(f"podman cannot run here: {info.stderr.strip().splitlines()[-1:]}")
    return env


@pytest.fixture(scope="module")
def built(engine_env) -> dict:
    return image.build()  # what `make image` does; layers are cached between runs


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A tracking server on the host (artifacts proxied over HTTP, as the container needs) with
    tiny_reg and toy_forecaster registered and aliased champion."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("image-registry")
    server = MlflowServer(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts", root / "mlflow.log").start()
    try:
        client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
        folders = tiny_versions.build_all(root / "versions")
        for name in MODELS:
            client.create_experiment(f"onnxship/{name}")  # artifacts on the server: mlflow-artifacts:/
            version = register_folder(server.url, name, folders[name])
            client.set_registered_model_alias(name, "champion", version)
        yield server
    finally:
        server.stop()


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def play_copy(tmp_path, registry_url: str, port: int) -> str:
    """The Deployment as shipped, with only what this host needs changed: one replica on the host
    network (no CNI here) on a free port, the tracking server on the host, the tiny models."""
    docs = list(yaml.safe_load_all(DEPLOYMENT.read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["replicas"] = 1
    spec = deployment["spec"]["template"]["spec"]
    spec["hostNetwork"] = True
    container = spec["containers"][0]
    container.pop("ports")
    container["args"][container["args"].index("--port") + 1] = str(port)
    values = {
        "ONNXSHIP_SERVING_TRACKING_URI": registry_url,
        "ONNXSHIP_SERVING_MODELS": json.dumps(MODELS),
        "MLFLOW_S3_ENDPOINT_URL": "",
    }
    container["env"] = [{**e, "value": values.get(e["name"], e["value"])} for e in container["env"]]
    container["env"].append({"name": "ONNXSHIP_SERVING_PORT", "value": str(port)})  # the probes' port
    path = tmp_path / "deployment.yaml"
    path.write_text(yaml.safe_dump_all([deployment]))
    return str(path)


def test_the_deployment_serves_under_podman_kube_play_non_root_read_only_with_its_probes(
    built, registry, engine_env, tmp_path
):
    """The image as the Deployment runs it (uid 10001, read-only root, every capability
    dropped): ready, a prediction, a forecast, telemetry off in every server process, the
    probes passing, the registry secret mounted."""
    port = free_port()
    secret = tmp_path / "secret.yaml"
    secret.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "onnxship-registry"},
                "data": {"registry.env": base64.b64encode(CREDENTIALS.encode()).decode()},
            }
        )
    )
    for leftover in (("secret", "rm"), ("volume", "rm", "-f")):  # kube play keeps the secret's volume
        podman(*leftover, "onnxship-registry", env=engine_env, check=False)
    podman("secret", "create", "onnxship-registry", str(secret), env=engine_env)
    manifest = play_copy(tmp_path, registry.url, port)
    started = time.perf_counter()
    try:
        podman("kube", "play", manifest, env=engine_env)
        containers = podman("ps", "--format", "{{.Names}}", env=engine_env).stdout.split()
        server = next(c for c in containers if c.startswith("onnxship-serving") and c.endswith("-server"))
        url = f"http://127.0.0.1:{port}"
        assert eventually(lambda: ready(url), 120), podman("logs", server, env=engine_env).stderr[-3000:]
        seconds = time.perf_counter() - started
        print(f"image {built['tag']}: {built['size_mb']} MB, ready {seconds:.1f} s after kube play")

        def run_in(*command: str) -> subprocess.CompletedProcess:
            return podman("exec", server, *command, env=engine_env, check=False)

        answer = httpx.post(
            f"{url}/predict", json={"model": "tiny_reg", "features": {"a": 1, "b": 2, "c": 3}}
        )
        assert answer.status_code == 200 and answer.json()["prediction"] == pytest.approx(14.0)
        body = {
            "model": "toy_forecaster",
            "context": [float(i % 5) for i in range(12)],
            "horizon": 3,
            "quantile_levels": [0.5],
            "past_covariates": {"temperature": [20.0] * 12},
            "future_covariates": {"temperature": [21.0, 22.0, 23.0]},
        }
        forecast = httpx.post(f"{url}/forecast", json=body)
        assert forecast.status_code == 200 and len(forecast.json()["quantiles"]["0.5"]) == 3, forecast.text
        # every server process (the HTTP server, its watcher) with both telemetry switches set
        serving = [
            pid
            for pid in run_in("sh", "-c", "ls /proc | grep -E '^[0-9]+$'").stdout.split()
            if "serving" in run_in("cat", f"/proc/{pid}/cmdline").stdout
        ]
        assert len(serving) >= 2
        for pid in serving:
            environ = run_in("cat", f"/proc/{pid}/environ").stdout
            assert "ORT_DISABLE_TELEMETRY=1" in environ and "MLFLOW_DISABLE_TELEMETRY=true" in environ
        users = podman("top", server, "user", env=engine_env).stdout.split()[1:]
        assert users and set(users) == {"onnxship"}, users  # the image's user, uid 10001
        assert run_in("id", "-u").stdout.strip() == "10001"
        write = run_in("touch", "/app/written")
        assert write.returncode != 0 and "Read-only file system" in write.stderr
        # the liveness probe as podman made it from the manifest, and the readiness probe's command
        assert podman("healthcheck", "run", server, env=engine_env, check=False).returncode == 0
        probe = run_in("python", "-S", "-m", "serving.health_check", "ready")
        assert probe.returncode == 0, probe.stderr
        # the registry credentials reach the container as the manifest's secret file (podman 4.3
        # writes a Secret's value still base64-encoded, where Kubernetes decodes it)
        env_file = run_in("cat", "/etc/onnxship/registry.env").stdout
        assert CREDENTIALS in (env_file, base64.b64decode(env_file).decode())
    finally:
        podman("kube", "down", manifest, env=engine_env, check=False)
        podman("secret", "rm", "onnxship-registry", env=engine_env, check=False)
        podman("volume", "rm", "-f", "onnxship-registry", env=engine_env, check=False)


def test_the_manifests_validate_against_the_kubernetes_api_schema():
    done = subprocess.run(
        [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict", str(DEPLOYMENT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        done.returncode == 0
        and "passed for resource deployment/onnxship-serving" in done.stdout + done.stderr
    ), done.stdout + done.stderr
