"""Maintenance handler (EventBridge schedule): moves a configured model switch on by
one step, keeps the embedded index's S3 snapshot current and reports the number of
indexed images (the capacity alarm's metric).

Same asset and settings as the search function; thin: the work is in
``imagesearch.switch`` and ``imagesearch.index.maintenance``.
"""

from __future__ import annotations

import time
from typing import Any

from imagesearch.composition import build_catalog, build_snapshot_store, build_switch_orchestrator
from imagesearch.index.embedded import EmbeddedIndex
from imagesearch.index.maintenance import refresh_snapshot
from imagesearch.metrics import count
from imagesearch.resources import METRIC_INDEXED_IMAGES
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
        return answer  # the scale tier has no snapshot: this function runs for the switch
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
    result = refresh_snapshot(index, store, clock=time.time, count_changes=catalog.count_changes)
    count(METRIC_INDEXED_IMAGES, result.count)
    answer.update(
        {
            "written": result.written,
            "reason": result.reason,
            "images": result.count,
            "watermark_ms": result.watermark_ms,
        }
    )
    return answer
