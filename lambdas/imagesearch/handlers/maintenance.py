"""Maintenance handler (EventBridge schedule): keeps the embedded index's S3 snapshot
current and reports the number of indexed images (the capacity alarm's metric).

Same asset and settings as the search function; thin: the work is in
``imagesearch.index.maintenance``.
"""

from __future__ import annotations

import time
from typing import Any

from imagesearch.composition import build_catalog, build_snapshot_store
from imagesearch.index.embedded import EmbeddedIndex
from imagesearch.index.maintenance import refresh_snapshot
from imagesearch.metrics import count
from imagesearch.resources import METRIC_INDEXED_IMAGES
from imagesearch.settings import SearchSettings, SettingsError, load_settings


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    settings = load_settings(SearchSettings)
    store = build_snapshot_store(settings)
    if store is None:
        raise SettingsError("the maintenance function needs INDEX_SNAPSHOT_PREFIX")
    catalog = build_catalog(settings)
    index = EmbeddedIndex(
        catalog,
        model_id=settings.model_id,
        dimension=settings.dimension,
        snapshots=store,  # no fallback metric here: building the first one is normal
    )
    result = refresh_snapshot(index, store, clock=time.time, count_changes=catalog.count_changes)
    count(METRIC_INDEXED_IMAGES, result.count)
    return {
        "written": result.written,
        "reason": result.reason,
        "images": result.count,
        "watermark_ms": result.watermark_ms,
    }
