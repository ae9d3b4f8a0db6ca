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


def test_uv_installs_under_the_users_pip_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """uv does not read pip's configuration: tools/install.py hands pip's settings over, a PIP_*
    variable over a config file, as pip itself ranks them."""
    import sys

    from tools.install import pip_settings, uv_options

    conf = tmp_path / "pip.conf"
    conf.write_text(
        "[global]\nextra-index-url = https://a.example/simple https://b.example/simple\n"
        "find-links = https://wheels.example/file\n"
    )
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    monkeypatch.setenv("PIP_FIND_LINKS", "https://env.example/links")
    settings = pip_settings(sys.executable)
    assert settings["extra-index-url"] == ["https://a.example/simple", "https://b.example/simple"]
    assert settings["find-links"] == ["https://env.example/links"]  # the variable wins
    options = uv_options(settings)
    assert options[:2] == ["--index-strategy", "unsafe-best-match"]  # pip's resolution across indexes
    assert " ".join(options).count("--extra-index-url https://") == 2
    assert "--find-links https://env.example/links" in " ".join(options)


def test_make_install_uses_uv_with_pip_as_the_fallback():
    recipe = (ROOT / "Makefile").read_text().split("/.installed:")[1].split("\n\n")[0]
    assert "pip install -q uv -c constraints.txt" in recipe and "-m tools.install" in recipe
    assert '"--compile-bytecode"' in (ROOT / "tools" / "install.py").read_text()  # imports from .pyc, as pip
    assert "uv==" in (ROOT / "constraints.txt").read_text()
