"""Maintenance handler (EventBridge schedule, both tiers, never two runs at once):
moves a configured model switch on by one step, keeps the embedded index's S3 snapshot
current (and, every ``RECONCILE_INTERVAL_SECONDS``, reconciled with the catalog),
publishes GET /health's image count (decision 39) and reports the number of
indexed images (the capacity alarm's metric).

Same asset and settings as the search function; thin: the work is in
``imagesearch.switch`` and ``imagesearch.index.maintenance``.
"""

from __future__ import annotations

import time
from typing import Any

from imagesearch.composition import build_catalog, build_snapshot_store, build_switch_orchestrator
from imagesearch.health import ImageCount, publish_indexed_count
from imagesearch.index.embedded import EmbeddedIndex
from imagesearch.index.maintenance import refresh_snapshot
from imagesearch.metrics import count
from imagesearch.resources import (
    METRIC_CATALOG_DIFFERENCES,
    METRIC_INDEXED_IMAGES,
    RECONCILE_INTERVAL_SECONDS,
    SCALE_COUNT_INTERVAL_SECONDS,
)
from imagesearch.settings import SearchSettings, SettingsError, load_settings
from imagesearch.switch import describe, serving_space


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    settings = load_settings(SearchSettings)
    catalog = build_catalog(settings)
    answer: dict[str, Any] = {}
    state = None
    # Every run: a configured switch moves on; without one, the state item (one GetItem)
    # says whether an abandoned switch must be healed.
    step = build_switch_orchestrator(settings, catalog).step()
    if step.action != "no switch":
        state = step.state
        answer["switch"] = {
            "action": step.action,
            "state": describe(state),
            "enqueued": step.enqueued,
            "removed": step.removed,
        }
    if settings.vector_store != "dynamodb":
        # The scale tier has no snapshot; its count is the catalog's, recounted when due.
        published = publish_indexed_count(
            catalog, clock=time.time, interval=SCALE_COUNT_INTERVAL_SECONDS
        )
        if published is not None:
            count(METRIC_INDEXED_IMAGES, published.images)
            answer["images"] = published.images
        return answer
    store = build_snapshot_store(settings)
    if store is None:
        raise SettingsError("the maintenance function needs INDEX_SNAPSHOT_PREFIX")
    # The snapshot of the model search serves (after a flip: the new one, at once).
    serving = serving_space(settings.deployed_space, settings.previous_space, state)
    index = EmbeddedIndex(
        catalog,
        model_id=serving.model_id,
        dimension=serving.dimension,
        snapshots=store,  # no fallback metric here: building the first one is normal
    )
    result = refresh_snapshot(
        index,
        store,
        clock=time.time,
        count_changes=catalog.count_changes,
        # Not during a model switch: a record's second slot is in no change-log entry,
        # so the comparison would read half the table again by key.
        reconcile_with=catalog if settings.previous_space is None else None,
        reconcile_every=RECONCILE_INTERVAL_SECONDS,
        overlap=settings.index_refresh_overlap_seconds,
    )
    count(METRIC_INDEXED_IMAGES, result.count)
    if result.reconciliation is not None:
        count(METRIC_CATALOG_DIFFERENCES, result.reconciliation.differences)
        answer["reconciled"] = {
            "differences": result.reconciliation.differences,
            "reannounced": len(result.reconciliation.reannounced),
            "scanned": result.reconciliation.scanned,
        }
    # Each run (one PutItem): the count of the snapshot or loaded index, as of when true.
    catalog.publish_count(
        ImageCount(result.count, result.counted_ms, serving.model_id, serving.dimension)
    )
    answer.update(
        {
            "written": result.written,
            "reason": result.reason,
            "images": result.count,
            "watermark_ms": result.watermark_ms,
        }
    )
    return answer
