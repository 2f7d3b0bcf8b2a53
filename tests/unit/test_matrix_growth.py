"""A warm search instance's matrix grows without holding the old and the new one at
once: measured as the peak resident memory (VmHWM) of a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imagesearch.index.matrix import MatrixIndex, allocate_rows

ROOT = Path(__file__).resolve().parents[2]
LINUX = Path("/proc/self/clear_refs").exists()

# A fresh interpreter: a matrix loaded as a search instance loads it, filled to its
# capacity, then one more image.
_CHILD = """
import json, sys
from pathlib import Path
import numpy as np
from imagesearch.index.embedded import build_matrix_from_items

def peak():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")

count, dimension = int(sys.argv[1]), int(sys.argv[2])
vectors = np.random.default_rng(1).standard_normal((count, dimension), dtype=np.float32)
items = [
    {"image_id": {"S": f"id-{n}"}, "key": {"S": f"k{n}"}, "vector": {"B": vectors[n].tobytes()}}
    for n in range(count)
]
index = build_matrix_from_items(items, dimension)  # as a cold start by Scan builds it
del items, vectors
n = count
while len(index) < index._matrix.shape[0]:  # fill its spare rows: the next one grows it
    index.upsert(f"id-{n}", f"k{n}", None, np.ones(dimension, dtype=np.float32))
    n += 1
Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS from here on
before = peak()
index.upsert("one-more", "k", None, -np.ones(dimension, dtype=np.float32))
assert index.query(-np.ones(dimension), 1)[0].image_id == "one-more"
matrix_bytes = index._matrix[: len(index)].nbytes
print(json.dumps({"growth_bytes": peak() - before, "matrix_bytes": matrix_bytes}))
"""


@pytest.mark.skipif(not LINUX, reason="VmHWM and clear_refs are Linux's")
def test_growing_a_full_matrix_does_not_hold_a_second_copy() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lambdas")}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, "40000", "1024"],  # a 160 MB matrix
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    # A copy would add the whole matrix (old and new held at once); growing in place
    # adds only the pages written (the new row, the content-type codes).
    assert measured["growth_bytes"] < 0.1 * measured["matrix_bytes"], measured


def test_growth_while_a_view_is_held_copies_and_keeps_every_row() -> None:
    index = MatrixIndex(4, capacity=64)
    for n in range(64):
        index.upsert(f"id-{n}", f"k{n}", None, np.eye(4, dtype=np.float32)[n % 4] + n)
    _, _, _, rows = index.rows()  # a snapshot writer's view: the mapping cannot move
    held = rows.copy()
    index.upsert("id-64", "k64", None, np.ones(4, dtype=np.float32))
    assert np.array_equal(rows, held)  # the view still reads the rows it was given
    assert len(index) == 65
    for n in range(64):
        stored = index.vector(f"id-{n}")
        assert stored is not None and np.allclose(stored, held[n])


def test_matrix_without_mappings_grows_by_copying(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("imagesearch.index.matrix._PRIVATE_ANONYMOUS", None)  # no mmap flags
    buffer = allocate_rows(64, 3)
    assert buffer.base is None  # a plain array
    index = MatrixIndex(3)

    def direction(n: int) -> np.ndarray:
        return np.array([np.cos(n / 50), np.sin(n / 50), 0.0], dtype=np.float32)

    for n in range(200):
        index.upsert(f"id-{n}", f"k{n}", None, direction(n))
    assert len(index) == 200
    assert index.query(direction(150), 1)[0].image_id == "id-150"
