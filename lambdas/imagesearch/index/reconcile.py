"""Reconciling the embedded index's snapshot with the catalog (docs/decisions.md entry 41).

The change log only shows a write to readers whose re-read window still covers its
``changed_at`` stamp. A write committed later than that after its stamp (its outcome was
unknown to its writer: every attempt timed out, yet DynamoDB applied one) is missed by
every refresh and, since each snapshot builds on the previous one, by every later
snapshot. The maintenance function therefore compares, every
``RECONCILE_INTERVAL_SECONDS``, the current snapshot's (id, revision) pairs (its metadata:
one ranged GET, no vector) with the catalog's, read by a Scan of the change log's GSI
(~200 bytes an item, no vector). A row disagrees when the catalog's state is older than
the snapshot's re-read window (newer ones reach readers through the change log) and the
snapshot holds it at another revision, lacks an indexed record of its model, or holds a
record that is not (any more) indexed of its model. Every row that disagrees is read
again consistently by key (the GSI is eventually consistent: no repair on a stale view),
then re-announced: written into the change log again under a new stamp and the same
revision, so warm search instances apply it at their next refresh and the maintenance
run rebuilds the snapshot from a full read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from imagesearch.resources import (
    ATTR_ALT_DIMENSION,
    ATTR_ALT_MODEL_ID,
    ATTR_CHANGED_AT,
    ATTR_IMAGE_ID,
    ATTR_REVISION,
    ATTR_STATUS,
    STATUS_INDEXED,
)

logger = logging.getLogger(__name__)

Item = Mapping[str, Mapping[str, Any]]

_ABSENT = object()  # the snapshot has no row of that id


class ReconcileCatalog(Protocol):
    """The catalog reads and the repair the reconciliation needs (``DynamoDBCatalog``)."""

    def change_states(self) -> Iterator[Item]: ...

    def record_states(self, image_ids: Iterable[str]) -> Mapping[str, Item]: ...

    def reannounce(self, image_id: str, revision: str | None) -> bool: ...


@dataclass(frozen=True)
class Reconciliation:
    snapshot_rows: int  # rows of the snapshot compared
    catalog_rows: int  # records of the snapshot's model the change log holds as indexed
    scanned: int  # change-log items read
    checked: int  # rows read again by key (a disagreement, or not in the change log)
    reannounced: list[str] = field(default_factory=list)  # repaired through the change log
    gone: list[str] = field(default_factory=list)  # in the snapshot, no record at all

    @property
    def differences(self) -> int:
        return len(self.reannounced) + len(self.gone)


def reconcile(
    catalog: ReconcileCatalog,
    snapshot_revisions: Mapping[str, str | None],
    *,
    model_id: str,
    dimension: int,
    cutoff_ms: int,
) -> Reconciliation:
    """Compare a snapshot's rows (id -> revision) with the catalog and re-announce each
    record it holds wrongly. ``cutoff_ms``: the snapshot's watermark minus the re-read
    window; catalog states stamped from then on reach every reader by the change log."""
    unseen = dict(snapshot_revisions)  # what the change log has not accounted for yet
    suspects: dict[str, Any] = {}  # id -> the snapshot's revision, or _ABSENT
    scanned = catalog_rows = 0
    for item in catalog.change_states():
        scanned += 1
        image_id = item[ATTR_IMAGE_ID]["S"]
        held = unseen.pop(image_id, _ABSENT)
        expected = _indexed_of(item, model_id, dimension)
        catalog_rows += expected
        if _changed_ms(item) >= cutoff_ms:
            continue
        revision = item.get(ATTR_REVISION, {}).get("S")
        if (expected and held != revision) or (not expected and held is not _ABSENT):
            suspects[image_id] = held
    # Rows the change log did not show: records gone altogether, records from before
    # the change log's GSI existed, or a GSI entry not propagated yet.
    suspects.update(unseen)
    records = catalog.record_states(suspects) if suspects else {}
    reannounced: list[str] = []
    gone: list[str] = []
    for image_id, held in suspects.items():
        record = records.get(image_id)
        if record is None:
            gone.append(image_id)
            continue
        if _changed_ms(record) >= cutoff_ms:
            continue  # rewritten since the scan saw it: the change log covers it
        revision = record.get(ATTR_REVISION, {}).get("S")
        indexed = _indexed_of(record, model_id, dimension)
        if (held == revision) if indexed else (held is _ABSENT):
            continue  # the scan's view was stale
        if catalog.reannounce(image_id, revision):
            reannounced.append(image_id)
        # else: rewritten meanwhile; that write is in the change log
    result = Reconciliation(
        snapshot_rows=len(snapshot_revisions),
        catalog_rows=catalog_rows,
        scanned=scanned,
        checked=len(suspects),
        reannounced=reannounced,
        gone=gone,
    )
    if result.differences:
        logger.warning(
            "the index snapshot disagreed with the catalog: %d records re-announced in the "
            "change log, %d rows without a record (snapshot %d rows, catalog %d indexed)",
            len(reannounced),
            len(gone),
            result.snapshot_rows,
            result.catalog_rows,
        )
    return result


def _changed_ms(item: Item) -> int:
    value = item.get(ATTR_CHANGED_AT, {}).get("N")
    return 0 if value is None else int(value)


def _indexed_of(item: Item, model_id: str, dimension: int) -> bool:
    """Whether the record holds a vector of this model and dimension (either slot)."""
    if item.get(ATTR_STATUS, {}).get("S") != STATUS_INDEXED:
        return False
    dim = str(dimension)
    return (
        item.get("model_id", {}).get("S") == model_id and item.get("dimension", {}).get("N") == dim
    ) or (
        item.get(ATTR_ALT_MODEL_ID, {}).get("S") == model_id
        and item.get(ATTR_ALT_DIMENSION, {}).get("N") == dim
    )
