"""How ingest makes a vector index follow the catalog (the ``VectorSync`` port).

The catalog is the source of truth and orders every write by the S3 sequencer
(conditional writes). A vector index may have no conditional writes at all (S3
Vectors), so it is never written from what a writer *meant* to store, only from what
the catalog *holds*, verified afterwards:

    read the record -> write its state to the index -> read again
    until two reads agree (same revision)

Why that is enough, for any interleaving of writers: take the last index write W of
an image. Its writer read the record before W and reads it again after W; if the two
reads agree, no catalog write fell between them, and any later catalog write has its
own writer's index write after it, later than W: a contradiction. So when every writer
has returned, the index holds exactly the catalog's state: an older event never
leaves its vector, a deleted image never leaves a vector. A writer that crashes in
between fails its message, and the retry syncs again.
"""

from __future__ import annotations

from imagesearch.errors import ImageSearchError
from imagesearch.ports import Catalog, VectorEntry, VectorIndex
from imagesearch.records import ImageRecord
from imagesearch.resources import STATUS_INDEXED

# Each round means another writer changed the record meanwhile: a handful of rounds
# covers any realistic burst of events for one key; then the message is retried.
MAX_SYNC_ROUNDS = 8


class SyncContention(ImageSearchError):
    """The record kept changing while its vector was written; the message retries."""


class FollowsCatalog:
    """The embedded tier: search instances read the catalog's change log themselves,
    so there is nothing to write at ingest."""

    def written(self, image_id: str) -> None:
        return None


class ReadAfterWriteSync:
    """Index writes verified against the catalog (see the module docstring)."""

    def __init__(
        self,
        catalog: Catalog,
        index: VectorIndex,
        *,
        model_id: str,
        dimension: int,
        max_rounds: int = MAX_SYNC_ROUNDS,
    ) -> None:
        self._catalog = catalog
        self._index = index
        self._model_id = model_id
        self._dimension = dimension
        self._max_rounds = max_rounds

    def written(self, image_id: str) -> None:
        record = self._catalog.get(image_id, with_vector=True, include_deleted=True)
        for _ in range(self._max_rounds):
            searchable = (
                record is not None
                and record.status == STATUS_INDEXED
                and record.vector is not None
                and record.model_id == self._model_id
                and record.dimension == self._dimension
            )
            if searchable:
                assert record is not None and record.vector is not None
                entry = VectorEntry(record.image_id, record.key, record.content_type, record.vector)
                self._index.upsert([entry])
            else:
                self._index.delete([image_id])
            again = self._catalog.get(image_id, with_vector=True, include_deleted=True)
            if _revision(again) == _revision(record):
                return
            record = again
        raise SyncContention(
            f"the record of {image_id} changed {self._max_rounds} times while its vector"
            " was written; retrying"
        )


def _revision(record: ImageRecord | None) -> tuple[str | None, str | None] | None:
    return None if record is None else (record.sequencer, record.revision)
