"""Lambda asset built on this machine with pip: no Docker (aws/aws-cdk#18290).

One asset serves both functions: the ``imagesearch`` package (without its dev-only
subpackages) plus the pinned runtime dependencies as manylinux aarch64 / CPython 3.11
wheels, which is what the python3.11 arm64 Lambda runtime runs.

The asset ships bytecode: Lambda's task root is read-only, so without ``__pycache__``
every cold start compiles each imported module again (~770 of them). Bytecode is
specific to the Python minor version, so it is compiled by the interpreter running the
build, which must be the runtime's version (``RUNTIME_PYTHON``); the hash-based
(unchecked) mode does not depend on file times, which the zip does not keep. What the
runtime never imports (test suites, type stubs, console scripts, the local-only CLIP
embedder) is left out.
"""

from __future__ import annotations

import compileall
import hashlib
import py_compile
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
# The Lambda runtime's Python (stacks.functions.RUNTIME is python3.11): wheels are
# chosen for it and the bytecode is compiled by it.
RUNTIME_PYTHON = (3, 11)

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
    f"{RUNTIME_PYTHON[0]}.{RUNTIME_PYTHON[1]}",
    "--only-binary=:all:",
    "--no-compile",
)
_SKIPPED_NAMES = ("__pycache__", "*.pyc", "*.pyo")
# Runtime package modules only local mode imports (torch / sentence-transformers).
LOCAL_ONLY_MODULES: tuple[str, ...] = ("embedders/clip.py",)
# Directory names inside installed distributions that the runtime never imports.
_PRUNED_DIRS = ("tests", "testing_tests")


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
    if relative.as_posix() in LOCAL_ONLY_MODULES:
        return True
    return any(part == "__pycache__" for part in parts) or relative.suffix in (".pyc", ".pyo")


def asset_hash(lambdas_dir: Path = LAMBDAS_DIR) -> str:
    """Content hash of what decides the asset: pip arguments, requirements, package source.

    A custom hash (instead of fingerprinting the whole ``lambdas/`` directory) ignores
    caches and egg-info, and lets ``cdk synth`` reuse an asset it already bundled.
    """
    digest = hashlib.sha256()
    digest.update("\0".join(PIP_TARGET_ARGS).encode())
    digest.update(b"\0bytecode-unchecked-hash\0")
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
    """Install the requirements, copy the runtime package into ``output_dir``, prune
    what the runtime never imports and compile the rest to bytecode."""
    if sys.version_info[:2] != RUNTIME_PYTHON:
        raise BundlingError(
            f"the asset's bytecode must be compiled by Python {RUNTIME_PYTHON[0]}."
            f"{RUNTIME_PYTHON[1]} (the Lambda runtime's); this is "
            f"{sys.version_info[0]}.{sys.version_info[1]}"
        )
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
    prune(Path(output_dir))
    compile_bytecode(Path(output_dir))


def prune(output_dir: Path) -> None:
    """Remove test suites, type stubs and console scripts of the installed wheels
    (the package's own files were filtered on copy)."""
    shutil.rmtree(output_dir / "bin", ignore_errors=True)
    for stub in list(output_dir.rglob("*.pyi")):
        stub.unlink()
    for name in _PRUNED_DIRS:
        for directory in sorted(output_dir.rglob(name), reverse=True):
            parent = directory.parent
            # Only a distribution's test suite (numpy/tests, numpy/*/tests), never a
            # top-level package that happens to be called "tests".
            if directory.is_dir() and parent != output_dir:
                shutil.rmtree(directory)


def compile_bytecode(output_dir: Path) -> None:
    """``__pycache__/*.cpython-3XX.pyc`` beside every module, hash-based and unchecked:
    the runtime loads them without comparing source times (zip files do not keep them)."""
    ok = compileall.compile_dir(
        str(output_dir),
        quiet=2,
        workers=0,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    if not ok:
        raise BundlingError(f"compiling the asset's modules to bytecode failed in {output_dir}")


def _ignore_for(root: Path) -> Any:
    skip_names = shutil.ignore_patterns(*_SKIPPED_NAMES)

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = set(skip_names(directory, names))
        if Path(directory) == root:
            skipped.update(n for n in names if n in r.NOT_IN_LAMBDA_ASSET)
        for module in LOCAL_ONLY_MODULES:
            folder, _, name = module.rpartition("/")
            if Path(directory) == root / folder and name in names:
                skipped.add(name)
        return skipped

    return ignore


def lambda_code(lambdas_dir: Path = LAMBDAS_DIR) -> lambda_.Code:
    """The one asset both functions run (bundled locally at synth)."""
    return lambda_.Code.from_asset(
        str(lambdas_dir),
        asset_hash=asset_hash(lambdas_dir),
        asset_hash_type=AssetHashType.CUSTOM,
        bundling=BundlingOptions(
            image=lambda_.Runtime.PYTHON_3_11.bundling_image,
            local=LocalPipBundling(lambdas_dir),
        ),
    )
