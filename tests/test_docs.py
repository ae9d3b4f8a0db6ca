"""The README and the manual (docs/) stay true to the repository: the site builds with
`mkdocs build --strict` (broken links, anchors and nav fail), every repository path, `python -m`
module and `make` target they name exists, the README fits a screen with a two-command quick
start, and neither tells the project's history."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
TEXTS = [README, *PAGES]

# a token naming something in the repository: a path under one of these folders, or a root file
FOLDERS = (
    "onnxship",
    "stages",
    "serving",
    "tests",
    "tools",
    "conf",
    "reports",
    "docs",
    ".dvc",
    ".ci",
    "pipeline",
)
ROOT_FILES = {
    "dvc.yaml",
    "dvc.lock",
    "params.yaml",
    "Makefile",
    "pyproject.toml",
    "constraints.txt",
    "mkdocs.yml",
    "README.md",
    ".gitignore",
    ".dvcignore",
}
FOLDER_ALTERNATIVES = "|".join(re.escape(f) for f in FOLDERS)
PATH_TOKEN = re.compile(
    rf"(?<![\w./-])((?:{FOLDER_ALTERNATIVES})/[\w./<>{{}}*…-]*|[\w.-]+\.(?:yaml|yml|lock|toml|txt|md))"
)
PLACEHOLDER = re.compile(r"[<>{}*…]|\.\.\.")
FENCE = re.compile(r"^(```|~~~)[^\n]*\n(.*?)^\1\s*$", re.M | re.S)
INLINE = re.compile(r"(`+)(.+?)\1", re.S)
HISTORY = re.compile(
    r"\bissues?\s*#?\d+|\b(?:was|were) tried\b|\bthe next issue\b|\bno longer\b",
    re.I,
)


def code_of(text: str) -> list[str]:
    """Every code span and fenced block of a Markdown text (where commands and paths are named)."""
    blocks = [m.group(2) for m in FENCE.finditer(text)]
    prose = FENCE.sub("", text)
    return blocks + [m.group(2) for m in INLINE.finditer(prose)]


def named_paths(text: str) -> set[str]:
    found = set()
    for code in code_of(text):
        for token in PATH_TOKEN.findall(code):
            token = token.rstrip(".,:;)")
            if PLACEHOLDER.search(token):
                continue  # `reports/benchmark/<model>.json`, `reports/plots/*.png`: a pattern, not a file
            if "/" in token or token in ROOT_FILES:
                found.add(token)
    return found


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, re.M))


def test_the_manual_builds_strictly(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "index.html").is_file()


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    assert PAGES, "docs/ holds no page"
    assert [p.name for p in PAGES if p.name not in nav] == []


@pytest.mark.parametrize("doc", TEXTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_named_paths_exist(doc):
    missing = sorted(p for p in named_paths(doc.read_text()) if not (ROOT / p.rstrip("/")).exists())
    assert missing == [], f"{doc.name} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", TEXTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_named_modules_exist(doc):
    missing = []
    for code in code_of(doc.read_text()):
        for module in re.findall(r"python -m ([A-Za-z_][\w.]*)", code):
            if module.split(".")[0] not in {"onnxship", "stages", "serving", "tools"}:
                continue
            base = ROOT.joinpath(*module.split("."))
            if not (base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()):
                missing.append(module)
    assert missing == [], f"{doc.name} names modules that do not exist: {missing}"


@pytest.mark.parametrize("doc", TEXTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_named_make_targets_exist(doc):
    targets = make_targets()
    named = set()
    for code in code_of(doc.read_text()):
        named |= set(re.findall(r"(?:^|[\s;&|(])make\s+([a-z][\w-]*)", code, re.M))
    assert sorted(named - targets) == [], f"{doc.name} names make targets the Makefile lacks"


def test_readme_fits_a_screen_with_a_two_command_quick_start():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    section = text.split("\n## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the Quick start has no bash block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    assert [c for c in commands if c] == ["make run", "make test"]


def test_readme_keeps_the_generated_timings_markers():
    text = README.read_text()
    begin = "<!-- BEGIN generated: timings (python -m tools.timings) -->"
    end = "<!-- END generated: timings -->"
    assert text.count(begin) == 1 and text.count(end) == 1
    assert text.index(begin) < text.index(end)
    assert "\n## How long it takes\n" in text[: text.index(begin)]


@pytest.mark.parametrize("doc", TEXTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_history(doc):
    found = [m.group(0) for m in HISTORY.finditer(doc.read_text())]
    assert found == [], f"{doc.name} tells history instead of what the product does: {found}"
