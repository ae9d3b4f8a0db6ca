"""Which project files each stage can run: the static import closure of stages/<name>.py.

Every import counts, at any depth (function-level imports included); importing a plugin package
(onnxship.families, onnxship.passes) counts all its modules, since the registry imports them all.
dvc.yaml must list each of these files (or a folder holding it) as a dependency of the stage, or
an edit to it would leave DVC's cache stale:

    python -m tools.stage_deps           # print each stage's closure
    python -m tools.stage_deps --check   # exit 1 naming every file dvc.yaml misses (or lists needlessly)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("onnxship", "stages", "serving", "tools")
PLUGIN_PACKAGES = ("onnxship.families", "onnxship.passes")


def module_file(module: str) -> Path | None:
    """onnxship.graph -> onnxship/graph.py, onnxship.families -> onnxship/families/__init__.py."""
    base = ROOT / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Project modules named by any import statement in the file (and their parent packages)."""
    found: set[str] = set()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names = [base] + [f"{base}.{a.name}" for a in node.names]  # `from pkg import module`
        for name in names:
            if name.split(".")[0] in PACKAGES:
                parts = name.split(".")
                found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {m for m in found if module_file(m)}


def closure(script: Path) -> set[Path]:
    """Every project file `script` can import, directly or not."""
    seen: set[Path] = set()
    todo = [script]
    if (script.parent / "__init__.py").is_file():  # `python -m stages.x` imports stages/ first
        todo.append(script.parent / "__init__.py")
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path):
            todo.append(module_file(module))
            if module in PLUGIN_PACKAGES:
                todo += sorted(module_file(module).parent.rglob("*.py"))
    return {p.relative_to(ROOT) for p in seen}


def stage_closures(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, set[Path]]:
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    out = {}
    for name in stages:
        script = ROOT / "stages" / f"{name}.py"
        out[name] = closure(script)
    return out


def _declared(dvc_yaml: Path) -> dict[str, tuple[set[Path], list[Path]]]:
    """stage -> (its import closure, the deps dvc.yaml declares for it)."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    return {
        name: (files, [Path(d) for d in stages[name].get("do", stages[name]).get("deps", [])])
        for name, files in stage_closures(dvc_yaml).items()
    }


def _covered(path: Path, by: Path) -> bool:
    return path == by or by in path.parents


def missing_deps(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, list[str]]:
    """stage -> project files it can import that dvc.yaml does not list as deps."""
    out = {}
    for name, (files, deps) in _declared(dvc_yaml).items():
        gaps = sorted(str(f) for f in files if not any(_covered(f, d) for d in deps))
        if gaps:
            out[name] = gaps
    return out


def extra_deps(dvc_yaml: Path = ROOT / "dvc.yaml") -> dict[str, list[str]]:
    """stage -> code deps in dvc.yaml that its closure no longer needs (needless re-runs)."""
    out = {}
    for name, (files, deps) in _declared(dvc_yaml).items():
        code = [d for d in deps if d.parts[0] in PACKAGES]
        unused = [str(d) for d in code if not any(_covered(f, d) for f in files)]
        if unused:
            out[name] = unused
    return out


def main(argv: list[str]) -> int:
    if "--check" in argv:
        gaps, unused = missing_deps(), extra_deps()
        for stage, files in gaps.items():
            print(f"dvc.yaml: stage '{stage}' is missing deps: {', '.join(files)}", file=sys.stderr)
        for stage, files in unused.items():
            print(
                f"dvc.yaml: stage '{stage}' lists deps it never imports: {', '.join(files)}", file=sys.stderr
            )
        return 1 if gaps or unused else 0
    for stage, files in stage_closures().items():
        print(f"{stage}:")
        for f in sorted(files):
            print(f"  - {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
