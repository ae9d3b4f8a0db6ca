"""The deployment files stay in step with the code: the image copies every project module the two
serving processes import, and the manifests parse and start the real entry point (the image is
built and run by tests/test_image.py)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.conftest import ROOT, modules_loaded_by

DEPLOY = ROOT / "serving" / "deploy"


def copied_paths() -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    paths = []
    for line in text.splitlines():
        if line.startswith("COPY "):
            paths += line.split()[1:-1]
    return paths


def test_the_image_copies_every_module_the_serving_processes_import():
    files = modules_loaded_by(
        "import serving.http.app, serving.http.serve, serving.registry.watcher, serving.registry.cache\n"
        "import serving.registry.promote, serving.registry.probe, serving.registry.download"
    ).values()
    packages = (str(ROOT / "onnxship") + "/", str(ROOT / "serving") + "/")
    ours = [str(Path(p).relative_to(ROOT)) for p in files if p and p.startswith(packages)]
    copied = copied_paths()
    missing = [p for p in ours if not any(p == c or p.startswith(c.rstrip("/") + "/") for c in copied)]
    assert missing == [], missing
    assert all((ROOT / c).exists() for c in copied), [c for c in copied if not (ROOT / c).exists()]


def test_the_manifests_run_the_serving_entry_point_with_probes():
    for name in ("deployment.yaml", "kserve-runtime.yaml"):
        docs = list(yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()))
        containers = [
            c
            for d in docs
            for c in (
                d["spec"].get("template", {}).get("spec", {}).get("containers")
                or d["spec"].get("containers")
                or []
            )
        ]
        assert containers, name
        for c in containers:
            assert c["args"][:3] == ["python", "-m", "serving.http.serve"], name
            probe = c["readinessProbe"]
            assert probe.get("httpGet", {}).get("path") == "/health/ready" or probe["exec"]["command"][
                -2:
            ] == [
                "serving.health_check",
                "ready",
            ], name
    assert re.search(r'CMD \["python", "-m", "serving.http.serve"', (DEPLOY / "Dockerfile").read_text())


# ---- issue 19, finding 12: the manifests' security and resources match the server's settings ----

# measured here with a small model (`serve --workers 2`: 769 MB for the tree at rest): the server
# ~115 MiB, its watcher ~230, multiprocessing's resource tracker ~12, and while versions download
# the forkserver with MLflow imported ~170; the probe child ~75 MiB before its calls
WORKER_BASE_MIB = 530
PROBE_BASE_MIB = 100


def pod_specs() -> list[tuple[str, dict, dict]]:
    """(file, pod-level spec, container) for every serving container of the manifests."""
    out = []
    for name in ("deployment.yaml", "kserve-runtime.yaml"):
        for doc in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()):
            pod = doc["spec"].get("template", {}).get("spec") or doc["spec"]
            for container in pod.get("containers") or []:
                out.append((name, pod, container))
    return out


def mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    for unit, factor in units.items():
        if quantity.endswith(unit):
            return float(quantity[: -len(unit)]) * factor
    return float(quantity) / (1 << 20)


def test_the_pods_run_locked_down():
    for name, pod, container in pod_specs():
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        own = container["securityContext"]
        assert own["allowPrivilegeEscalation"] is False and own["readOnlyRootFilesystem"] is True, name
        assert own["capabilities"] == {"drop": ["ALL"]}, name
        # with a read-only root, every path the processes write is a volume
        env = {e["name"]: e["value"] for e in container["env"]}
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {env["ONNXSHIP_SERVING_CACHE_DIR"], env["ONNXSHIP_SERVING_STATE_DIR"], "/tmp"} <= mounts, name
        assert container["livenessProbe"]["timeoutSeconds"] >= 1, name


def test_credentials_reach_the_watcher_only():
    """AWS keys sat in the HTTP server's environment; only the watcher needs them."""
    for name, pod, container in pod_specs():
        assert "envFrom" not in container, name
        env = {e["name"]: e.get("value", "") for e in container["env"]}
        assert not [k for k in env if k.startswith("AWS_") or "PASSWORD" in k or "TOKEN" in k], name
        assert "@" not in env["ONNXSHIP_SERVING_TRACKING_URI"], name
        env_file = Path(env["ONNXSHIP_SERVING_REGISTRY_ENV_FILE"])
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == str(env_file.parent))
        assert mount["readOnly"] is True, name
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["defaultMode"] == 0o400, name


def test_memory_limits_cover_the_workers_and_the_probe_within_their_call_budget():
    """`--workers 2` with one tiny model peaked at 782 MB of a 1 GiB limit; the KServe runtime had
    no limits. Each limit now covers every worker and one probe child, each allowed max_call_bytes."""
    from serving.settings import Settings

    for name, _, container in pod_specs():
        env = {e["name"]: e["value"] for e in container["env"]}
        call_mib = int(env.get("ONNXSHIP_SERVING_MAX_CALL_BYTES", Settings().max_call_bytes)) / (1 << 20)
        args = container["args"]
        workers = int(args[args.index("--workers") + 1]) if "--workers" in args else Settings().workers
        needed = workers * (WORKER_BASE_MIB + call_mib) + PROBE_BASE_MIB + call_mib
        limits = container["resources"]["limits"]
        assert mebibytes(limits["memory"]) >= needed, (name, limits, needed)
        assert "cpu" in limits, name
