"""Which project files each stage can run: the static import closure of stages/<name>.py.

Every import counts, at any depth (function-level imports included); importing a plugin package
(onnxship.families, onnxship.passes) counts all its modules, since the registry imports them all.

DVC learns of code edits through one small file per stage, `reports/code/<stage>.txt`: the sha256
and path of every file in the stage's closure, written by dvc.yaml's first stage (`code`, which
depends on the code folders and runs this tool). A stage depends on its own file, so it re-runs
exactly when a file it can import changes, and the lock holds one entry per stage instead of the
whole list (DVC re-reads and re-writes a stage's lock around every stage: its size is paid each time).

    python -m tools.stage_deps                      # print each stage's closure
    python -m tools.stage_deps --write reports/code # write the per-stage code files (stage `code`)
    python -m tools.stage_deps --check              # exit 1 naming each stage whose deps are wrong
"""

from __future__ import annotations

import ast
import hashlib
import sys
from pathlib import Path

from onnxship.pipeline.dvc_files import all_stages
from tools.stage_params import PARAMS_STAGE, READS, params_file

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("onnxship", "stages", "serving", "tools")
PLUGIN_PACKAGES = ("onnxship.families", "onnxship.passes")
CODE_STAGE = "code"  # dvc.yaml's first stage: writes CODE_DIR from the code folders
CODE_DIR = Path("reports/code")
# dvc.yaml's stages that run a tool, not a script in stages/ (stage `params`: tools/stage_params.py)
TOOL_STAGES = (CODE_STAGE, PARAMS_STAGE)


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
    for entry in ("__init__.py", "__main__.py"):  # `python -m stages x` runs both before stages/x.py
        if (script.parent / entry).is_file():
            todo.append(script.parent / entry)
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


def stage_closures(root: Path = ROOT) -> dict[str, set[Path]]:
    """Each stage of the pipeline at `root` (onnxship/pipeline/dvc_files.py) -> its script's closure."""
    stages = all_stages(root)
    return {name: closure(ROOT / "stages" / f"{name}.py") for name in stages if name not in TOOL_STAGES}


def code_file(stage: str) -> Path:
    """The file dvc.yaml names as the stage's code dependency."""
    return CODE_DIR / f"{stage}.txt"


def digest_text(files: set[Path], root: Path = ROOT) -> str:
    """'sha256  path' per file, sorted by path: what the stage runs, as DVC compares it."""
    return "".join(
        f"{hashlib.sha256((root / f).read_bytes()).hexdigest()}  {f.as_posix()}\n" for f in sorted(files)
    )


def write_code_files(folder: Path, root: Path = ROOT) -> list[Path]:
    """One code file per stage in `folder`; a file is rewritten only when its text changes."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, files in stage_closures(root).items():
        path, text = folder / f"{name}.txt", digest_text(files)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written


def dep_errors(root: Path = ROOT) -> dict[str, str]:
    """stage -> what is wrong with its code or params deps: each stage names its own code file
    and params file, and no code path or params key of its own (the files cover them); `code`
    depends on every folder a closure reaches."""
    stages = all_stages(root)
    out = {}
    for name in stage_closures(root):
        body = stages[name].get("do", stages[name])
        deps = [Path(d) for d in body.get("deps", [])]
        own_params = params_file(name, "${key}")
        if code_file(name) not in deps:
            out[name] = f"needs {code_file(name)} in its deps"
        elif name not in READS:
            out[name] = "has no entry in tools/stage_params.py READS (the params it reads)"
        elif own_params not in deps:
            out[name] = f"needs {own_params} in its deps"
        elif any(d.parts[0] in PACKAGES for d in deps):
            out[name] = "lists code paths: its code file covers them"
        elif body.get("params"):
            out[name] = f"lists params: {own_params} covers them (tools/stage_params.py READS)"
    watched = [Path(d) for d in stages.get(CODE_STAGE, {}).get("deps", [])]
    reached = set().union(*stage_closures(root).values())
    unwatched = sorted(str(f) for f in reached if not any(_covered(f, d) for d in watched))
    if unwatched:
        out[CODE_STAGE] = f"does not depend on: {', '.join(unwatched)}"
    return out


def _covered(path: Path, by: Path) -> bool:
    return path == by or by in path.parents


def main(argv: list[str]) -> int:
    if "--check" in argv:
        errors = dep_errors()
        for stage, what in errors.items():
            print(f"pipeline: stage '{stage}' {what}", file=sys.stderr)
        return 1 if errors else 0
    if "--write" in argv:
        folder = Path(argv[argv.index("--write") + 1]) if len(argv) > argv.index("--write") + 1 else CODE_DIR
        for path in write_code_files(folder):
            print(f"wrote {path}")
        return 0
    for stage, files in stage_closures().items():
        print(f"{stage}:")
        for f in sorted(files):
            print(f"  - {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
