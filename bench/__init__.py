"""Benchmarks that print their figures (``make bench`` / ``python -m bench [module...]``)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

from imagesearch import resources as r

ROOT = Path(__file__).resolve().parent.parent


def handler_env() -> dict[str, str]:
    """What a function has in Lambda, so its handler module imports outside it."""
    env = dict(os.environ)
    env.update(
        {
            r.ENV_BUCKET: "bench-bucket",
            r.ENV_TABLE: "bench-table",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "POWERTOOLS_SERVICE_NAME": "imagesearch-bench",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    return env


def import_ms(module: str, runs: int) -> list[float] | str:
    """Import time of ``module`` in fresh interpreters (ms), or the failure's last line."""
    script = (
        "import time; started = time.perf_counter(); "
        f"import {module}; print(time.perf_counter() - started)"
    )
    samples = []
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=handler_env(),
        )
        if result.returncode != 0:
            return "FAILED: " + result.stderr.strip().splitlines()[-1]
        samples.append(float(result.stdout.split()[-1]) * 1000)
    return samples


def report(label: str, value: str, target: str = "", *, width: int = 52) -> None:
    suffix = f"   (target {target})" if target else ""
    print(f"  {label:<{width}} {value}{suffix}", flush=True)


def bench_import(module: str, runs: int = 5) -> None:
    """Print the median import time of a handler module (target <= 1 s)."""
    samples = import_ms(module, runs)
    print(f"import time in a fresh interpreter, median of {runs}")
    if isinstance(samples, str):
        report(f"import {module}", samples)
        return
    report(
        f"import {module}",
        f"{statistics.median(samples):7.1f} ms  (max {max(samples):.1f})",
        "<= 1000 ms",
    )
