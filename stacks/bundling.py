"""Lambda asset built on this machine with pip: no Docker (aws/aws-cdk#18290).

One asset serves both functions: the ``imagesearch`` package (without its dev-only
subpackages) plus the pinned runtime dependencies as manylinux aarch64 / CPython 3.13
wheels, which is what the python3.13 arm64 Lambda runtime (Amazon Linux 2023) runs.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from imagesearch import resources as r

LAMBDAS_DIR = Path(__file__).resolve().parent.parent / "lambdas"
PACKAGE_NAME = "imagesearch"
REQUIREMENTS_FILE = "requirements.txt"

# manylinux_2_28 as well as 2014: current numpy, Pillow and pillow-heif publish aarch64
# wheels tagged 2_28 only, and with 2014 alone pip silently falls back to old releases.
PIP_TARGET_ARGS: tuple[str, ...] = (
    "--platform",
    "manylinux2014_aarch64",
    "--platform",
    "manylinux_2_28_aarch64",
    "--implementation",
    "cp",
    "--python-version",
    "3.13",
    "--only-binary=:all:",
    "--no-compile",
)
_SKIPPED_NAMES = ("__pycache__", "*.pyc", "*.pyo")


class BundlingError(RuntimeError):
    """pip could not build the Lambda asset."""


def package_files(lambdas_dir: Path = LAMBDAS_DIR) -> Iterator[Path]:
    """Files of the runtime package that go into the asset, in a stable order."""
    root = lambdas_dir / PACKAGE_NAME
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if not path.is_file() or _skipped(relative):
            continue
        yield path


def _skipped(relative: Path) -> bool:
    parts = relative.parts
    if len(parts) > 1 and parts[0] in r.NOT_IN_LAMBDA_ASSET:
        return True
    return any(part == "__pycache__" for part in parts) or relative.suffix in (".pyc", ".pyo")


def asset_hash(lambdas_dir: Path = LAMBDAS_DIR) -> str:
    """Content hash of what decides the asset: pip arguments, requirements, package source.

    A custom hash (instead of fingerprinting the whole ``lambdas/`` directory) ignores
    caches and egg-info, and lets ``cdk synth`` reuse an asset it already bundled.
    """
    digest = hashlib.sha256()
    digest.update("\0".join(PIP_TARGET_ARGS).encode())
    digest.update(b"\0requirements\0")
    digest.update((lambdas_dir / REQUIREMENTS_FILE).read_bytes())
    for path in package_files(lambdas_dir):
        digest.update(b"\0" + path.relative_to(lambdas_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def pip_command(output_dir: str, lambdas_dir: Path = LAMBDAS_DIR) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--requirement",
        str(lambdas_dir / REQUIREMENTS_FILE),
        "--target",
        output_dir,
        *PIP_TARGET_ARGS,
        "--disable-pip-version-check",
        "--quiet",
    ]


@jsii.implements(ILocalBundling)
class LocalPipBundling:
    """``ILocalBundling`` that installs the wheels with this interpreter's pip."""

    def __init__(self, lambdas_dir: Path = LAMBDAS_DIR) -> None:
        self._lambdas_dir = lambdas_dir

    # jsii passes the BundlingOptions struct as keyword arguments; none are needed here.
    def try_bundle(self, output_dir: str, *args: Any, **kwargs: Any) -> bool:
        bundle(output_dir, self._lambdas_dir)
        return True


def bundle(output_dir: str, lambdas_dir: Path = LAMBDAS_DIR) -> None:
    """Install the requirements and copy the runtime package into ``output_dir``."""
    command = pip_command(output_dir, lambdas_dir)
    done = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise BundlingError(
            f"pip failed with exit code {done.returncode}: {' '.join(command)}\n"
            f"{done.stdout}{done.stderr}"
        )
    target = Path(output_dir) / PACKAGE_NAME
    shutil.copytree(
        lambdas_dir / PACKAGE_NAME,
        target,
        ignore=_ignore_for(lambdas_dir / PACKAGE_NAME),
        dirs_exist_ok=True,
    )


def _ignore_for(root: Path) -> Any:
    skip_names = shutil.ignore_patterns(*_SKIPPED_NAMES)

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = set(skip_names(directory, names))
        if Path(directory) == root:
            skipped.update(n for n in names if n in r.NOT_IN_LAMBDA_ASSET)
        return skipped

    return ignore


def lambda_code(lambdas_dir: Path = LAMBDAS_DIR) -> lambda_.Code:
    """The one asset both functions run (bundled locally at synth)."""
    return lambda_.Code.from_asset(
        str(lambdas_dir),
        asset_hash=asset_hash(lambdas_dir),
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(
            image=lambda_.Runtime.PYTHON_3_13.bundling_image,
            local=LocalPipBundling(lambdas_dir),
        ),
    )
