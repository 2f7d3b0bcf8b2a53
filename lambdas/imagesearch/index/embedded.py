"""The embedded tier's ``VectorIndex``: every vector of the deployment's model in the
search function's memory (an exact cosine ``MatrixIndex``), derived from the catalog.

A search instance loads every indexed vector with a parallel Scan of the catalog on
first use, then applies what changed since its watermark from the catalog's change log
before answering, at most every ``refresh_interval`` seconds. Ingest writes only the
catalog (see ``index.sync.FollowsCatalog``); ``upsert``/``delete`` here change this
instance's memory only (tests, and the tier's contract suite).

Thread-safe: one lock guards loading, refreshing and reading (local mode serves
requests from several threads).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from imagesearch.embedders.base import Vector
from imagesearch.errors import IndexUnavailable
from imagesearch.index.matrix import MatrixIndex
from imagesearch.ports import QueryFilters, ScoredId, VectorEntry
from imagesearch.records import VECTOR_DTYPE, decode_vector
from imagesearch.resources import (
    ATTR_IMAGE_ID,
    ATTR_KEY,
    ATTR_STATUS,
    ATTR_VECTOR,
    STATUS_INDEXED,
    TOMBSTONE_TTL_SECONDS,
)

logger = logging.getLogger(__name__)

Item = Mapping[str, Mapping[str, Any]]


class StaleIndexError(IndexUnavailable):
    """The in-memory index could not be refreshed for longer than allowed."""


class CatalogFeed(Protocol):
    """The catalog reads the embedded index is loaded and refreshed from (raw items:
    vector bytes go straight into the matrix, never through per-float Python)."""

    def scan_vector_items(
        self, *, model_id: str, dimension: int, segment: int = 0, total_segments: int = 1
    ) -> Iterator[Item]: ...

    def changes(self, since_ms: int, until_ms: int) -> Iterator[Item]: ...


def build_matrix_from_items(items: Iterable[Item], dimension: int) -> MatrixIndex:
    """A ``MatrixIndex`` from low-level DynamoDB items (``image_id``, ``key``,
    ``content_type``, ``vector`` as ``{"B": bytes}``).

    Vector bytes are copied whole into the matrix (no per-float Python); items whose
    vector is missing, of another length, or of zero norm are skipped (and counted
    in the log, never printed).
    """
    expected = dimension * VECTOR_DTYPE.itemsize
    ids: list[str] = []
    keys: list[str] = []
    content_types: list[str | None] = []
    blobs: list[bytes] = []
    skipped = 0
    for item in items:
        blob = item.get(ATTR_VECTOR, {}).get("B")
        if blob is None or len(blob) != expected:
            skipped += 1
            continue
        content_type = item.get("content_type")
        ids.append(item[ATTR_IMAGE_ID]["S"])
        keys.append(item[ATTR_KEY]["S"])
        content_types.append(None if content_type is None else content_type["S"])
        blobs.append(blob)
    count = len(blobs)
    buffer = np.empty((MatrixIndex.capacity_for(count), dimension), dtype=np.float32)
    # One memcpy per vector straight into the matrix: unlike b"".join + np.frombuffer,
    # no 400 MB transient at 100k x 1024, and fresh memory is touched once, not twice
    # (page faults dominate a cold start).
    target = buffer.data.cast("B")
    for row, blob in enumerate(blobs):
        target[row * expected : (row + 1) * expected] = blob
    target.release()
    blobs.clear()
    if np.dtype(np.float32) != VECTOR_DTYPE:  # big-endian host: stored bytes are little-endian
        buffer[:count].byteswap(inplace=True)
    index, dropped = MatrixIndex.from_buffer(
        ids, keys, content_types, buffer, count, drop_invalid=True
    )
    skipped += len(dropped)
    if skipped:
        logger.warning("skipped %d records with a missing or unusable vector", skipped)
    return index


class EmbeddedIndex:
    """``VectorIndex`` held in memory, loaded and refreshed from the catalog."""

    def __init__(
        self,
        catalog: CatalogFeed,
        *,
        model_id: str,
        dimension: int,
        refresh_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        scan_segments: int = 4,
        refresh_overlap: float = 30.0,
        max_staleness: float = 60.0,
    ) -> None:
        if dimension < 1:
            raise ValueError("dimension must be positive")
        if scan_segments < 1:
            raise ValueError("scan_segments must be at least 1")
        self._catalog = catalog
        self._model_id = model_id
        self._dimension = dimension
        self._refresh_interval = refresh_interval
        self._clock = clock
        self._scan_segments = scan_segments
        # GSIs are eventually consistent and writers' clocks differ: each refresh
        # re-reads this much before the watermark (re-applying a change is harmless).
        self._overlap = refresh_overlap
        # A failed refresh serves the previous state for at most this long, then raises.
        self._max_staleness = max_staleness
        self._lock = threading.RLock()
        self._matrix: MatrixIndex | None = None
        self._watermark = 0.0  # start time (epoch s) of the last successful load/refresh
        self._attempted = 0.0  # start time of the last load/refresh attempt

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dimension(self) -> int:
        return self._dimension

    # -- the VectorIndex port ------------------------------------------------------

    def upsert(self, entries: Sequence[VectorEntry]) -> None:
        with self._lock:
            matrix = self._fresh_matrix()
            for entry in entries:
                matrix.upsert(entry.image_id, entry.key, entry.content_type, entry.vector)

    def delete(self, image_ids: Sequence[str]) -> None:
        with self._lock:
            matrix = self._fresh_matrix()
            for image_id in image_ids:
                matrix.remove(image_id)

    def query(self, vector: Vector, top_k: int, filters: QueryFilters) -> list[ScoredId]:
        """Exact cosine top-k over the in-memory index, refreshed first when due."""
        with self._lock:
            return self._fresh_matrix().query(vector, top_k, filters)

    def get_vectors(self, image_ids: Sequence[str]) -> dict[str, Vector]:
        with self._lock:
            matrix = self._fresh_matrix()
            found = {image_id: matrix.vector(image_id) for image_id in image_ids}
        return {image_id: vector for image_id, vector in found.items() if vector is not None}

    def count(self) -> int:
        """Indexed vectors in memory (after a refresh when one is due)."""
        with self._lock:
            return len(self._fresh_matrix())

    def refresh(self) -> None:
        """Load (first call) or refresh the in-memory index now."""
        with self._lock:
            if self._matrix is None:
                self._load()
            else:
                self._refresh(self._clock())

    # -- loading and refreshing ------------------------------------------------------

    def _fresh_matrix(self) -> MatrixIndex:
        if self._matrix is None:
            self._load()
        else:
            now = self._clock()
            if now - self._attempted >= self._refresh_interval:
                try:
                    self._refresh(now)
                except (ClientError, BotoCoreError) as error:
                    staleness = now - self._watermark
                    if staleness > self._max_staleness:
                        raise StaleIndexError(
                            f"search index not refreshed for {staleness:.0f} s: {error}"
                        ) from error
                    logger.warning(
                        "index refresh failed; serving the state of %.1f s ago",
                        staleness,
                        exc_info=True,
                    )
        assert self._matrix is not None
        return self._matrix

    def _load(self) -> None:
        started = self._clock()
        self._attempted = started
        segments = self._scan_segments

        def read(segment: int) -> list[Item]:
            return list(
                self._catalog.scan_vector_items(
                    model_id=self._model_id,
                    dimension=self._dimension,
                    segment=segment,
                    total_segments=segments,
                )
            )

        if segments == 1:
            parts = [read(0)]
        else:
            with ThreadPoolExecutor(max_workers=segments) as pool:
                parts = list(pool.map(read, range(segments)))
        self._matrix = build_matrix_from_items(_drain(parts), self._dimension)
        self._watermark = started
        logger.info(
            "loaded %d vectors in %.0f ms", len(self._matrix), (self._clock() - started) * 1000
        )

    def _refresh(self, now: float) -> None:
        self._attempted = now
        assert self._matrix is not None
        if now - self._watermark > TOMBSTONE_TTL_SECONDS / 2:
            # Tombstones may have expired since: only a full load is correct.
            self._load()
            return
        since_ms = int((self._watermark - self._overlap) * 1000)
        until_ms = int((now + self._overlap) * 1000)
        changes = list(self._catalog.changes(since_ms, until_ms))
        for item in changes:
            self._apply(self._matrix, item)
        self._watermark = now

    def _apply(self, matrix: MatrixIndex, item: Item) -> None:
        image_id = item[ATTR_IMAGE_ID]["S"]
        blob = item.get(ATTR_VECTOR, {}).get("B")
        searchable = (
            item.get(ATTR_STATUS, {}).get("S") == STATUS_INDEXED
            and item.get("model_id", {}).get("S") == self._model_id
            and item.get("dimension", {}).get("N") == str(self._dimension)
            and blob is not None
            and len(blob) == self._dimension * VECTOR_DTYPE.itemsize
        )
        if searchable:
            assert blob is not None
            content_type = item.get("content_type", {}).get("S")
            try:
                matrix.upsert(image_id, item[ATTR_KEY]["S"], content_type, decode_vector(blob))
                return
            except ValueError:
                logger.warning("skipped a record with an unusable vector")
        matrix.remove(image_id)


def _drain(parts: list[list[Item]]) -> Iterator[Item]:
    """Yield every item, letting go of each one as it is consumed (a 100k x 1024
    cold load holds 400 MB of vector bytes in these items)."""
    while parts:
        part = parts.pop()
        part.reverse()
        while part:
            yield part.pop()
