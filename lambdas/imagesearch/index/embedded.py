"""The embedded tier's ``VectorIndex``: every vector of the deployment's model in the
search function's memory (an exact cosine ``MatrixIndex``), derived from the catalog.

A search instance loads on first use from the S3 snapshot (``index.snapshot``: one
contiguous float32 array read with parallel ranged GETs), or, when that is missing,
corrupt, of another model or too old, by a parallel Scan of the catalog (with a log
line and ``on_fallback``). Then, at most every ``refresh_interval`` seconds, it reads
what changed since its watermark from the change log (no vectors) and fetches vectors
by BatchGetItem only for rows it does not hold at that revision. Ingest writes only
the catalog (see ``index.sync.FollowsCatalog``); ``upsert``/``delete`` here change this
instance's memory only (tests, and the tier's contract suite).

Thread-safe: one lock guards loading, applying changes and reading (local mode serves
requests from several threads). With ``background_refresh`` (local mode, where one
process also runs ingest and the AWS emulator) a thread of its own refreshes every
``refresh_interval`` from the first load on: requests answer from the state in hand
at once, the catalog reads happen without the lock, and only applying what they found
takes it.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from botocore.exceptions import BotoCoreError, ClientError

from imagesearch.catalog.dynamodb import CatalogThrottled, select_slot
from imagesearch.embedders.base import Vector
from imagesearch.errors import IndexUnavailable
from imagesearch.health import ImageCount
from imagesearch.index.matrix import MatrixIndex, allocate_rows
from imagesearch.index.snapshot import Snapshot, SnapshotError, SnapshotHeader
from imagesearch.ports import QueryFilters, ScoredId, VectorEntry
from imagesearch.records import VECTOR_DTYPE, decode_vector
from imagesearch.resources import (
    ATTR_IMAGE_ID,
    ATTR_KEY,
    ATTR_REVISION,
    ATTR_STATUS,
    ATTR_VECTOR,
    INDEX_REFRESH_OVERLAP_SECONDS,
    STATUS_INDEXED,
    TOMBSTONE_TTL_SECONDS,
)

logger = logging.getLogger(__name__)

Item = Mapping[str, Mapping[str, Any]]


class StaleIndexError(IndexUnavailable):
    """The in-memory index could not be refreshed for longer than allowed."""


@dataclass(frozen=True)
class Exported:
    """What a snapshot of the index holds (``EmbeddedIndex.exported``): one entry per
    row of ``rows`` (unit vectors, a view of the live matrix)."""

    watermark: float  # epoch s: the catalog's changes up to here are in
    ids: list[str]
    keys: list[str]
    content_types: list[str | None]
    revisions: list[str | None]
    rows: npt.NDArray[np.float32] = field(repr=False)


class CatalogFeed(Protocol):
    """The catalog reads the embedded index is loaded and refreshed from (raw items:
    vector bytes go straight into the matrix, never through per-float Python)."""

    def scan_vector_items(
        self, *, model_id: str, dimension: int, segment: int = 0, total_segments: int = 1
    ) -> Iterator[Item]: ...

    def changes(self, since_ms: int, until_ms: int, *, brief: bool = False) -> Iterator[Item]: ...

    def vector_items(self, image_ids: Iterable[str]) -> Mapping[str, Item]: ...


class SnapshotSource(Protocol):
    """Where a cold start finds the index's snapshot (``index.snapshot.SnapshotStore``)."""

    def read_header(self) -> SnapshotHeader | None: ...

    def load(self, *, model_id: str, dimension: int) -> Snapshot: ...


