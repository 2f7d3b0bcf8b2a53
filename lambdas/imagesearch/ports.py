"""Ports of the domain: the small interfaces the ingest and search services talk to.

- ``Catalog``: the image records and their vectors (source of truth; DynamoDB).
- ``VectorIndex``: vectors searchable with filters, derived from the catalog (in-memory
  "embedded" tier, or Amazon S3 Vectors). ``query`` caps ``top_k`` at 100 (the S3
  Vectors limit) and takes filters that map onto metadata filters.
- ``VectorSync``: how ingest makes the vector index follow a catalog write.
- ``ObjectStore``: the images bucket.

Adapters live beside them; tests pass moto-backed adapters or the in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from imagesearch.embedders.base import Vector
from imagesearch.records import ImageRecord

MAX_TOP_K = 100


@dataclass(frozen=True)
class QueryFilters:
    """Filters applied during a vector query."""

    prefix: str | None = None
    content_types: tuple[str, ...] | None = None
    min_score: float | None = None
    exclude_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScoredId:
    image_id: str
    score: float


@dataclass(frozen=True)
class Page:
    items: list[ImageRecord]
    cursor: str | None


@dataclass(frozen=True)
class VectorEntry:
    """One vector of the index and the fields its filters need."""

    image_id: str
    key: str
    content_type: str | None
    vector: Vector = field(repr=False)


class Catalog(Protocol):
    """The image records: the source of truth for status, metadata, ordering tokens and
    each indexed image's vector (any vector index can be rebuilt from it)."""

    def put(self, record: ImageRecord) -> bool:
        """Store ``record`` (with ``record.vector`` when indexed) unless a newer state for
        its key is stored (``record.sequencer`` orders them). False when skipped as stale."""
        ...

    def delete(self, image_id: str, *, key: str, sequencer: str) -> bool:
        """Record the image as deleted unless a newer state is stored. False when stale."""
        ...

    def tombstone(self, record: ImageRecord) -> bool:
        """Record the image as deleted (the API's DELETE) if ``record``, as read, is
        still the stored revision; its token orders it just after that record. False
        when the record changed since it was read."""
        ...

    def get(
        self, image_id: str, *, with_vector: bool = False, include_deleted: bool = False
    ) -> ImageRecord | None:
        """The record, read consistently; deleted images are None unless ``include_deleted``."""
        ...

    def get_many(
        self,
        image_ids: Sequence[str],
        *,
        with_vector: bool = False,
        include_deleted: bool = False,
        consistent: bool = False,
    ) -> dict[str, ImageRecord]:
        """Records of the ids that exist (missing ones left out; deleted ones too unless
        ``include_deleted``), in batches; ``consistent`` reads see every earlier write."""
        ...

    def list(
        self, *, prefix: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page:
        """Records (without vectors, never deleted ones), ordered by key, paged by an
        opaque cursor. Raises ValueError for a malformed cursor."""
        ...

    def counts(self) -> dict[str, int]:
        """Number of records per listable status."""
        ...

    def indexed_vectors(
        self, *, model_id: str, dimension: int, segment: int = 0, total_segments: int = 1
    ) -> Iterator[VectorEntry]:
        """Every indexed image's vector of this model and dimension (rebuilding an index),
        or one ``segment`` of ``total_segments`` disjoint parts (read in parallel)."""
        ...


class VectorIndex(Protocol):
    """Vectors of the indexed images, searchable with filters. Derived from the catalog."""

    @property
    def dimension(self) -> int: ...

    def upsert(self, entries: Sequence[VectorEntry]) -> None:
        """Insert or replace vectors (by image id)."""
        ...

    def delete(self, image_ids: Sequence[str]) -> None:
        """Remove vectors; unknown ids are ignored."""
        ...

    def query(self, vector: Vector, top_k: int, filters: QueryFilters) -> list[ScoredId]:
        """Cosine top-k (1 <= top_k <= MAX_TOP_K), best first, ties by id. Raises ValueError
        for a vector of another dimension."""
        ...

    def get_vectors(self, image_ids: Sequence[str]) -> dict[str, Vector]:
        """Stored unit vectors of the ids the index holds."""
        ...

    def count(self) -> int:
        """Number of vectors held."""
        ...


class VectorSync(Protocol):
    """Makes the vector index agree with the catalog after catalog writes (ingest)."""

    def sync(self, image_ids: Sequence[str]) -> dict[str, Exception]:
        """Sync the vectors of ``image_ids`` (written to the catalog before the call) in
        as few index calls as possible. Returns the ids it could not sync, each with
        its error: their messages must fail so that the queue retries them."""
        ...


@dataclass(frozen=True)
class StoredObject:
    key: str
    body: bytes
    etag: str
    size: int
    content_type: str | None
    last_modified: str | None  # ISO 8601 UTC
    metadata: dict[str, str]


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    etag: str
    size: int
    last_modified: str | None


class ObjectTooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"object is {size} bytes; the limit is {limit} bytes")
        self.size = size
        self.limit = limit


class ObjectStore(Protocol):
    """The images bucket."""

    def get(self, key: str, *, max_bytes: int) -> StoredObject | None:
        """The object, or None when it does not exist (any more). Raises
        ObjectTooLarge without downloading the body when it exceeds ``max_bytes``."""
        ...

    def head(self, key: str) -> ObjectInfo | None: ...

    def put(self, key: str, body: bytes, *, content_type: str) -> None: ...

    def delete(self, key: str) -> None: ...

    def list_keys(self, prefix: str) -> Iterator[ObjectInfo]: ...

    def presign_get(
        self,
        key: str,
        *,
        expires_in: int = 900,
        content_type: str,
        attachment: bool = False,
        version: str | None = None,
    ) -> str:
        """A GET URL, valid for at least ``expires_in`` seconds, whose response says
        ``content_type`` (whatever the object's own metadata claims) and, with
        ``attachment``, makes a browser download, not render. ``version`` (the object's
        ETag, when known): the same URL may be handed out again only for the same one."""
        ...

    def presign_put(
        self,
        key: str,
        *,
        content_type: str,
        content_length: int,
        expires_in: int = 900,
        overwrite: bool = False,
    ) -> tuple[str, dict[str, str]]:
        """URL and the headers the client must send with its PUT (both signed); unless
        ``overwrite``, the PUT fails (412) when the key exists."""
        ...
