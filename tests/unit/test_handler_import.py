"""What importing the search handler loads: the cold start's init phase pays for it,
so what the first request does not need must not be there (the speed itself is
bench/embedded.py's "search handler import from the built asset")."""

from __future__ import annotations

import os
import subprocess
import sys

from imagesearch import resources as r


def _modules_after_import(module: str, names: tuple[str, ...]) -> list[str]:
    code = f"import sys, {module}\nprint(','.join(m for m in {names!r} if m in sys.modules))\n"
    env = {
        **os.environ,
        r.ENV_BUCKET: "bucket",
        r.ENV_TABLE: "table",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return [name for name in result.stdout.strip().split(",") if name]


def test_search_handler_import_leaves_boto3_and_pillow_to_first_use() -> None:
    # boto3 (with s3transfer and its resource layer) loads when the first client is
    # built; Pillow on the first image query. botocore stays: X-Ray patches it at import.
    loaded = _modules_after_import(
        "imagesearch.handlers.api", ("boto3", "s3transfer", "PIL", "moto", "imagesearch.local")
    )

    assert loaded == []


def test_ingest_handler_import_leaves_boto3_to_first_use() -> None:
    loaded = _modules_after_import("imagesearch.handlers.ingest", ("boto3", "s3transfer"))

    assert loaded == []
