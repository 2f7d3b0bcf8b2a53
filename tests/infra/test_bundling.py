"""The Lambda asset: what goes in, its hash, and one real bundling with pip (no Docker)."""

from __future__ import annotations

import importlib.util
import json
import re
from email.parser import Parser
from pathlib import Path

import pytest

from imagesearch import resources as r
from stacks import bundling
from tests.infra.conftest import ROOT, synthesize

LAMBDA_UNZIPPED_LIMIT = 262_144_000  # 250 MB: function + layers, unzipped
ELF_MACHINE_AARCH64 = 183


@pytest.fixture
def lambdas_dir(tmp_path: Path) -> Path:
    """A miniature lambdas/ tree with dev-only subpackages and caches."""
    root = tmp_path / "lambdas"
    files = {
        "requirements.txt": "",
        "imagesearch/__init__.py": "",
        "imagesearch/handlers/__init__.py": "",
        "imagesearch/handlers/api.py": "HANDLER = 1\n",
        "imagesearch/handlers/__pycache__/api.cpython-311.pyc": "x",
        "imagesearch/__pycache__/__init__.cpython-311.pyc": "x",
        "imagesearch/cli/__init__.py": "",
        "imagesearch/cli/main.py": "",
        "imagesearch/local/web/index.html": "<html></html>",
        "imagesearch/embedders/__init__.py": "",
        "imagesearch/embedders/clip.py": "import torch\n",
        "imagesearch/py.typed": "",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _relative(paths: list[Path], root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in paths}


def test_package_files_leave_out_dev_subpackages_and_caches(lambdas_dir: Path) -> None:
    files = _relative(list(bundling.package_files(lambdas_dir)), lambdas_dir / "imagesearch")
    assert files == {
        "__init__.py",
        "embedders/__init__.py",
        "handlers/__init__.py",
        "handlers/api.py",
        "py.typed",
    }
    assert set(r.NOT_IN_LAMBDA_ASSET) == {"cli", "local"}


def test_asset_hash_follows_sources_and_requirements_only(lambdas_dir: Path) -> None:
    # Given the hash of the tree
    first = bundling.asset_hash(lambdas_dir)

    # When only caches and dev-only code change, then the hash stays
    (lambdas_dir / "imagesearch/__pycache__/new.cpython-313.pyc").write_text("y")
    (lambdas_dir / "imagesearch/cli/main.py").write_text("print('changed')\n")
    assert bundling.asset_hash(lambdas_dir) == first

    # When the runtime source changes, then the hash changes
    (lambdas_dir / "imagesearch/handlers/api.py").write_text("HANDLER = 2\n")
    second = bundling.asset_hash(lambdas_dir)
    assert second != first

    # When the requirements change, then the hash changes
    (lambdas_dir / "requirements.txt").write_text("numpy==2.4.6\n")
    assert bundling.asset_hash(lambdas_dir) not in (first, second)


def test_pip_targets_aarch64_cpython_311_wheels_only() -> None:
    command = bundling.pip_command("/out")
    assert command[1:4] == ["-m", "pip", "install"]
    joined = " ".join(command)
    for expected in (
        "--platform manylinux2014_aarch64",
        "--platform manylinux_2_28_aarch64",
        "--implementation cp",
        "--python-version 3.11",
        "--only-binary=:all:",
        "--no-compile",
        "--target /out",
    ):
        assert expected in joined


def test_bundle_copies_the_package_without_dev_parts(lambdas_dir: Path, tmp_path: Path) -> None:
    # Given an empty requirements file (pip has nothing to fetch)
    out = tmp_path / "out"

    # When
    bundling.bundle(str(out), lambdas_dir)

    # Then
    copied = _relative([p for p in out.rglob("*") if p.is_file()], out)
    assert copied == {
        "imagesearch/__init__.py",
        "imagesearch/__pycache__/__init__.cpython-311.pyc",
        "imagesearch/embedders/__init__.py",
        "imagesearch/embedders/__pycache__/__init__.cpython-311.pyc",
        "imagesearch/handlers/__init__.py",
        "imagesearch/handlers/__pycache__/__init__.cpython-311.pyc",
        "imagesearch/handlers/api.py",
        "imagesearch/handlers/__pycache__/api.cpython-311.pyc",
        "imagesearch/py.typed",
    }
    # compiled here, not copied from the source tree's cache
    assert (out / "imagesearch/handlers/__pycache__/api.cpython-311.pyc").read_bytes() != b"x"


def test_bundle_prunes_tests_stubs_and_scripts(lambdas_dir: Path, tmp_path: Path) -> None:
    # Given an installed tree as pip leaves it
    out = tmp_path / "out"
    for name in (
        "numpy/__init__.py",
        "numpy/tests/test_a.py",
        "numpy/linalg/tests/t.py",
        "numpy/__init__.pyi",
        "bin/f2py",
        "tests/__init__.py",
    ):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("")

    # When
    bundling.bundle(str(out), lambdas_dir)

    # Then
    left = _relative([p for p in out.rglob("*") if p.is_file() and p.suffix != ".pyc"], out)
    assert "numpy/__init__.py" in left
    assert (
        not {"numpy/tests/test_a.py", "numpy/linalg/tests/t.py", "numpy/__init__.pyi", "bin/f2py"}
        & left
    )
    assert "tests/__init__.py" in left  # a top-level package is never pruned


def test_bundle_refuses_another_python(
    lambdas_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundling, "RUNTIME_PYTHON", (3, 99))
    with pytest.raises(bundling.BundlingError, match=r"Python 3\.99"):
        bundling.bundle(str(tmp_path / "out"), lambdas_dir)


def test_bundle_raises_with_pips_output(lambdas_dir: Path, tmp_path: Path) -> None:
    (lambdas_dir / "requirements.txt").write_text("not a valid requirement!!\n")
    with pytest.raises(bundling.BundlingError, match="Invalid requirement"):
        bundling.bundle(str(tmp_path / "out"), lambdas_dir)


# --- the real thing ------------------------------------------------------------


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "lambdas" / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[_canonical(name.split("[")[0])] = version.strip()
    return pins


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed(asset: Path) -> dict[str, tuple[str, list[str]]]:
    """Distribution name -> (version, wheel tags) from the dist-info directories."""
    found = {}
    for dist_info in asset.glob("*.dist-info"):
        metadata = Parser().parsestr((dist_info / "METADATA").read_text())
        wheel = Parser().parsestr((dist_info / "WHEEL").read_text())
        found[_canonical(metadata["Name"])] = (metadata["Version"], wheel.get_all("Tag") or [])
    return found


def _elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", path
    return int.from_bytes(header[18:20], "little")


@pytest.mark.bundling
def test_real_bundle_for_lambda_arm64_python311(tmp_path: Path) -> None:
    # Given the real app, synthesized with bundling on (the local bundler, no Docker)
    app = synthesize(tmp_path)
    functions = [
        f
        for f in app.json["Resources"].values()
        if f["Type"] == "AWS::Lambda::Function"
        and f["Properties"].get("Handler") in (r.INGEST_HANDLER, r.API_HANDLER)
    ]
    keys = {f["Properties"]["Code"]["S3Key"] for f in functions}
    assert len(functions) == 2 and len(keys) == 1, "one asset shared by both functions"
    manifest = json.loads((tmp_path / f"{app.stack.stack_name}.assets.json").read_text())
    source = manifest["files"][keys.pop().removesuffix(".zip")]["source"]
    assert source["packaging"] == "zip"
    asset = tmp_path / source["path"]

    # Then the runtime package is there, without dev-only parts and caches
    package = asset / "imagesearch"
    assert (package / "__init__.py").is_file() and (package / "resources.py").is_file()
    for left_out in r.NOT_IN_LAMBDA_ASSET:
        assert not (package / left_out).exists()
    assert not (package / "embedders" / "clip.py").exists()  # local mode only

    # And every module ships its bytecode for the runtime's Python, hash-based and
    # unchecked (the read-only task root cannot take what a cold start would compile)
    modules = [p for p in asset.rglob("*.py")]
    assert len(modules) > 500
    for module in modules:
        compiled = module.parent / "__pycache__" / f"{module.stem}.cpython-311.pyc"
        assert compiled.is_file(), module
    sample = (package / "__pycache__" / "resources.cpython-311.pyc").read_bytes()
    assert sample[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(sample[4:8], "little") == 0b01  # hash-based, not checked
    assert not [p for p in asset.rglob("*.pyc") if "cpython-311" not in p.name]

    # And what the runtime never imports is left out: test suites, stubs, scripts
    assert not (asset / "bin").exists()
    assert not list(asset.rglob("*.pyi"))
    assert not (asset / "numpy" / "tests").exists()
    assert not list((asset / "numpy").rglob("tests"))

    # And the dependencies are importable packages...
    for module in ("numpy", "PIL", "pillow_heif", "pydantic_core", "aws_lambda_powertools"):
        assert (asset / module / "__init__.py").is_file(), module

    # ...at exactly the pinned versions, built for CPython 3.11 on aarch64
    installed = _installed(asset)
    for name, version in _pins().items():
        assert installed[name][0] == version, f"{name}: {installed[name][0]} != pin {version}"
    for name in ("numpy", "pillow", "pillow-heif", "pydantic-core"):
        tags = installed[name][1]
        assert tags and all("aarch64" in t and t.startswith("cp311-") for t in tags), (name, tags)
    for name, (_, tags) in installed.items():
        assert all("x86_64" not in t and "win" not in t and "macos" not in t for t in tags), name

    shared_objects = list(asset.rglob("*.so")) + list(asset.rglob("*.so.*"))
    extension_modules = [p for p in shared_objects if ".cpython-" in p.name]
    assert len(extension_modules) > 10
    assert all("cpython-311-aarch64-linux-gnu" in p.name for p in extension_modules)
    assert {_elf_machine(p) for p in shared_objects} == {ELF_MACHINE_AARCH64}

    # And the unzipped size fits Lambda's limit
    size = sum(p.stat().st_size for p in asset.rglob("*") if p.is_file())
    print(f"\nLambda asset: {size / 1e6:.1f} MB unzipped, {len(shared_objects)} shared objects")
    print(json.dumps({name: version for name, (version, _) in sorted(installed.items())}))
    assert size < LAMBDA_UNZIPPED_LIMIT
