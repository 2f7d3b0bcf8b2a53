"""The maintenance function's snapshot build fits its memory up to the largest
``embeddedMaxImages``: a fresh process (bench/embedded.py's, against bench/_fakeaws.py
in a process of its own) loads a snapshot, catches up 1000 changes and writes a new
snapshot at two sizes; the peak RSS (VmHWM) per image and the fixed part measured there
must be covered, with margin, by stacks/sizing.py's formula, which sizes the function.

The full-size run (250k x 1024, ~90 s with building its 1 GB snapshot) is in
``make bench`` ("maintenance snapshot build 250k x 1024"); these sizes keep the suite
fast (docs/decisions.md, 40)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from imagesearch import resources as r
from stacks import sizing
from stacks.config import AppConfig
from stacks.maintenance import memory_mb

SIZES = (40_000, 80_000)
DIMENSION = 1024
MB = 2**20
# The formula must exceed what was measured by this much (measurement noise, dict
# resizes between the sizes measured and the largest).
MARGIN = 1.1

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="VmHWM is Linux's")


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict[str, Any]]:
    from bench.embedded import maintenance_build

    cache = tmp_path_factory.mktemp("maintenance-memory")
    return {count: maintenance_build(count, cache) for count in SIZES}


def _line(measured: dict[int, dict[str, Any]]) -> tuple[float, float]:
    """(bytes per image, MB at zero images) through the two measurements."""
    (small, first), (large, second) = sorted(measured.items())
    per_image = (second["rss_mb"] - first["rss_mb"]) * MB / (large - small)
    return per_image, first["rss_mb"] - per_image * small / MB


def test_the_snapshot_build_fits_the_function_at_the_sizes_measured(
    measured: dict[int, dict[str, Any]],
) -> None:
    for count, result in measured.items():
        config = AppConfig.from_context({"embeddedMaxImages": count})
        assert result["rss_mb"] < memory_mb(config), (count, result)


def test_the_sizing_formula_covers_the_measured_build_up_to_the_largest_capacity(
    measured: dict[int, dict[str, Any]],
) -> None:
    per_image, fixed_mb = _line(measured)
    print(f"measured: {per_image:.0f} bytes per image + {fixed_mb:.0f} MB")  # -s shows it
    formula_per_image = sizing.MATRIX_HEADROOM * DIMENSION * 4 + sizing.PER_IMAGE_OVERHEAD_BYTES
    formula_fixed_mb = sizing.BASE_OVERHEAD_MB + sizing.SNAPSHOT_WRITE_MB
    assert per_image * MARGIN < formula_per_image, (per_image, formula_per_image)
    assert fixed_mb * MARGIN < formula_fixed_mb, (fixed_mb, formula_fixed_mb)
    # So at every capacity up to the limit the function, as synthesized, has room
    for max_images in (250_000, 500_000, r.EMBEDDED_MAX_IMAGES_LIMIT):
        predicted_mb = fixed_mb + per_image * max_images / MB
        config = AppConfig.from_context({"embeddedMaxImages": max_images})
        assert predicted_mb * MARGIN < memory_mb(config) <= sizing.LAMBDA_MAX_MEMORY_MB
