"""Memory of the functions that hold the embedded index (search, maintenance): the
float32 matrix with its spare rows, per-row Python objects and a fixed base, checked
against measurements (tests/integration/test_maintenance_memory.py, ``make bench``:
"maintenance snapshot build 250k x 1024").

No CDK imports: stacks/config.py refuses, at synth, an ``embeddedMaxImages`` whose
memory would exceed Lambda's maximum."""

from __future__ import annotations

# Memory also buys CPU for the matrix-vector product: never below this.
MIN_MEMORY_MB = 2048
LAMBDA_MAX_MEMORY_MB = 10240
# The matrix's rows as allocated: MatrixIndex.capacity_for's headroom (1.125), which a
# warm instance's growth also keeps to (index/matrix.py, _HEADROOM).
MATRIX_HEADROOM = 1.125
# Besides the matrix: the interpreter and libraries, the snapshot's parts while they
# are read, the request's scratch space.
BASE_OVERHEAD_MB = 512
# Per row: id, key, content type and revision strings, the id-to-row and revision
# dicts, the snapshot's parsed metadata: measured ~300 bytes besides the matrix at
# 50k-250k rows, but up to ~700 between two smaller sizes (make bench, the test).
PER_IMAGE_OVERHEAD_BYTES = 1024
# The maintenance function's snapshot write on top: s3transfer's parts in memory
# (index/snapshot.py: 4 x 16 MB), their copies in flight, the compressed metadata.
SNAPSHOT_WRITE_MB = 128
_MB = 2**20


def required_memory_mb(max_images: int, dimension: int, *, extra_mb: int = 0) -> int:
    """MB a function holding ``max_images`` vectors of ``dimension`` needs, rounded up
    to 64 MB and at least ``MIN_MEMORY_MB``: possibly above Lambda's maximum."""
    matrix = max_images * MATRIX_HEADROOM * dimension * 4
    total = matrix + max_images * PER_IMAGE_OVERHEAD_BYTES + (BASE_OVERHEAD_MB + extra_mb) * _MB
    mb = -(-int(total) // _MB)
    return max(MIN_MEMORY_MB, -(-mb // 64) * 64)


def embedded_memory_mb(max_images: int, dimension: int) -> int:
    """The search function's memory (stacks/config.py has refused what does not fit)."""
    return min(LAMBDA_MAX_MEMORY_MB, required_memory_mb(max_images, dimension))


def maintenance_memory_mb(max_images: int, dimension: int) -> int:
    """The maintenance function's memory: the loaded index plus a snapshot write."""
    return min(
        LAMBDA_MAX_MEMORY_MB,
        required_memory_mb(max_images, dimension, extra_mb=SNAPSHOT_WRITE_MB),
    )


def needed_memory_mb(max_images: int, dimension: int, search_dimensions: int) -> int:
    """The larger of the two functions' needs, uncapped: maintenance holds the serving
    model's index (``dimension``) and writes its snapshot; search, during a model switch,
    both models' (``search_dimensions``)."""
    return max(
        required_memory_mb(max_images, search_dimensions),
        required_memory_mb(max_images, dimension, extra_mb=SNAPSHOT_WRITE_MB),
    )


def max_images_that_fit(dimension: int, search_dimensions: int) -> int:
    """The largest embeddedMaxImages, in whole thousands, whose functions fit Lambda's
    maximum memory."""
    low, high = 0, 10_000_000
    while low < high:
        middle = (low + high + 1) // 2
        if needed_memory_mb(middle * 1000, dimension, search_dimensions) <= LAMBDA_MAX_MEMORY_MB:
            low = middle
        else:
            high = middle - 1
    return low * 1000