def build_matrix_from_items(
    items: Iterable[Item],
    dimension: int,
    revisions: dict[str, str | None] | None = None,
    *,
    count: int | None = None,
) -> MatrixIndex:
    """A ``MatrixIndex`` from low-level DynamoDB items (``image_id``, ``key``,
    ``content_type``, ``vector`` as ``{"B": bytes}``); each row's ``revision`` goes
    into ``revisions`` when given. ``count``: how many items come (None: ``items`` is
    read into a list first).

    Each vector's bytes are copied into its row as its item arrives, and the memory of
    consumed items is handed back to the system as the matrix fills (``_drain`` lets
    go of them): a Scan load peaks near the items' size, not items plus matrix.
    Items whose vector is missing, of another length, or of zero norm are skipped
    (and counted in the log, never printed).
    """
    if count is None:
        items = list(items)
        count = len(items)
    expected = dimension * VECTOR_DTYPE.itemsize
    ids: list[str] = []
    keys: list[str] = []
    content_types: list[str | None] = []
    buffer = allocate_rows(MatrixIndex.capacity_for(count), dimension)
    # One memcpy per vector straight into the matrix: unlike b"".join + np.frombuffer,
    # no 400 MB transient at 100k x 1024, and fresh memory is touched once, not twice
    # (page faults dominate a cold start).
    target = buffer.data.cast("B")
    release = _memory_release()
    skipped = 0
    for item in items:
        blob = item.get(ATTR_VECTOR, {}).get("B")
        if blob is None or len(blob) != expected:
            skipped += 1
            continue
        row = len(ids)
        if row == count:
            raise ValueError(f"more than the {count} items announced")
        target[row * expected : (row + 1) * expected] = blob
        content_type = item.get("content_type")
        ids.append(item[ATTR_IMAGE_ID]["S"])
        if revisions is not None:
            revisions[ids[-1]] = item.get(ATTR_REVISION, {}).get("S")
        keys.append(item[ATTR_KEY]["S"])
        content_types.append(None if content_type is None else content_type["S"])
        if release is not None and row % _RELEASE_EVERY_ROWS == _RELEASE_EVERY_ROWS - 1:
            release(0)
    target.release()
    rows = len(ids)
    if np.dtype(np.float32) != VECTOR_DTYPE:  # big-endian host: stored bytes are little-endian
        buffer[:rows].byteswap(inplace=True)
    index, dropped = MatrixIndex.from_buffer(
        ids, keys, content_types, buffer, rows, drop_invalid=True
    )
    skipped += len(dropped)
    if revisions is not None:
        for image_id in dropped:
            revisions.pop(image_id, None)
    if skipped:
        logger.warning("skipped %d records with a missing or unusable vector", skipped)
    return index


# Scan items are freed in the order they were read, in the middle of malloc's heaps,
# which glibc keeps unless asked: malloc_trim every this many rows (32 MB at 1024-d)
# hands them back. Measured at 100k x 1024: a Scan load peaks at 617 MB instead of 970.
_RELEASE_EVERY_ROWS = 8192


