"""Install inputs must install on any machine: no line may name a file or path of one machine.

`pip freeze` writes `name @ file:///…/name.whl` for a package installed from a local wheel; a
constraints file holding such a line installs only where that file still lies. This check reads
every file that `make install` and CI read and names each offending line (file and line number).

python -m tools.install_inputs     # exit 1 and list offending lines
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a URL to a local file, a PEP 508 direct reference to a path, or an absolute path of a machine
LOCAL = re.compile(r"file://|@\s*/|(^|[\s=\"'])/(tmp|root|home|work|opt|var|usr|mnt|srv)/")


def install_inputs(root: Path = ROOT) -> list[Path]:
    """The files an install reads: constraints and requirements, pyproject, Makefile, CI scripts."""
    found = [*root.glob("constraints*.txt"), *root.glob("requirements*.txt")]
    found += [p for p in (root / "pyproject.toml", root / "Makefile") if p.exists()]
    found += sorted(p for p in (root / ".ci").glob("*") if p.is_file())
    return found


def local_lines(path: Path) -> list[str]:
    """'file:line' for each line of `path` that names a local file or an absolute path."""
    return [
        f"{path.name}:{n}"
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if not line.lstrip().startswith("#") and LOCAL.search(line)
    ]


def main() -> int:
    bad = [where for path in install_inputs() for where in local_lines(path)]
    for where in bad:
        print(f"{where}: names a file or path of one machine; pin `name==version` instead", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
