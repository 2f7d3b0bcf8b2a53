"""Exact cosine top-k over an in-memory, L2-normalised float32 matrix (pure numpy, no I/O).

Rows ``[0, len)`` of a preallocated matrix hold the live vectors; appends grow the
capacity geometrically and removals move the last row into the hole, so both are
amortised O(dimension). A query is one matrix-vector product (over the live rows,
or over the rows a selective filter leaves) plus ``np.argpartition``: filters are
arrays and masks, never a Python loop over the items.
"""

from __future__ import annotations

import heapq
import math
import mmap
from bisect import bisect_left, bisect_right
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from imagesearch.embedders.base import Vector
from imagesearch.ports import MAX_TOP_K, QueryFilters, ScoredId

_NO_FILTERS = QueryFilters()
_NO_ROWS: npt.NDArray[np.float32] = np.zeros((0, 1), dtype=np.float32)
_MIN_CAPACITY = 64
_ROW_ITEM_BYTES = np.dtype(np.float32).itemsize
# Unix: matrices live in mappings of their own, which grow without a copy (mremap).
_PRIVATE_ANONYMOUS = (
    mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    if hasattr(mmap, "MAP_PRIVATE") and hasattr(mmap, "MAP_ANONYMOUS")
    else None
)
# Spare rows, as a share of the rows held, after a load and after each growth: the
# search and maintenance functions' memory (stacks/sizing.py) counts the matrix at this.
_HEADROOM = 1.125
# A filter that keeps at most this share of the rows gathers them and multiplies only
# those; above it, one product over all rows plus a mask is cheaper (the gather
# copies every selected row once more). Measured with bench/search.py.
_GATHER_MAX_FRACTION = 0.1
# Past this many single-row patches of the key order since its last sort, drop it and
# sort afresh on the next prefix query (each patch moves O(n) memory; a sort of 100k
# keys takes ~150 ms).
_MAX_ORDER_PATCHES_FRACTION = 0.005
_MAX_CODE_POINT = 0x10FFFF


def _prefix_upper_bound(prefix: str) -> str | None:
    """Smallest string greater than every string that starts with ``prefix``
    (None: no such bound, every string from ``prefix`` on matches)."""
    trimmed = prefix.rstrip(chr(_MAX_CODE_POINT))
    if not trimmed:
        return None
    return trimmed[:-1] + chr(ord(trimmed[-1]) + 1)


def allocate_rows(rows: int, dimension: int) -> npt.NDArray[np.float32]:
    """A zeroed ``(rows, dimension)`` float32 buffer for a ``MatrixIndex``: on Unix in
    an anonymous private mapping of its own, whose pages cost memory only once written
    and which the index grows in place (``MatrixIndex._grow``)."""
    nbytes = rows * dimension * _ROW_ITEM_BYTES
    if _PRIVATE_ANONYMOUS is None or nbytes == 0:
        return np.zeros((rows, dimension), dtype=np.float32)
    return _rows_of(mmap.mmap(-1, nbytes, flags=_PRIVATE_ANONYMOUS), dimension)


def _rows_of(mapping: mmap.mmap, dimension: int) -> npt.NDArray[np.float32]:
    return np.frombuffer(mapping, dtype=np.float32).reshape(-1, dimension)


def _resize(mapping: mmap.mmap, nbytes: int) -> bool:
    """Whether ``mapping`` now has ``nbytes``; False leaves it as it was: a view of it
    is held elsewhere (BufferError) or the platform cannot move a mapping (no mremap:
    macOS raises SystemError), and the caller copies instead."""
    try:
        mapping.resize(nbytes)
    except (BufferError, OSError, ValueError, SystemError):
        return False
    return True


def _mapping_of(array: npt.NDArray[np.float32]) -> mmap.mmap | None:
    """The mapping ``array`` views from its first byte to its last (``allocate_rows``)."""
    base: object = array
    while isinstance(base, np.ndarray):
        base = base.base
    if isinstance(base, memoryview):
        base = base.obj
    if not isinstance(base, mmap.mmap) or len(base) != array.nbytes:
        return None
    return base


