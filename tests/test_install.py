"""A new machine installs from the committed inputs alone: versions, never files of one machine."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tools.install_inputs import install_inputs, local_lines

# the line `make constraints` wrote when torch came from a downloaded wheel
OLD_TORCH_LINE = (
    "torch @ file:///tmp/dl/torch-2.13.0%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl#sha256=6746dbcbeb526eb61"
)


def test_install_inputs_name_no_file_of_this_machine():
    checked = {p.name for p in install_inputs(ROOT)}
    assert {"constraints.txt", "pyproject.toml", "Makefile", "run"} <= checked
    assert [where for p in install_inputs(ROOT) for where in local_lines(p)] == []


@pytest.mark.parametrize(
    "line",
    [
        OLD_TORCH_LINE,
        "onnx @ /root/wheels/onnx-1.18.0-cp311-cp311-linux_x86_64.whl",
        "\tpip install -c /work/main/constraints.txt .",
        "--find-links /opt/wheels",
    ],
)
def test_a_local_file_or_path_is_named(tmp_path: Path, line: str):
    bad = tmp_path / "constraints.txt"
    bad.write_text(f"numpy==2.3.1\n{line}\n")
    assert local_lines(bad) == ["constraints.txt:2"]


def test_constraints_pin_versions_only():
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9._-]+(\[[a-z0-9,_-]+\])?==[A-Za-z0-9.+!_-]+", line), line
    # PyTorch's CPU build: the version says so, and no path names where it came from
    assert "torch==2.13.0+cpu" in (ROOT / "constraints.txt").read_text().splitlines()


def test_make_constraints_writes_versions_for_packages_installed_from_files():
    # `pip freeze` writes `name @ file://...` for a package installed from a file; `pip list
    # --format=freeze` writes `name==version` for every package
    recipe = (ROOT / "Makefile").read_text().split("\nconstraints:")[1].split("\n\n")[0]
    assert "list --format=freeze" in recipe and " freeze " not in recipe.replace("list --format=freeze", "")
