"""In-memory doubles of the ``Catalog`` and ``VectorIndex`` ports for unit tests.

``InMemoryCatalog`` keeps the DynamoDB adapter's rules that callers rely on: writes
are ordered by the sequencer (an older state never overwrites a newer one, equal
tokens may rewrite), deletes leave tombstones, every write gets a new revision, and
reads return copies. ``InMemoryVectorIndex`` is the real ``MatrixIndex`` behind the
``VectorIndex`` port. Both record the calls made to them.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from imagesearch.embedders.base import Vector
from imagesearch.index.matrix import MatrixIndex
from imagesearch.ports import Page, QueryFilters, ScoredId, VectorEntry
from imagesearch.records import ImageRecord, api_delete_token

_LISTABLE = ("indexed", "rejected")


class InMemoryCatalog:
    def __init__(self) -> None:
        self.records: dict[str, ImageRecord] = {}
        self.list_calls: list[dict[str, Any]] = []
        self.writes = 0
        self.batch_reads = 0
        self.item_by_item_batches = False
        # Called before each read or write with its name and ids: tests interleave
        # writers here (a batch read is one call, as BatchGetItem is one request).
        self.before: Callable[[str, list[str]], None] = lambda operation, image_ids: None

    # -- writes ------------------------------------------------------------------

    def put(self, record: ImageRecord) -> bool:
        if record.status not in _LISTABLE:
            raise ValueError(f"cannot put a record with status {record.status!r}")
        if not record.sequencer:
            raise ValueError("record.sequencer is required to order writes")
        self.before("put", [record.image_id])
        return self._write(replace(record, revision=uuid.uuid4().hex))

    def delete(self, image_id: str, *, key: str, sequencer: str) -> bool:
        self.before("delete", [image_id])
        tombstone = ImageRecord(
            image_id=image_id,
            key=key,
            status="deleted",
            sequencer=sequencer,
            revision=uuid.uuid4().hex,
        )
        return self._write(tombstone)

    def tombstone(self, record: ImageRecord) -> bool:
        self.before("tombstone", [record.image_id])
        stored = self.records.get(record.image_id)
        if stored is None or stored.revision != record.revision:
            return False
        self.records[record.image_id] = ImageRecord(
            image_id=record.image_id,
            key=record.key,
            status="deleted",
            sequencer=api_delete_token(record.sequencer),
            revision=uuid.uuid4().hex,
        )
        self.writes += 1
        return True

    def _write(self, record: ImageRecord) -> bool:
        stored = self.records.get(record.image_id)
        if stored is not None and (stored.sequencer or "") > (record.sequencer or ""):
            return False
        self.records[record.image_id] = record
        self.writes += 1
        return True

    # -- reads -------------------------------------------------------------------

    def get(
        self, image_id: str, *, with_vector: bool = False, include_deleted: bool = False
    ) -> ImageRecord | None:
        self.before("get", [image_id])
        record = self.records.get(image_id)
        if record is None or (record.status == "deleted" and not include_deleted):
            return None
        return replace(record, vector=record.vector if with_vector else None)

    def get_many(
        self,
        image_ids: Sequence[str],
        *,
        with_vector: bool = False,
        include_deleted: bool = False,
        consistent: bool = False,
    ) -> dict[str, ImageRecord]:
        """One batch read: a single ``before`` call (one BatchGetItem request), or with
        ``item_by_item_batches`` one per item (DynamoDB reads the items of a batch at
        different moments)."""
        wanted = list(dict.fromkeys(image_ids))
        if not self.item_by_item_batches:
            self.before("get_many", wanted)
        self.batch_reads += 1
        found = {}
        for image_id in wanted:
            if self.item_by_item_batches:
                self.before("get_many", [image_id])
            record = self.records.get(image_id)
            if record is None or (record.status == "deleted" and not include_deleted):
                continue
            found[image_id] = replace(record, vector=record.vector if with_vector else None)
        return found

    def list(
        self, *, prefix: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page:
        self.list_calls.append({"prefix": prefix, "status": status, "limit": limit})
        start = 0
        if cursor is not None:
            if not cursor.startswith("at:") or not cursor[3:].isdigit():
                raise ValueError("malformed cursor")
            start = int(cursor[3:])
        items = sorted(
            (
                replace(r, vector=None)
                for r in self.records.values()
                if r.status in _LISTABLE
                and (not prefix or r.key.startswith(prefix))
                and (not status or r.status == status)
            ),
            key=lambda r: r.key,
        )
        page = items[start : start + limit]
        more = start + limit < len(items)
        return Page(items=page, cursor=f"at:{start + limit}" if more else None)

    def counts(self) -> dict[str, int]:
        statuses = [r.status for r in self.records.values()]
        return {status: statuses.count(status) for status in _LISTABLE}

    def indexed_vectors(
        self, *, model_id: str, dimension: int, segment: int = 0, total_segments: int = 1
    ) -> Iterator[VectorEntry]:
        for record in list(self.records.values()):
            if (
                zlib.crc32(record.image_id.encode()) % total_segments == segment
                and record.status == "indexed"
                and record.vector is not None
                and record.model_id == model_id
                and record.dimension == dimension
            ):
                yield VectorEntry(record.image_id, record.key, record.content_type, record.vector)


class InMemoryVectorIndex:
    """The ``VectorIndex`` port on the real ``MatrixIndex``."""

    def __init__(self, dimension: int) -> None:
        self.matrix = MatrixIndex(dimension)
        self.queries: list[tuple[int, QueryFilters]] = []
        self.before: Callable[[str, Sequence[str]], None] = lambda operation, ids: None

    @property
    def dimension(self) -> int:
        return self.matrix.dimension

    def upsert(self, entries: Sequence[VectorEntry]) -> None:
        self.before("upsert", [e.image_id for e in entries])
        for entry in entries:
            self.matrix.upsert(entry.image_id, entry.key, entry.content_type, entry.vector)

    def delete(self, image_ids: Sequence[str]) -> None:
        self.before("delete", list(image_ids))
        for image_id in image_ids:
            self.matrix.remove(image_id)

    def query(self, vector: Vector, top_k: int, filters: QueryFilters) -> list[ScoredId]:
        self.queries.append((top_k, filters))
        return self.matrix.query(vector, top_k, filters)

    def get_vectors(self, image_ids: Sequence[str]) -> dict[str, Vector]:
        found = {image_id: self.matrix.vector(image_id) for image_id in image_ids}
        return {image_id: v for image_id, v in found.items() if v is not None}

    def count(self) -> int:
        return len(self.matrix)


class EmptyCatalogFeed:
    """The embedded index's catalog reads over an empty catalog: the index holds only
    what is upserted into it (the vector-index contract suite)."""

    def scan_vector_items(
        self, *, model_id: str, dimension: int, segment: int = 0, total_segments: int = 1
    ) -> Iterator[dict[str, Any]]:
        return iter(())

    def changes(
        self, since_ms: int, until_ms: int, *, brief: bool = False
    ) -> Iterator[dict[str, Any]]:
        return iter(())
