"""The README's routes into local mode work as written from a fresh clone (issue 17):
every ``make`` target, ``.venv/bin`` command and file they name exists, and the no-AWS
route installs a CPU build of torch as requirements-clip.txt asks."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")
# What `make local` puts in .venv: the interpreter and the editable install's script
# (the venv is made without pip when this Python's pip can drive it).
VENV_COMMANDS = {"python", "imagesearch"}


def _local_mode_section() -> str:
    start = README.index("## Try it")
    return README[start : README.index("\n## ", start + 1)]


def _make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w.-]*):(?!=)", MAKEFILE, re.MULTILINE))


def test_every_make_target_the_readme_names_exists() -> None:
    named = set(re.findall(r"\bmake ([a-z][\w-]*)", README))
    assert "local" in named
    assert named <= _make_targets()


def test_the_readme_runs_only_commands_a_fresh_venv_has() -> None:
    named = set(re.findall(r"\.venv/bin/([\w.-]+)", README))
    assert named <= VENV_COMMANDS, f"not in a fresh .venv: {named - VENV_COMMANDS}"
    script = re.search(r"^\[project\.scripts\]\s*\n(?:.*\n)*?imagesearch\s*=", _pyproject(), re.M)
    assert script is not None


def _pyproject() -> str:
    return (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_every_file_the_local_mode_section_names_exists() -> None:
    names = set(re.findall(r"\b(requirements[\w-]*\.txt|docs/[\w-]+\.md)\b", _local_mode_section()))
    assert "requirements-clip.txt" in names
    assert {name for name in names if not (ROOT / name).is_file()} == set()


def test_the_no_aws_route_is_a_make_command() -> None:
    section = _local_mode_section()
    assert "make local EMBEDDER=clip" in section
    assert "--embedder clip" in section


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_the_clip_route_installs_torch_as_a_cpu_build_first() -> None:
    # Every recipe `make local EMBEDDER=clip` would run, the local set taken as installed
    shown = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", "-o", ".venv/.local-installed", "local"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "EMBEDDER": "clip"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    lines = shown.splitlines()
    clip = next(i for i, line in enumerate(lines) if "-r requirements-clip.txt" in line)
    run = next(i for i, line in enumerate(lines) if line.startswith(".venv/bin/imagesearch local"))
    assert clip < run
    if platform.system() == "Linux":
        torch = next(i for i, line in enumerate(lines) if "torch==2.13.0" in line)
        assert torch < clip
        assert "--index-url https://download.pytorch.org/whl/cpu torch==2.13.0" in lines[torch]
    assert "torch==2.13.0\n" in (ROOT / "requirements-clip.txt").read_text(encoding="utf-8")
