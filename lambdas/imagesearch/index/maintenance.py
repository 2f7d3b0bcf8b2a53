"""Keeping the embedded index's snapshot current (the maintenance handler's work).

Each run (every minute) first checks cheaply: the current snapshot's header (one small
GET) and how many change-log entries were written since its watermark (COUNT queries,
no item read). With fewer than ``after_changes`` changes and a snapshot younger than
``max_lag`` (or no change at all and one younger than ``max_age``) it stops there.
Otherwise it loads the index the way a search instance does (the snapshot plus the
change log since its watermark, or a Scan when there is no usable snapshot) and writes
a new snapshot when anything changed, when there was none usable, or when the current
one is older than ``max_age`` (so the bucket's expiry never removes a live snapshot).

Every ``reconcile_every`` seconds a run first compares the snapshot with the catalog
(``index.reconcile``): a write that no change-log reader saw is re-announced in the
change log and the snapshot is rebuilt from a full Scan. A snapshot built by a Scan
counts as reconciled when it was built.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from imagesearch.index.embedded import EmbeddedIndex
from imagesearch.index.reconcile import ReconcileCatalog, Reconciliation, reconcile
from imagesearch.index.snapshot import SnapshotStore
from imagesearch.resources import (
    INDEX_REFRESH_OVERLAP_SECONDS,
    SNAPSHOT_AFTER_CHANGES,
    SNAPSHOT_MAX_LAG_SECONDS,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_AGE = 24 * 3600.0


@dataclass(frozen=True)
class MaintenanceResult:
    written: bool
    reason: str
    count: int
    watermark_ms: int
    # When ``count`` was true (epoch ms): the snapshot's or loaded index's watermark, or
    # the run's time when nothing changed since (GET /health's images_as_of).
    counted_ms: int
    reconciliation: Reconciliation | None = None  # when this run reconciled


def refresh_snapshot(
    index: EmbeddedIndex,
    store: SnapshotStore,
    *,
    clock: Callable[[], float],
    max_age: float = DEFAULT_MAX_AGE,
    count_changes: Callable[[int, int], int] | None = None,
    after_changes: int = SNAPSHOT_AFTER_CHANGES,
    max_lag: float = SNAPSHOT_MAX_LAG_SECONDS,
    reconcile_with: ReconcileCatalog | None = None,
    reconcile_every: float | None = None,
    overlap: float = INDEX_REFRESH_OVERLAP_SECONDS,
) -> MaintenanceResult:
    """Bring ``store``'s snapshot up to date with the catalog (see module doc).
    ``count_changes(since_ms, until_ms)``: the change log's count (None: no cheap check,
    every run loads). ``reconcile_with``/``reconcile_every``: the catalog and period of
    the reconciliation (None: none); ``overlap``: the search instances' re-read window."""
    reconciliation = None
    if reconcile_with is not None and reconcile_every is not None:
        reconciliation = _reconcile_if_due(
            index, store, reconcile_with, clock(), reconcile_every, overlap
        )
        if reconciliation is not None and reconciliation.differences:
            # The snapshot line is wrong: rebuild from a full read, not from it.
            index.reload_from_catalog()
            reason = f"reconciled: {reconciliation.differences} rows differed from the catalog"
            return _write(index, store, reason, True, reconciliation)
    due = None
    if count_changes is not None:
        checked = _check(index, store, clock(), count_changes, after_changes, max_lag, max_age)
        if isinstance(checked, MaintenanceResult):
            return replace(checked, reconciliation=reconciliation)
        due = checked
    index.refresh()  # loads: snapshot + catch-up, or Scan (fallback logged)
    header = index.snapshot_header(max_age=0)
    if index.source != "snapshot" or header is None:
        reason = "no usable snapshot"
    elif due is not None:
        # Written even when every counted change was in the snapshot already (written
        # while it was being made): the watermark moves past them, or every run would load.
        reason = due
    elif index.applied_changes:
        reason = f"{index.applied_changes} changes since the snapshot"
    elif clock() - header.created_ms / 1000 > max_age:
        reason = "snapshot older than its maximum age"
    else:
        loaded = index.loaded_image_count()
        count, counted_ms = (
            (0, header.watermark_ms) if loaded is None else (loaded.images, loaded.as_of_ms)
        )
        return MaintenanceResult(
            False,
            "unchanged",
            count,
            header.watermark_ms,
            counted_ms,
            reconciliation=reconciliation,
        )
    # A snapshot loaded by Scan is a full read of the catalog: reconciled as of then.
    return _write(index, store, reason, index.source == "scan", reconciliation)


