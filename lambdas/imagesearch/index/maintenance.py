"""Keeping the embedded index's snapshot current (the maintenance handler's work).

Each run loads the index the way a search instance does (the current snapshot plus the
change log since its watermark, or a Scan when there is no usable snapshot) and writes
a new snapshot when anything changed, when there was none usable, or when the current
one is older than ``max_age`` (so the bucket's expiry never removes a live snapshot).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from imagesearch.index.embedded import EmbeddedIndex
from imagesearch.index.snapshot import SnapshotStore

logger = logging.getLogger(__name__)

DEFAULT_MAX_AGE = 24 * 3600.0


@dataclass(frozen=True)
class MaintenanceResult:
    written: bool
    reason: str
    count: int
    watermark_ms: int


def refresh_snapshot(
    index: EmbeddedIndex,
    store: SnapshotStore,
    *,
    clock: Callable[[], float],
    max_age: float = DEFAULT_MAX_AGE,
) -> MaintenanceResult:
    """Bring ``store``'s snapshot up to date with the catalog (see module doc)."""
    index.refresh()  # loads: snapshot + catch-up, or Scan (fallback logged)
    header = index.snapshot_header(max_age=0)
    if index.source != "snapshot" or header is None:
        reason = "no usable snapshot"
    elif index.applied_changes:
        reason = f"{index.applied_changes} changes since the snapshot"
    elif clock() - header.created_ms / 1000 > max_age:
        reason = "snapshot older than its maximum age"
    else:
        count = index.loaded_count() or 0
        return MaintenanceResult(False, "unchanged", count, header.watermark_ms)
    watermark, ids, keys, types, revisions, rows = index.export()
    written = store.write(
        model_id=index.model_id,
        dimension=index.dimension,
        watermark_ms=int(watermark * 1000),
        ids=ids,
        keys=keys,
        content_types=types,
        revisions=revisions,
        matrix=rows,
    )
    logger.info("wrote an index snapshot of %d vectors (%s)", written.count, reason)
    return MaintenanceResult(True, reason, written.count, written.watermark_ms)
