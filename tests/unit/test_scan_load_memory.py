"""A load by Scan (a search instance without a usable snapshot, the maintenance
function's first snapshot) copies each vector into the matrix as its item is consumed
and hands the items' memory back: it peaks near the items' size, not items plus matrix.
Measured as the peak resident memory (VmHWM) of a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imagesearch.index import embedded
from imagesearch.index.embedded import build_matrix_from_items

ROOT = Path(__file__).resolve().parents[2]

# Scan segments read by threads into lists (as EmbeddedIndex._load_scan does), then the
# matrix built from them.
_CHILD = """
import json, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import numpy as np
from imagesearch.index.embedded import _drain, build_matrix_from_items

def peak():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")

count, dimension, segments = int(sys.argv[1]), int(sys.argv[2]), 4

def read(segment):
    rng = np.random.default_rng(segment)
    return [
        {
            "image_id": {"S": f"{n:032x}"},
            "key": {"S": f"uploads/f/{n:07d}.jpg"},
            "content_type": {"S": "image/jpeg"},
            "revision": {"S": f"r{n}"},
            "vector": {"B": rng.standard_normal(dimension, dtype=np.float32).tobytes()},
        }
        for n in range(segment, count, segments)
    ]

with ThreadPoolExecutor(segments) as pool:
    parts = list(pool.map(read, range(segments)))
items_peak = peak()
try:
    index = build_matrix_from_items(
        _drain(parts), dimension, {}, count=sum(map(len, parts))
    )
except TypeError:  # before the count argument: the same load
    index = build_matrix_from_items(_drain(parts), dimension, {})
assert len(index) == count
print(json.dumps({"added": peak() - items_peak, "matrix_bytes": count * dimension * 4}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="VmHWM is Linux's")
def test_a_scan_load_does_not_hold_the_items_and_the_matrix_at_once() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lambdas")}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, "40000", "1024"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    # Holding both would add the whole matrix (176 MB here) to the items' peak
    assert measured["added"] < 0.25 * measured["matrix_bytes"], measured


def _items(count: int, dimension: int = 4) -> list[dict[str, dict[str, object]]]:
    return [
        {
            "image_id": {"S": f"id-{n}"},
            "key": {"S": f"k{n}"},
            "vector": {"B": np.full(dimension, n + 1, dtype="<f4").tobytes()},
        }
        for n in range(count)
    ]


def test_more_items_than_announced_are_refused() -> None:
    with pytest.raises(ValueError, match="more than the 2 items announced"):
        build_matrix_from_items(iter(_items(3)), 4, count=2)


def test_fewer_items_than_announced_and_skipped_ones_leave_no_empty_row() -> None:
    items = _items(3)
    items.append({"image_id": {"S": "bad"}, "key": {"S": "k"}, "vector": {"B": b"short"}})
    index = build_matrix_from_items(iter(items), 4, count=10)
    assert len(index) == 3 and "bad" not in index


def test_without_glibc_the_load_still_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "_memory_release", lambda: None)  # another C library
    monkeypatch.setattr(embedded, "_RELEASE_EVERY_ROWS", 2)
    index = build_matrix_from_items(_items(9), 4)
    assert len(index) == 9
