"""`make image`: build the serving image (serving/deploy/Dockerfile) with podman (or docker), pinned
by constraints.txt, and write its size, build time and start time (run to /health/live) to
reports/image.json (the README's "How long it takes" renders it).

    python -m tools.image [--base IMAGE] [--tag onnxship-serving:latest] [--report reports/image.json]

The base: --base if given; else python:3.11-slim when the engine already has it; else, where
mmdebstrap is installed (no container registry needed), a Debian bookworm base made here once
(serving/deploy/base-image.sh); else python:3.11-slim pulled from a registry.

Podman here needs two settings its defaults get wrong on some hosts (../shared/RESEARCH.md,
"Containers"): a file-descriptor limit the host lets it set, and runc where crun refuses a hybrid
cgroup layout. `engine_env()` writes them to a containers.conf beside the build and names it in
CONTAINERS_CONF, for this build and for the tests that run the image.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "serving" / "deploy" / "Dockerfile"
TAG = "localhost/onnxship-serving:latest"
OFFICIAL_BASE = "python:3.11-slim"
LOCAL_BASE = "localhost/debian-base:bookworm"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")  # a re-signing proxy's CA reaches pip in the build
CONTAINERS_CONF = """\
# written by tools/image.py: limits this host lets podman set, and runc (crun 1.8 refuses
# hybrid cgroups)
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
{runtime}
"""


class NoEngine(RuntimeError):
    """Neither podman nor docker can run here."""


def engine() -> str:
    found = os.environ.get("CONTAINER_ENGINE") or shutil.which("podman") or shutil.which("docker")
    if not found:
        raise NoEngine("neither podman nor docker is installed (Debian: apt-get install podman runc)")
    return found


def engine_env(folder: Path = ROOT / ".image") -> dict[str, str]:
    """The environment podman runs in (CONTAINERS_CONF with the host's traps fixed)."""
    if "podman" not in Path(engine()).name:
        return dict(os.environ)
    folder.mkdir(exist_ok=True)
    conf = folder / "containers.conf"
    runtime = 'runtime = "runc"' if shutil.which("runc") else ""
    conf.write_text(CONTAINERS_CONF.format(runtime=runtime))
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def run(*args: str, env: dict[str, str], timeout: float = 900, check: bool = True) -> str:
    done = subprocess.run([engine(), *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        name = Path(engine()).name
        raise RuntimeError(f"{name} {args[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def has_image(name: str, env: dict[str, str]) -> bool:
    return bool(run("images", "-q", name, env=env, check=False).strip())


def choose_base(given: str | None, env: dict[str, str]) -> str:
    if given:
        return given
    if has_image(OFFICIAL_BASE, env):
        return OFFICIAL_BASE
    if shutil.which("mmdebstrap"):
        if not has_image(LOCAL_BASE, env):
            script = ROOT / "serving" / "deploy" / "base-image.sh"
            subprocess.run(["bash", str(script), LOCAL_BASE], env=env, check=True, timeout=900)
        return LOCAL_BASE
    return OFFICIAL_BASE


def build(tag: str = TAG, base: str | None = None, cache: bool = True) -> dict:
    """Build the image; its size, base and build time (`cache=False`: every layer built again, as
    on a machine that never built it; the base image apart)."""
    env = engine_env()
    chosen = choose_base(base, env)
    mounts = ["-v", f"{HOST_CA}:{HOST_CA}:ro"] if HOST_CA.is_file() and "podman" in engine() else []
    started = time.perf_counter()
    run(
        "build",
        "-f",
        str(DOCKERFILE),
        "--build-arg",
        f"BASE={chosen}",
        "--network",
        "host",
        *([] if cache else ["--no-cache"]),
        *mounts,
        "-t",
        tag,
        str(ROOT),
        env=env,
    )
    seconds = time.perf_counter() - started
    size = int(json.loads(run("image", "inspect", tag, env=env))[0]["Size"])
    return {
        "tag": tag,
        "base": chosen,
        "size_mb": round(size / 2**20, 1),
        "build_s": round(seconds, 1),
        "layer_cache": cache,
    }


def time_to_live(tag: str, timeout: float = 60) -> float:
    """Seconds from `run -d` to /health/live answering 200 (no registry needed for liveness), on
    a read-only root as the manifests run it."""
    import socket
    import urllib.request

    env = engine_env()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    name = f"onnxship-image-start-{port}"
    started = time.perf_counter()
    run("run", "-d", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
        "-v", "/var/cache/onnxship", "-v", "/var/lib/onnxship",
        "-e", "ONNXSHIP_SERVING_TRACKING_URI=http://127.0.0.1:9", tag,
        "python", "-m", "serving.http.serve", "--host", "127.0.0.1", "--port", str(port),
        env=env)  # fmt: skip
    try:
        while time.perf_counter() - started < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=1) as answer:
                    if answer.status == 200:
                        return round(time.perf_counter() - started, 2)
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"{tag} was not live in {timeout:.0f} s")
    finally:
        run("rm", "-f", "-v", name, env=env, check=False)  # -v: its anonymous volumes too


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help=f"base image (default: {OFFICIAL_BASE}, or one made here)")
    parser.add_argument("--tag", default=TAG)
    parser.add_argument("--report", default=str(ROOT / "reports" / "image.json"))
    parser.add_argument(
        "--no-cache", action="store_true", help="build every layer again (a first build's time)"
    )
    args = parser.parse_args(argv)
    try:
        built = build(args.tag, args.base, cache=not args.no_cache)
    except NoEngine as err:
        print(f"make image: {err}")
        return 2
    built["live_s"] = time_to_live(args.tag)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    built |= {"commit": commit.stdout.strip(), "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count()}
    Path(args.report).write_text(json.dumps(built, indent=2) + "\n")
    print(
        f"built {built['tag']} from {built['base']}: {built['size_mb']} MB in {built['build_s']} s; "
        f"/health/live {built['live_s']} s after run"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
