"""A container probe: `python -S -m serving.health_check ready` exits 0 when the server on
localhost answers /health/ready with 200 (`live`: /health/live), else 1.

Exec probes, not httpGet, in the manifests: `podman kube play` turns an httpGet probe into a curl
command run inside the container, and the image has no curl; an exec probe runs the same way under
Kubernetes and podman. Standard library only and `-S` (no site-packages): ~20 ms a probe.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

PATHS = {"ready": "/health/ready", "live": "/health/live"}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in PATHS:
        print("usage: python -S -m serving.health_check ready|live", file=sys.stderr)
        return 2
    port = os.environ.get("ONNXSHIP_SERVING_PORT", "8000")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{PATHS[argv[0]]}", timeout=2) as answer:
            return 0 if answer.status == 200 else 1
    except (urllib.error.URLError, OSError) as err:
        print(f"{argv[0]}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
