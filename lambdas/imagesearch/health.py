"""GET /health's image count at constant cost (docs/decisions.md entry 39).

/health is unauthenticated, so it must never count the catalog: one publisher (the
maintenance function) writes the count to one item, and every search instance reads
that item by GetItem at most once per ``IMAGE_COUNT_READ_SECONDS``. The embedded tier
publishes the count of the index it loads each run; the scale tier recounts the
catalog's indexed records (a COUNT query) at most every ``SCALE_COUNT_INTERVAL_SECONDS``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from botocore.exceptions import BotoCoreError, ClientError

from imagesearch.resources import IMAGE_COUNT_READ_SECONDS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageCount:
    """How many images were searchable at ``as_of_ms`` (epoch milliseconds).

    ``model_id``/``dimension``: the model space counted (the embedded tier's index);
    None: every indexed record of the catalog, whatever its model (the scale tier)."""

    images: int
    as_of_ms: int
    model_id: str | None = None
    dimension: int | None = None

    def counts(self, model_id: str, dimension: int) -> bool:
        """Whether this is a count of that model space's images."""
        return self.model_id is None or (self.model_id, self.dimension) == (model_id, dimension)


class CountStore(Protocol):
    def published_count(self) -> ImageCount | None: ...

    def publish_count(self, count: ImageCount) -> None: ...

    def indexed_count(self) -> int: ...


class PublishedCount:
    """The published count as a search instance sees it: read by one GetItem at most
    once per ``max_age`` seconds (a failed read is logged and answers None until then)."""

    def __init__(
        self,
        read: Callable[[], ImageCount | None],
        *,
        clock: Callable[[], float],
        max_age: float = IMAGE_COUNT_READ_SECONDS,
    ) -> None:
        self._read = read
        self._clock = clock
        self._max_age = max_age
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._count: ImageCount | None = None

    def __call__(self) -> ImageCount | None:
        with self._lock:
            now = self._clock()
            if self._read_at is not None and now - self._read_at < self._max_age:
                return self._count
            try:
                self._count = self._read()
            except (ClientError, BotoCoreError, ValueError) as error:
                logger.warning("could not read the published image count: %s", error)
                self._count = None
            self._read_at = now
            return self._count

    def forget(self) -> None:
        """Read it again on the next call (local mode, after it published a new one)."""
        with self._lock:
            self._read_at = None


def publish_indexed_count(
    store: CountStore, *, clock: Callable[[], float], interval: float
) -> ImageCount | None:
    """The scale tier's job: when the published count is ``interval`` seconds old or
    missing, count the catalog's indexed records and publish that; returns the count
    published, or None when none was due (one GetItem then, nothing else)."""
    started_ms = int(clock() * 1000)
    current = store.published_count()
    if current is not None and started_ms - current.as_of_ms < interval * 1000:
        return None
    # As of when the count began: whatever changes while it runs may be missed.
    count = ImageCount(store.indexed_count(), started_ms)
    store.publish_count(count)
    return count
