"""The deployment files stay in step with the code: the image copies every project module the two
serving processes import, and the manifests parse and start the real entry point. (No image is
built here: the development machine has no Docker daemon.)"""

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
        "import serving.registry.promote, serving.registry.probe"
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
            assert c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert re.search(r'CMD \["python", "-m", "serving.http.serve"', (DEPLOY / "Dockerfile").read_text())
