"""Set-up: `make local` installs only local mode's set and passes its env vars through."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What local mode never needs (issue 11.5): CDK, linters, test tools, browsers.
NOT_FOR_LOCAL = (
    "aws-cdk-lib",
    "constructs",
    "cdk-nag",
    "cfn-lint",
    "mypy",
    "ruff",
    "pytest",
    "playwright",
    "moto[server]",
)
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def requirement_names(path: Path, seen: set[Path] | None = None) -> set[str]:
    """Package names of a requirements file and the files it includes with -r."""
    seen = seen if seen is not None else set()
    seen.add(path)
    names: set[str] = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            included = (path.parent / line[3:].strip()).resolve()
            if included not in seen:
                names |= requirement_names(included, seen)
        elif line:
            names.add(re.split(r"==|>=|<=|~=", line)[0].strip().lower())
    return names


def test_local_set_has_no_dev_tools_and_dev_includes_it() -> None:
    local = requirement_names(ROOT / "requirements-local.txt")
    dev = requirement_names(ROOT / "requirements-dev.txt")

    assert not [name for name in local if name in NOT_FOR_LOCAL], local
    assert {"boto3", "numpy", "pillow", "requests", "tqdm"} <= local
    assert any(name.startswith("moto[") for name in local)
    assert local <= dev


@needs_make
def test_make_local_installs_only_the_local_set() -> None:
    # -B: as on a fresh clone, every recipe would run; -n: print, do not run them.
    output = subprocess.run(
        ["make", "-n", "-B", "local"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout

    assert "requirements-local.txt" in output
    assert "imagesearch local" in output
    for absent in ("requirements-dev.txt", "npm", "--quiet", "playwright", "requirements-clip"):
        assert absent not in output


@needs_make
def test_make_local_embedder_clip_adds_the_clip_extra() -> None:
    output = subprocess.run(
        ["make", "-n", "-B", "local", "EMBEDDER=clip"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    assert "requirements-clip.txt" in output
    assert "requirements-dev.txt" not in output


@needs_make
def test_make_local_passes_the_contract_env_vars_through(tmp_path: Path) -> None:
    # Given a venv whose set-up is done and whose imagesearch prints its environment
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    script = venv / "bin" / "imagesearch"
    script.write_text('#!/bin/sh\necho "args=$*"\nenv\n')
    script.chmod(0o755)
    (venv / ".local-installed").touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    env.update({"PORT": "9001", "STATE_DIR": "/tmp/state"})
    for name in ("DROPBOX", "EMBEDDER", "VECTOR_STORE", "MODEL_ID", "EMBEDDING_DIMENSION"):
        env.pop(name, None)

    # When make local runs with some from the environment, some on the command line
    output = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "local",
            f"VENV={venv}",
            "DROPBOX=/tmp/in",
            "EMBEDDER=bedrock",
            "MODEL_ID=amazon.titan-embed-image-v1",
            "EMBEDDING_DIMENSION=384",
            "VECTOR_STORE=dynamodb",
            "LOCAL_ARGS=--host 0.0.0.0",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    # Then imagesearch local sees every one of them, and the extra arguments
    lines = set(output.splitlines())
    assert "args=local --host 0.0.0.0" in lines
    for pair in (
        "PORT=9001",
        "STATE_DIR=/tmp/state",
        "DROPBOX=/tmp/in",
        "EMBEDDER=bedrock",
        "MODEL_ID=amazon.titan-embed-image-v1",
        "EMBEDDING_DIMENSION=384",
        "VECTOR_STORE=dynamodb",
    ):
        assert pair in lines