@functools.cache
def _memory_release() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (another C library: nothing to call)."""
    import ctypes

    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


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
        refresh_overlap: float = INDEX_REFRESH_OVERLAP_SECONDS,
        max_staleness: float = 60.0,
        snapshots: SnapshotSource | None = None,
        on_fallback: Callable[[str], None] | None = None,
        background_refresh: bool = False,
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
        self._snapshots = snapshots
        self._on_fallback = on_fallback
        self._background = background_refresh
        self._refresher: threading.Thread | None = None
        self._stopping = threading.Event()
        self._nudged = threading.Event()
        # The last background refresh's failure (None once one succeeds): past
        # max_staleness, requests raise it as StaleIndexError.
        self._refresh_error: Exception | None = None
        self._lock = threading.RLock()
        self._matrix: MatrixIndex | None = None
        # The catalog revision of each image this instance last applied (None: loaded
        # without one): a change naming the same revision is not fetched again.
        self._revisions: dict[str, str | None] = {}
        self._watermark = 0.0  # start time (epoch s) of the last successful load/refresh
        self._attempted = 0.0  # start time of the last load/refresh attempt
        self._header: SnapshotHeader | None = None
        self._header_read = -math.inf
        self.source = "none"  # "snapshot" or "scan" once loaded (logs, bench, tests)
        self.applied_changes = 0  # changes applied since the last full load

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

    def reload_from_catalog(self) -> None:
        """Load by a full Scan of the catalog now, whatever the snapshot holds (the
        maintenance run, when the reconciliation found the snapshot wrong)."""
        with self._lock:
            self._attempted = self._clock()
            self._load_scan(self._attempted)

    def refresh_soon(self) -> None:
        """Have the background refresher run now rather than at its next interval
        (local mode's ingest worker, after each batch: what it indexed shows at once)."""
        self._nudged.set()

    def stop_refreshing(self, timeout: float | None = None) -> bool:
        """Stop the background refresher, letting a refresh in progress finish (local
        mode, before it stops moto); False if it still runs after ``timeout``."""
        self._stopping.set()
        self._nudged.set()
        refresher = self._refresher
        if refresher is None:
            return True
        refresher.join(timeout)
        return not refresher.is_alive()

    # -- cheap state (GET /health, the maintenance handler) ----------------------------

    def loaded_count(self) -> int | None:
        """Vectors this instance holds, without loading or refreshing (None: not loaded)."""
        matrix = self._matrix
        return None if matrix is None else len(matrix)

    def loaded_image_count(self) -> ImageCount | None:
        """GET /health's count from this instance alone: the vectors it holds, as of its
        last load or refresh (None: not loaded). Never loads, refreshes or reads."""
        # No lock: a refresh holds it for as long as it loads, and /health must not wait.
        matrix, watermark = self._matrix, self._watermark
        if matrix is None:
            return None
        return ImageCount(len(matrix), int(watermark * 1000), self._model_id, self._dimension)

    def snapshot_header(self, max_age: float = 60.0) -> SnapshotHeader | None:
        """The current snapshot's header (one small S3 GET, cached ``max_age`` seconds);
        None without snapshots, or when there is none or it cannot be read."""
        if self._snapshots is None:
            return None
        now = self._clock()
        if now - self._header_read >= max_age:
            try:
                self._header = self._snapshots.read_header()
            except (SnapshotError, ClientError, BotoCoreError) as error:
                logger.warning("could not read the index snapshot header: %s", error)
                self._header = None
            self._header_read = now
        return self._header

    @contextmanager
    def exported(self) -> Iterator[Exported]:
        """The loaded and refreshed index as a snapshot holds it. Its rows are a view of
        the live matrix, not a copy (a second 1 GB at 250k x 1024 would not fit the
        maintenance function): the index's lock is held until the block ends, so
        nothing changes them meanwhile. Hold no other lock inside it."""
        with self._lock:
            matrix = self._fresh_matrix()
            ids, keys, types, rows = matrix.rows()
            revisions = [self._revisions.get(image_id) for image_id in ids]
            yield Exported(self._watermark, ids, keys, types, revisions, rows)

    # -- loading and refreshing ------------------------------------------------------

    def _fresh_matrix(self) -> MatrixIndex:
        if self._matrix is None:
            self._load()
        else:
            now = self._clock()
            if self._background:
                self._refresh_behind(now)
            elif now - self._attempted >= self._refresh_interval:
                try:
                    self._refresh(now)
                except (ClientError, BotoCoreError, CatalogThrottled) as error:
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

    def _refresh_behind(self, now: float) -> None:
        """The background refresher keeps the state current; called with the lock held.

        Once its last refresh failed and the state in hand is older than
        ``max_staleness``, the request refreshes itself, as without a background
        thread: it answers from a fresh state or raises ``StaleIndexError``."""
        error = self._refresh_error
        staleness = now - self._watermark
        if error is not None and staleness > self._max_staleness:
            try:
                self._refresh(now)
            except (ClientError, BotoCoreError, CatalogThrottled) as failure:
                self._refresh_error = failure
                raise StaleIndexError(
                    f"search index not refreshed for {staleness:.0f} s: {failure}"
                ) from failure
            self._refresh_error = None

    def _start_refresher(self) -> None:
        if self._background and self._refresher is None and not self._stopping.is_set():
            self._refresher = threading.Thread(
                target=_keep_refreshing,
                args=(weakref.ref(self), self._nudged, self._stopping, self._refresh_interval),
                name="index-refresh",
                daemon=True,
            )
            self._refresher.start()

    def _refresh_in_background(self) -> None:
        now = self._clock()
        self._attempted = now
        watermark = self._watermark
        try:
            with self._lock:
                watermark = self._watermark
                if self._matrix is None or now - watermark > TOMBSTONE_TTL_SECONDS / 2:
                    # Not loaded, or a gap only a full load covers: that holds the lock.
                    if self._matrix is None:
                        self._load()
                    else:
                        self._refresh(now)
                    self._refresh_error = None
                    return
            pending, fetched = self._read_changes(watermark, now)  # without the lock
            with self._lock:
                if self._watermark != watermark or self._matrix is None:
                    return  # loaded or refreshed meanwhile: what was read may be older
                self._apply_changes(pending, fetched, now)
            self._refresh_error = None
        except Exception as error:
            # No request waits on this thread: the failure is logged here and, once the
            # state is older than max_staleness, raised by requests as StaleIndexError.
            self._refresh_error = error
            logger.warning(
                "index refresh failed; serving the state of %.1f s ago",
                now - watermark,
                exc_info=error,
            )

    def _load(self) -> None:
        started = self._clock()
        self._attempted = started
        if self._snapshots is not None:
            try:
                self._load_snapshot(started)
                self._start_refresher()
                return
            except SnapshotError as error:
                self._fell_back(error.reason, str(error))
            except (ClientError, BotoCoreError) as error:
                self._fell_back("unreadable", f"index snapshot could not be read: {error}")
        self._load_scan(started)
        self._start_refresher()

    def _fell_back(self, reason: str, message: str) -> None:
        logger.warning("loading the index by Scan: %s", message)
        if self._on_fallback is not None:
            self._on_fallback(reason)

    def _load_snapshot(self, started: float) -> None:
        assert self._snapshots is not None
        snapshot = self._snapshots.load(model_id=self._model_id, dimension=self._dimension)
        header = snapshot.header
        watermark = header.watermark_ms / 1000
        if started - watermark > TOMBSTONE_TTL_SECONDS / 2:
            # Tombstones of deletes since then may be gone: the change log cannot say.
            raise SnapshotError("stale", f"snapshot is {started - watermark:.0f} s old")
        count = header.count
        matrix, dropped = MatrixIndex.from_buffer(
            snapshot.ids,
            snapshot.keys,
            snapshot.content_types,
            snapshot.buffer,
            count,
            drop_invalid=True,
            unit_rows=True,  # written from an index, checksummed per part
        )
        revisions = dict(zip(snapshot.ids, snapshot.revisions, strict=True))
        for image_id in dropped:
            revisions.pop(image_id, None)
        self._matrix, self._revisions = matrix, revisions
        self._header, self._header_read = header, started
        self.applied_changes = 0
        self._watermark = watermark
        self.source = "snapshot"
        try:
            self._refresh(started)  # catch up from the snapshot's watermark
        except Exception:
            self._matrix = None  # not caught up: the next request starts again
            raise
        logger.info(
            "loaded %d vectors from the snapshot in %.0f ms",
            len(matrix),
            (self._clock() - started) * 1000,
        )

    def _load_scan(self, started: float) -> None:
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
        revisions: dict[str, str | None] = {}
        self._matrix = build_matrix_from_items(
            _drain(parts), self._dimension, revisions, count=sum(map(len, parts))
        )
        self._revisions = revisions
        self._watermark = started
        self.source = "scan"
        self.applied_changes = 0
        logger.info(
            "loaded %d vectors by Scan in %.0f ms",
            len(self._matrix),
            (self._clock() - started) * 1000,
        )

    def _refresh(self, now: float) -> None:
        self._attempted = now
        assert self._matrix is not None
        if now - self._watermark > TOMBSTONE_TTL_SECONDS / 2:
            # Tombstones may have expired since: only a full load is correct.
            self._matrix = None
            self._load()
            return
        pending, fetched = self._read_changes(self._watermark, now)
        self._apply_changes(pending, fetched, now)

    def _read_changes(
        self, watermark: float, now: float
    ) -> tuple[dict[str, Item], Mapping[str, Item]]:
        """The catalog reads of a refresh (no state changes): the newest change of each
        image not applied yet, and the vector items of the searchable ones."""
        since_ms = int((watermark - self._overlap) * 1000)
        until_ms = int((now + self._overlap) * 1000)
        latest: dict[str, Item] = {}
        for item in self._catalog.changes(since_ms, until_ms, brief=True):  # oldest first
            latest[item[ATTR_IMAGE_ID]["S"]] = item
        pending: dict[str, Item] = {}
        for image_id, item in latest.items():
            revision = item.get(ATTR_REVISION, {}).get("S")
            if revision is not None and self._revisions.get(image_id, "") == revision:
                continue  # applied already (the overlap re-reads it)
            pending[image_id] = item
        wanted = [image_id for image_id, item in pending.items() if self._searchable(item)]
        fetched = self._catalog.vector_items(wanted) if wanted else {}
        return pending, fetched

    def _apply_changes(
        self, pending: Mapping[str, Item], fetched: Mapping[str, Item], now: float
    ) -> None:
        assert self._matrix is not None
        for image_id, item in pending.items():
            if not self._searchable(item):  # deleted, rejected or failed
                self._matrix.remove(image_id)
                self._revisions[image_id] = item.get(ATTR_REVISION, {}).get("S")
            else:
                found = fetched.get(image_id)
                if found is None:  # gone from the table (a tombstone's TTL ran out)
                    self._matrix.remove(image_id)
                    self._revisions.pop(image_id, None)
                else:
                    self._apply(self._matrix, found)
            self.applied_changes += 1
        self._watermark = now

    def _searchable(self, item: Item) -> bool:
        """Whether a change row may carry a vector of this model: any indexed record,
        since during a model switch this model's vector may be in the second slot of a
        record of the other model (the fetched item says which: ``_apply``)."""
        return item.get(ATTR_STATUS, {}).get("S") == STATUS_INDEXED

    def _apply(self, matrix: MatrixIndex, item: Item) -> None:
        image_id = item[ATTR_IMAGE_ID]["S"]
        self._revisions[image_id] = item.get(ATTR_REVISION, {}).get("S")
        chosen = (
            select_slot(item, self._model_id, self._dimension) if self._searchable(item) else None
        )
        blob = None if chosen is None else chosen.get(ATTR_VECTOR, {}).get("B")
        searchable = blob is not None and len(blob) == self._dimension * VECTOR_DTYPE.itemsize
        if searchable:
            assert blob is not None
            content_type = item.get("content_type", {}).get("S")
            try:
                matrix.upsert(image_id, item[ATTR_KEY]["S"], content_type, decode_vector(blob))
                return
            except ValueError:
                logger.warning("skipped a record with an unusable vector")
        matrix.remove(image_id)


def _keep_refreshing(
    index_ref: weakref.ReferenceType[EmbeddedIndex],
    nudged: threading.Event,
    stopping: threading.Event,
    interval: float,
) -> None:
    """The background refresher's loop. It holds its index weakly: an index nobody
    serves any more (a model switch replaced it) stops refreshing."""
    while True:
        nudged.wait(max(interval, 0.05))
        nudged.clear()
        index = index_ref()
        if index is None or stopping.is_set():
            return
        index._refresh_in_background()
        del index


def _drain(parts: list[list[Item]]) -> Iterator[Item]:
    """Yield every item, letting go of each one as it is consumed (a 100k x 1024
    cold load holds 400 MB of vector bytes in these items)."""
    while parts:
        part = parts.pop()
        part.reverse()
        while part:
            yield part.pop()