def _write(
    index: EmbeddedIndex,
    store: SnapshotStore,
    reason: str,
    full_read: bool,
    reconciliation: Reconciliation | None,
) -> MaintenanceResult:
    """Write the index as a snapshot; ``full_read``: it was loaded by a Scan (the
    pointer records it as reconciled then)."""
    with index.exported() as exported:  # the live rows: no copy of the matrix
        written = store.write(
            model_id=index.model_id,
            dimension=index.dimension,
            watermark_ms=int(exported.watermark * 1000),
            ids=exported.ids,
            keys=exported.keys,
            content_types=exported.content_types,
            revisions=exported.revisions,
            matrix=exported.rows,
            reconciled_ms=int(exported.watermark * 1000) if full_read else None,
        )
    logger.info("wrote an index snapshot of %d vectors (%s)", written.count, reason)
    return MaintenanceResult(
        True,
        reason,
        written.count,
        written.watermark_ms,
        written.watermark_ms,
        reconciliation=reconciliation,
    )


def _reconcile_if_due(
    index: EmbeddedIndex,
    store: SnapshotStore,
    catalog: ReconcileCatalog,
    now: float,
    every: float,
    overlap: float,
) -> Reconciliation | None:
    """Compare the current snapshot with the catalog when the last comparison (or full
    read) is ``every`` seconds old; None when not due or there is no snapshot of this
    model (the normal path then builds one by Scan). With no difference the pointer
    records the time; otherwise the caller rebuilds."""
    header, reconciled_ms = store.read_pointer()
    if header is None or (header.model_id, header.dimension) != (index.model_id, index.dimension):
        return None
    now_ms = int(now * 1000)
    if now_ms - reconciled_ms < every * 1000:
        return None
    result = reconcile(
        catalog,
        store.read_revisions(header),
        model_id=index.model_id,
        dimension=index.dimension,
        cutoff_ms=header.watermark_ms - int(overlap * 1000),
    )
    logger.info(
        "reconciled the index snapshot with the catalog: %d rows, %d indexed in the change "
        "log (%d read), %d read again by key, %d differences",
        result.snapshot_rows,
        result.catalog_rows,
        result.scanned,
        result.checked,
        result.differences,
    )
    if not result.differences:
        store.mark_reconciled(header, now_ms)
    return result


def _check(
    index: EmbeddedIndex,
    store: SnapshotStore,
    now: float,
    count_changes: Callable[[int, int], int],
    after_changes: int,
    max_lag: float,
    max_age: float,
) -> MaintenanceResult | str | None:
    """The result of a run that writes nothing; else why a write is due (None: no
    usable snapshot, or one past its maximum age: the full path decides)."""
    header = store.read_header()
    if header is None or (header.model_id, header.dimension) != (index.model_id, index.dimension):
        return None
    if now - header.created_ms / 1000 > max_age:
        return None
    lag = now - header.watermark_ms / 1000
    changes = count_changes(header.watermark_ms, int(now * 1000))
    if changes >= after_changes:
        return f"{changes} changes since the snapshot"
    if changes and lag >= max_lag:
        return f"{changes} changes in {lag:.0f} s"
    if not changes:  # the snapshot's count is still true now
        return MaintenanceResult(
            False, "unchanged", header.count, header.watermark_ms, int(now * 1000)
        )
    reason = f"{changes} changes in {lag:.0f} s: not due yet"
    return MaintenanceResult(False, reason, header.count, header.watermark_ms, header.watermark_ms)