def _row_norms(matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    # einsum avoids the (n, d) temporary of np.linalg.norm(axis=1).
    return np.sqrt(np.einsum("ij,ij->i", matrix, matrix))


class MatrixIndex:
    """Mutable exact cosine index of ``(id, key, content_type, vector)`` items."""

    def __init__(self, dimension: int, *, capacity: int = 0) -> None:
        if dimension < 1:
            raise ValueError("dimension must be positive")
        self._dimension = dimension
        capacity = max(capacity, _MIN_CAPACITY)
        self._matrix = allocate_rows(capacity, dimension)
        self._codes = np.zeros(capacity, dtype=np.int32)
        self._ids: list[str] = []
        self._keys: list[str] = []
        self._rows: dict[str, int] = {}
        # Content types as small integer codes so that a content-type filter is np.isin.
        self._code_of: dict[str | None, int] = {None: 0}
        self._type_of: list[str | None] = [None]
        # Row numbers sorted by key, rebuilt lazily after a change (prefix filter).
        self._key_order: npt.NDArray[np.intp] | None = None
        self._sorted_keys: list[str] | None = None
        self._order_patches = 0

    # -- construction ---------------------------------------------------------

    @classmethod
    def build(
        cls,
        ids: Sequence[str],
        keys: Sequence[str],
        content_types: Sequence[str | None],
        matrix: npt.ArrayLike,
    ) -> MatrixIndex:
        """Bulk constructor; rows are normalised. Raises ValueError for duplicate ids,
        mismatched lengths, or a row of zero or non-finite norm."""
        array = np.asarray(matrix, dtype=np.float32)
        if array.ndim != 2:
            raise ValueError("matrix must be two-dimensional (n, dimension)")
        count, dimension = array.shape
        buffer = allocate_rows(cls.capacity_for(count), dimension)
        buffer[:count] = array
        index, _ = cls.from_buffer(
            list(ids), list(keys), list(content_types), buffer, count, drop_invalid=False
        )
        return index

    @classmethod
    def from_buffer(
        cls,
        ids: list[str],
        keys: list[str],
        content_types: list[str | None],
        buffer: npt.NDArray[np.float32],
        count: int,
        *,
        drop_invalid: bool,
        unit_rows: bool = False,
    ) -> tuple[MatrixIndex, list[str]]:
        """Take ownership of ``buffer`` (rows ``[0, count)`` filled, the rest spare
        capacity, see ``capacity_for``) and normalise it in place, without a copy.
        Rows of zero or non-finite norm raise ValueError, or with ``drop_invalid`` are
        left out. ``unit_rows``: the rows are unit vectors written by an index (an
        index snapshot, checksummed), so neither checked nor normalised again.
        Returns the index and the ids of the dropped rows."""
        if not len(ids) == len(keys) == len(content_types) == count:
            raise ValueError("ids, keys, content_types and matrix rows differ in number")
        if len(set(ids)) != count:
            raise ValueError("duplicate ids")
        live = buffer[:count]
        dropped: list[str] = []
        if unit_rows:
            return cls._adopt(buffer, ids, keys, content_types, count), dropped
        norms = _row_norms(live)
        valid = np.isfinite(norms) & (norms > 0)
        if not bool(valid.all()):
            if not drop_invalid:
                raise ValueError(f"{int(count - valid.sum())} rows have zero or non-finite norm")
            keep = np.flatnonzero(valid)
            dropped = [ids[i] for i in np.flatnonzero(~valid).tolist()]
            kept = keep.tolist()
            ids = [ids[i] for i in kept]
            keys = [keys[i] for i in kept]
            content_types = [content_types[i] for i in kept]
            count = len(kept)
            buffer[:count] = live[keep]
            live = buffer[:count]
            norms = norms[keep]
        np.divide(live, norms[:, None], out=live)
        return cls._adopt(buffer, ids, keys, content_types, count), dropped

    @classmethod
    def _adopt(
        cls,
        buffer: npt.NDArray[np.float32],
        ids: list[str],
        keys: list[str],
        content_types: list[str | None],
        count: int,
    ) -> MatrixIndex:
        index = cls(buffer.shape[1], capacity=0)
        index._matrix = buffer
        index._codes = np.zeros(buffer.shape[0], dtype=np.int32)
        for content_type in dict.fromkeys(content_types):  # few distinct types
            index._code(content_type)
        index._codes[:count] = np.fromiter(
            map(index._code_of.__getitem__, content_types), dtype=np.int32, count=count
        )
        index._ids = ids
        index._keys = keys
        index._rows = dict(zip(ids, range(count), strict=True))
        return index

    @staticmethod
    def capacity_for(count: int) -> int:
        """Rows to allocate for ``count`` items: some headroom for appends."""
        return max(_MIN_CAPACITY, math.ceil(count * _HEADROOM))

    # -- reads ----------------------------------------------------------------

    @property
    def dimension(self) -> int:
        return self._dimension

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._rows

    def vector(self, image_id: str) -> Vector | None:
        """A copy of the stored (unit-norm) vector, or None."""
        row = self._rows.get(image_id)
        return None if row is None else self._matrix[row].copy()

    def rows(
        self,
    ) -> tuple[list[str], list[str], list[str | None], npt.NDArray[np.float32]]:
        """Ids, keys, content types and the live (unit) rows, in row order: a view, not
        a copy (a snapshot writer serialises them while holding the owner's lock)."""
        count = len(self._ids)
        types = [self._type_of[code] for code in self._codes[:count].tolist()]
        return list(self._ids), list(self._keys), types, self._matrix[:count]

    def key(self, image_id: str) -> str | None:
        row = self._rows.get(image_id)
        return None if row is None else self._keys[row]

    # -- writes ---------------------------------------------------------------

    def upsert(self, image_id: str, key: str, content_type: str | None, vector: Vector) -> None:
        """Insert or replace one item; the vector is normalised."""
        unit = self._normalise(vector)
        row = self._rows.get(image_id)
        if row is None:
            row = len(self._ids)
            if row == self._matrix.shape[0]:
                self._grow()
            self._ids.append(image_id)
            self._keys.append(key)
            self._rows[image_id] = row
            self._order_insert(row, key)
        elif self._keys[row] != key:
            self._order_delete(row)
            self._keys[row] = key
            self._order_insert(row, key)
        self._matrix[row] = unit
        self._codes[row] = self._code(content_type)

    def remove(self, image_id: str) -> bool:
        """Remove one item (the last row moves into its place). False when absent."""
        row = self._rows.pop(image_id, None)
        if row is None:
            return False
        last = len(self._ids) - 1
        self._order_delete(row)
        if row != last:
            self._order_move(last, row)
            moved = self._ids[last]
            self._matrix[row] = self._matrix[last]
            self._codes[row] = self._codes[last]
            self._ids[row] = moved
            self._keys[row] = self._keys[last]
            self._rows[moved] = row
        self._ids.pop()
        self._keys.pop()
        return True

    # -- query ----------------------------------------------------------------

    def query(
        self, vector: Vector, top_k: int, filters: QueryFilters = _NO_FILTERS
    ) -> list[ScoredId]:
        """The ``top_k`` best items by cosine similarity, best first; equal scores are
        ordered by id. Fewer come back when filters leave fewer."""
        if not 1 <= top_k <= MAX_TOP_K:
            raise ValueError(f"top_k must be between 1 and {MAX_TOP_K}")
        query = self._normalise(vector)
        count = len(self._ids)
        if count == 0:
            return []
        rows, mask = self._selection(filters, count)
        if rows is not None:
            if rows.size == 0:
                return []
            scores = self._matrix[rows] @ query
        else:
            scores = self._matrix[:count] @ query
            if mask is not None:
                scores[~mask] = -np.inf
        if filters.exclude_ids:
            self._exclude(scores, rows, filters.exclude_ids)

        k = min(top_k, scores.size)
        if k < scores.size:
            best = np.argpartition(scores, -k)[-k:]
            floor = float(scores[best].min())
        else:
            floor = -math.inf
        if filters.min_score is not None:
            floor = max(floor, filters.min_score)
        # Everything at or above the k-th score: ties at the boundary are kept here and
        # resolved by id below, so the answer does not depend on argpartition's order.
        if floor > -math.inf:
            positions = np.flatnonzero(scores >= np.float32(floor))
        else:
            positions = np.flatnonzero(scores > -np.inf)
        if positions.size == 0:
            return []
        found = scores[positions].astype(np.float64)
        if filters.min_score is not None:
            keep = found >= filters.min_score
            positions, found = positions[keep], found[keep]
        item_rows = (rows[positions] if rows is not None else positions).tolist()
        ids = self._ids
        ranked = heapq.nsmallest(
            k,
            zip(found.tolist(), item_rows, strict=True),
            key=lambda pair: (-pair[0], ids[pair[1]]),
        )
        return [ScoredId(ids[row], min(1.0, max(-1.0, score))) for score, row in ranked]

    def _selection(
        self, filters: QueryFilters, count: int
    ) -> tuple[npt.NDArray[np.intp] | None, npt.NDArray[np.bool_] | None]:
        """Rows (sorted) to score, or a mask over all rows, or (None, None): all rows."""
        rows: npt.NDArray[np.intp] | None = None
        mask: npt.NDArray[np.bool_] | None = None
        gather_limit = count * _GATHER_MAX_FRACTION
        if filters.prefix:
            lo, hi = self._prefix_range(filters.prefix)
            assert self._key_order is not None
            selected = self._key_order[lo:hi]
            if selected.size <= gather_limit:
                rows = np.sort(selected)
            else:
                mask = np.zeros(count, dtype=bool)
                mask[selected] = True
        if filters.content_types is not None:
            wanted = [self._code_of[t] for t in filters.content_types if t in self._code_of]
            allowed = np.array(wanted, dtype=np.int32)
            if rows is not None:
                rows = rows[np.isin(self._codes[rows], allowed)]
            else:
                type_mask = np.isin(self._codes[:count], allowed)
                mask = type_mask if mask is None else mask & type_mask
        if mask is not None and int(np.count_nonzero(mask)) <= gather_limit:
            rows, mask = np.flatnonzero(mask), None
        return rows, mask

    def _prefix_range(self, prefix: str) -> tuple[int, int]:
        if self._sorted_keys is None or self._key_order is None:
            order = sorted(range(len(self._keys)), key=self._keys.__getitem__)
            self._sorted_keys = [self._keys[row] for row in order]
            self._key_order = np.array(order, dtype=np.intp)
            self._order_patches = 0
        lo = bisect_left(self._sorted_keys, prefix)
        upper = _prefix_upper_bound(prefix)
        hi = len(self._sorted_keys) if upper is None else bisect_left(self._sorted_keys, upper, lo)
        return lo, hi

    def _exclude(
        self,
        scores: npt.NDArray[np.float32],
        rows: npt.NDArray[np.intp] | None,
        exclude_ids: Sequence[str],
    ) -> None:
        excluded = np.array([self._rows[i] for i in exclude_ids if i in self._rows], dtype=np.intp)
        if excluded.size == 0:
            return
        if rows is None:
            scores[excluded] = -np.inf
            return
        positions = np.searchsorted(rows, excluded)
        inside = positions < rows.size
        positions = positions[inside]
        positions = positions[rows[positions] == excluded[inside]]
        scores[positions] = -np.inf

    # -- internals ------------------------------------------------------------

    def _normalise(self, vector: Vector) -> Vector:
        array = np.asarray(vector, dtype=np.float32).reshape(-1)
        if array.size != self._dimension:
            raise ValueError(f"vector has {array.size} dimensions; the index has {self._dimension}")
        norm = float(np.sqrt(np.dot(array, array)))
        if not math.isfinite(norm) or norm == 0.0:
            raise ValueError("vector has zero or non-finite norm")
        return array / np.float32(norm)

    def _code(self, content_type: str | None) -> int:
        code = self._code_of.get(content_type)
        if code is None:
            code = len(self._type_of)
            self._code_of[content_type] = code
            self._type_of.append(content_type)
        return code

    def _grow(self) -> None:
        """Add spare rows (``_HEADROOM``). A matrix of ``allocate_rows`` grows in place
        (``mremap``: its pages move, nothing is copied, the new rows cost memory only
        once written), so a warm instance never holds the old and the new matrix at
        once (tests/unit/test_matrix_growth.py measures it). Otherwise, or while a view
        of the matrix is held elsewhere, the rows are copied."""
        capacity = max(_MIN_CAPACITY, math.ceil(self._matrix.shape[0] * _HEADROOM))
        count = len(self._ids)
        codes = np.zeros(capacity, dtype=np.int32)
        codes[:count] = self._codes[:count]
        self._codes = codes
        mapping = _mapping_of(self._matrix)
        if mapping is not None:
            self._matrix = _NO_ROWS  # this index's own view would block the resize
            grown = _resize(mapping, capacity * self._dimension * _ROW_ITEM_BYTES)
            self._matrix = _rows_of(mapping, self._dimension)
            if grown:
                return
        matrix = allocate_rows(capacity, self._dimension)
        matrix[:count] = self._matrix[:count]
        self._matrix = matrix

    # The key order (for the prefix filter) is built on the first prefix query and then
    # patched row by row, so that a trickle of changes does not force a full sort.

    def _order_position(self, row: int) -> int:
        assert self._sorted_keys is not None and self._key_order is not None
        position = bisect_left(self._sorted_keys, self._keys[row])
        # Several rows may share a key: step to the entry of this row.
        while self._key_order[position] != row:
            position += 1
        return position

    def _order_patch_allowed(self) -> bool:
        if self._sorted_keys is None:
            return False
        self._order_patches += 1
        if self._order_patches > max(64, len(self._ids) * _MAX_ORDER_PATCHES_FRACTION):
            self._key_order = None
            self._sorted_keys = None
            return False
        return True

    def _order_insert(self, row: int, key: str) -> None:
        if not self._order_patch_allowed():
            return
        assert self._sorted_keys is not None and self._key_order is not None
        position = bisect_right(self._sorted_keys, key)
        self._sorted_keys.insert(position, key)
        self._key_order = np.insert(self._key_order, position, row)

    def _order_delete(self, row: int) -> None:
        if not self._order_patch_allowed():
            return
        assert self._sorted_keys is not None and self._key_order is not None
        position = self._order_position(row)
        del self._sorted_keys[position]
        self._key_order = np.delete(self._key_order, position)

    def _order_move(self, old_row: int, new_row: int) -> None:
        if self._sorted_keys is None:
            return
        assert self._key_order is not None
        self._key_order[self._order_position(old_row)] = new_row
