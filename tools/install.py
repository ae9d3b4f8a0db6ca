"""Install the project into a virtual environment with uv, under the user's own pip settings.

uv installs the pinned set (constraints.txt) in seconds where pip takes minutes, but it does not
read pip's configuration. Users and machines say where packages come from in pip's terms (an
extra index for PyTorch's CPU build, a folder of wheels, a constraint file), so this reads pip's
effective settings (`pip config list`: config files and PIP_* variables) and hands each to uv as
the option of the same meaning. uv resolves like pip across indexes (unsafe-best-match): with
PyTorch's index added, packages it also carries still come at the pinned version from wherever
it lies. If uv fails, pip installs the same set (slower, same result).

    python -m tools.install VENV_PYTHON -e ".[dev]" -c constraints.txt
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

# pip setting -> uv option; each pip value may hold several space-separated entries
PIP_TO_UV = {
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraint",
    "no-index": "--no-index",
}


def pip_settings(python: str) -> dict[str, list[str]]:
    """pip's effective settings for the keys uv understands, from `pip config list` (files and
    PIP_* variables; a variable overrides a file, as pip does)."""
    done = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True)
    found: dict[str, tuple[int, list[str]]] = {}
    for line in done.stdout.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        section, _, name = key.rpartition(".")
        if name not in PIP_TO_UV or section not in ("global", "install", ":env:"):
            continue
        rank = 1 if section == ":env:" else 0
        if rank >= found.get(name, (-1, []))[0]:
            found[name] = (rank, shlex.split(value.strip().strip("'\"")) or [""])
    return {name: values for name, (_, values) in found.items()}


def uv_options(settings: dict[str, list[str]]) -> list[str]:
    options = ["--index-strategy", "unsafe-best-match"]
    for name, values in settings.items():
        if name == "no-index":
            if values and values[0].lower() in ("1", "true", "yes", "on"):
                options.append("--no-index")
            continue
        for value in values:
            if value:
                options += [PIP_TO_UV[name], value]
    return options


def main(argv: list[str]) -> int:
    python, *args = argv
    uv = os.path.join(os.path.dirname(python), "uv")
    # --compile-bytecode: as pip does. Without .pyc files every process imports from source (where
    # PYTHONDONTWRITEBYTECODE is set, for good): measured here, PyTorch + Chronos in 13 s instead of 6
    command = [uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", python]
    command += [*uv_options(pip_settings(python)), *args]
    if subprocess.run(command).returncode == 0:
        return 0
    print("uv could not install the pinned set; installing it with pip instead (slower)", file=sys.stderr)
    return subprocess.run([python, "-m", "pip", "install", "-q", *args]).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
