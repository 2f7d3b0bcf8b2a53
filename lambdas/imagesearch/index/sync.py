"""How ingest makes a vector index follow the catalog (the ``VectorSync`` port).

The catalog is the source of truth and orders every write by the S3 sequencer
(conditional writes). A vector index may have no conditional writes at all (S3
Vectors), so it is never written from what a writer *meant* to store, only from what
the catalog *holds*, verified afterwards:

    read the records -> write their state to the index -> read them again
    until two reads of each agree (same revision)

Why that is enough, for any interleaving of writers: take the last index write W of
an image. Its writer read the record before W and reads it again after W; if the two
reads agree, no catalog write fell between them, and any later catalog write has its
own writer's index write after it, later than W: a contradiction. So when every writer
has returned, the index holds exactly the catalog's state: an older event never
leaves its vector, a deleted image never leaves a vector. A writer that fails in
between fails its message, and the retry syncs again.

The argument is per image, so it holds unchanged for a batch: ingest syncs the images
of a whole SQS message batch together, one consistent BatchGetItem, one PutVectors for
the indexed ones and one DeleteVectors for the rest (500 per call), one verifying
BatchGetItem, and another round only for the ids whose two reads disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from imagesearch.errors import ImageSearchError
from imagesearch.ports import Catalog, VectorEntry, VectorIndex
from imagesearch.records import ImageRecord
from imagesearch.resources import STATUS_INDEXED

# Each round means another writer changed a record meanwhile: a handful of rounds
# covers any realistic burst of events for one key; then the message is retried.
MAX_SYNC_ROUNDS = 8


class SyncContention(ImageSearchError):
    """The record kept changing while its vector was written; the message retries."""


class FollowsCatalog:
    """The embedded tier: search instances read the catalog's change log themselves,
    so there is nothing to write at ingest."""

    def sync(self, image_ids: Sequence[str]) -> dict[str, Exception]:
        return {}

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
        also: Sequence[tuple[VectorIndex, str, int]] = (),
    ) -> None:
        self._catalog = catalog
        # (index, model, dimension): during a model switch also the previous model's
        # index, which gets each record's vector of that model (either slot).
        self._indexes = [(index, model_id, dimension), *also]
        self._max_rounds = max_rounds

    def sync(self, image_ids: Sequence[str]) -> dict[str, Exception]:
        """Bring the index in line with the catalog for ``image_ids``. Returns the ids
        it could not (a failed call fails every id it carried; ids whose record kept
        changing fail with SyncContention), each with its error: their messages fail
        and the queue retries them. An empty dict: all synced."""
        pending = list(dict.fromkeys(image_ids))
        if not pending:
            return {}
        try:
            records = self._read(pending)
            for _ in range(self._max_rounds):
                self._write(pending, records)
                again = self._read(pending)
                pending = [
                    i for i in pending if _revision(again.get(i)) != _revision(records.get(i))
                ]
                if not pending:
                    return {}
                records = again
        except Exception as error:  # noqa: BLE001  (returned: the caller fails these messages)
            return dict.fromkeys(pending, error)
        return {
            image_id: SyncContention(
                f"the record of {image_id} changed {self._max_rounds} times while its vector"
                " was written; retrying"
            )
            for image_id in pending
        }

    def written(self, image_id: str) -> None:
        """Sync one image; raises what ``sync`` would return for it."""
        failed = self.sync([image_id])
        if failed:
            raise failed[image_id]

    def _read(self, image_ids: Sequence[str]) -> Mapping[str, ImageRecord]:
        return self._catalog.get_many(
            image_ids, with_vector=True, include_deleted=True, consistent=True
        )

    def _write(self, image_ids: Sequence[str], records: Mapping[str, ImageRecord]) -> None:
        for index, model_id, dimension in self._indexes:
            entries: list[VectorEntry] = []
            gone: list[str] = []
            for image_id in image_ids:
                record = records.get(image_id)
                vector = (
                    record.vector_for(model_id, dimension)
                    if record is not None and record.status == STATUS_INDEXED
                    else None
                )
                if record is not None and vector is not None:
                    entries.append(
                        VectorEntry(record.image_id, record.key, record.content_type, vector)
                    )
                else:
                    gone.append(image_id)
            if entries:
                index.upsert(entries)
            if gone:
                index.delete(gone)


def _revision(record: ImageRecord | None) -> tuple[str | None, str | None] | None:
    return None if record is None else (record.sequencer, record.revision)
