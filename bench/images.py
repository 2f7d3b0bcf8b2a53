"""Image pipeline figures: 24 MP JPEG preparation against a naive baseline, pass-through
of a compliant JPEG, thumbnails, peak RSS for a 29 MB PNG, peak RSS and time of the
worst input of each format (issue 9) and the ingest handler's import time. Targets
(SPEC section 5 work item): 24 MP <= 200 ms median and >= 2x the naive baseline;
pass-through <= 5 ms; 29 MB PNG peak RSS <= 400 MB; worst cases below the ingest
function's memory; handler import <= 1 s. Run: ``python -m bench images``.
"""

from __future__ import annotations

import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps

from bench import bench_import, handler_env, report
from fakes import imagefactory
from imagesearch import images

ROOT = Path(__file__).resolve().parent.parent
HANDLER_MODULE = "imagesearch.handlers.ingest"


@dataclass
class Timing:
    wall: list[float] = field(default_factory=list)  # ms
    cpu: list[float] = field(default_factory=list)  # ms of process CPU (all threads)

    def measure(self, fn: Callable[[], object]) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        self.cpu.append((time.process_time() - cpu) * 1000)
        self.wall.append((time.perf_counter() - wall) * 1000)

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    def __str__(self) -> str:
        return (
            f"{self.median:7.1f} ms  (min {min(self.wall):.1f}, "
            f"CPU {statistics.median(self.cpu):.1f})"
        )


def timed(fns: list[Callable[[], object]], runs: int, warmup: int = 1) -> list[Timing]:
    """Median wall time of each of ``fns``, run interleaved so that they share
    whatever else the machine is doing."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    timings = [Timing() for _ in fns]
    for _ in range(runs):
        for fn, timing in zip(fns, timings, strict=True):
            timing.measure(fn)
    return timings


def naive_prepare(data: bytes) -> bytes:
    """What most samples do: decode everything, then resize with Lanczos."""
    with Image.open(io.BytesIO(data)) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    scale = min(1.0, images.MAX_SIDE / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resized = image.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    resized.save(buffer, format="JPEG", quality=images.MODEL_JPEG_QUALITY)
    return buffer.getvalue()


def bench_24mp(runs: int = 11) -> None:
    data = imagefactory.jpeg_24mp()
    prepared = images.prepare_image(data)
    model = Image.open(io.BytesIO(prepared.model_bytes))
    print(
        f"24 MP JPEG: 6000x4000, {len(data) / 1e6:.1f} MB -> {model.size[0]}x{model.size[1]} "
        f"JPEG {len(prepared.model_bytes) / 1e6:.2f} MB; median of {runs} runs"
    )
    ours, naive = timed([lambda: images.prepare_image(data), lambda: naive_prepare(data)], runs)
    report(f"prepare_image (draft + {images.MODEL_RESAMPLE.name.lower()})", str(ours), "<= 200 ms")
    report("naive full decode + Lanczos", str(naive))
    report("speed-up over naive (medians)", f"{naive.median / ours.median:7.2f} x", ">= 2 x")
    thumb, both = timed(
        [lambda: images.make_thumbnail(data), lambda: images.prepare_with_thumbnail(data)], runs
    )
    report("make_thumbnail (256 px)", str(thumb))
    report("prepare_with_thumbnail (both, one decode)", str(both))


def bench_pass_through(runs: int = 51) -> None:
    data = imagefactory.compliant_jpeg()
    prepared = images.prepare_image(data)
    assert prepared.passed_through and prepared.model_bytes is data
    print(f"compliant JPEG: 1920x1080, {len(data) / 1e6:.2f} MB; median of {runs} runs")
    (passed,) = timed([lambda: images.prepare_image(data)], runs, warmup=3)
    report("prepare_image (header only)", f"{passed.median:7.3f} ms", "<= 5 ms")
    (thumb,) = timed([lambda: images.make_thumbnail(data)], 15)
    report("make_thumbnail (draft decode)", str(thumb))


_RSS_SCRIPT = """
import resource, sys, time
from imagesearch import images
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
data = open(sys.argv[1], "rb").read()
started = time.perf_counter()
if sys.argv[2] == "both":
    prepared, thumbnail = images.prepare_with_thumbnail(data)
else:
    prepared = images.prepare_image(data)
    thumbnail = images.make_thumbnail(data)
elapsed = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(baseline, peak, elapsed, len(prepared.model_bytes), len(thumbnail))
"""

# Linux carries ru_maxrss over fork + exec: a child of this (large) benchmark process
# would report our peak, not its own. A small launcher in between starts clean.
_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def bench_rss() -> None:
    data = imagefactory.big_png_29mb()
    print(f"29 MB PNG: 3200x3000 RGB noise, {len(data) / 1e6:.1f} MB; fresh subprocess each")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.png"
        path.write_bytes(data)
        for mode, label in (
            ("separate", "prepare_image + make_thumbnail"),
            ("both", "prepare_with_thumbnail"),
        ):
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    _LAUNCHER,
                    sys.executable,
                    "-c",
                    _RSS_SCRIPT,
                    str(path),
                    mode,
                ],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            ).stdout.split()
            baseline_mb, peak_mb = int(out[0]) / 1024, int(out[1]) / 1024  # ru_maxrss is KiB
            elapsed_ms = float(out[2]) * 1000
            report(
                f"peak RSS, {label}",
                f"{peak_mb:7.1f} MB  (after imports {baseline_mb:.1f} MB; {elapsed_ms:.0f} ms)",
                "<= 400 MB",
            )


_WORST_CASE_SCRIPT = """
import resource, sys, time
import imagesearch.handlers.ingest  # the ingest function's runtime
from imagesearch import images
from imagesearch.errors import ImageRejected
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
data = open(sys.argv[1], "rb").read()
started = time.perf_counter()
try:
    images.prepare_with_thumbnail(data)
    outcome = "indexed"
except ImageRejected:
    outcome = "rejected"
elapsed = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(baseline, peak, elapsed, outcome)
"""


_CHILD = (sys.executable, "-c", _LAUNCHER, sys.executable, "-c")


def bench_worst_cases() -> None:
    """Issue 9: the input of each format that takes the most memory to decode (the
    largest within the decode budget and pixel cap, and two over it that must be turned
    away from the header), through prepare_with_thumbnail in a fresh interpreter."""
    from stacks.ingest import MEMORY_MB  # the ingest function's memory

    print(
        f"worst cases: decode budget {images.MAX_DECODE_BYTES / 2**20:.0f} MiB, "
        f"fresh subprocess each, handler runtime imported first"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for case in imagefactory.MEMORY_WORST_CASES:
            path = Path(tmp) / case.id
            path.write_bytes(case.factory())
            out = subprocess.run(
                [*_CHILD, _WORST_CASE_SCRIPT, str(path)],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
                env=handler_env(),
            ).stdout.split()
            baseline_mb, peak_mb = int(out[0]) / 1024, int(out[1]) / 1024
            report(
                f"worst case {case.id}: {case.description}, {path.stat().st_size:,} B",
                f"peak RSS {peak_mb:6.0f} MB, {float(out[2]) * 1000:6.0f} ms, {out[3]}"
                f" (after imports {baseline_mb:.0f} MB)",
                f"< {MEMORY_MB} MB",
                width=78,
            )


def main() -> None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{os.cpu_count()} CPUs, load average {load:.2f} (wall-clock figures; "
        "other work on the machine inflates them)"
    )
    bench_24mp()
    bench_pass_through()
    bench_rss()
    bench_worst_cases()
    bench_import(HANDLER_MODULE)


if __name__ == "__main__":
    main()
