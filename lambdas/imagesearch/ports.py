"""Ports of the domain: the small interfaces the ingest and search services talk to.

Adapters (DynamoDB + in-memory index, S3, Bedrock) live beside them; tests pass
moto-backed adapters or in-memory fakes. S3 Vectors (the planned scale tier) fits
``VectorIndex`` without changing callers: ``query`` caps ``top_k`` at 100 and takes
filters that map onto metadata filters.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from dataclasses import dataclass
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


class VectorIndex(Protocol):
    """Catalog of image records and the vectors of the indexed ones."""

    def upsert(self, record: ImageRecord) -> bool:
        """Store ``record`` (with ``record.vector`` when indexed) unless a newer state
        for its key is already stored (``record.sequencer`` orders them). Returns
        False when the write was skipped as stale."""
        ...

    def delete(self, image_id: str, *, key: str, sequencer: str) -> bool:
        """Remove the image unless a newer state is stored. Returns False when stale."""
        ...

    def get(self, image_id: str, *, with_vector: bool = False) -> ImageRecord | None: ...

    def list(
        self, *, prefix: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page:
        """Records (without vectors, never tombstones), ordered, paged by an opaque cursor.
        Raises ValueError for a malformed cursor."""
        ...

    def query(self, vector: Vector, top_k: int, filters: QueryFilters) -> builtins.list[ScoredId]:
        """Exact cosine top-k among indexed images, best first."""
        ...

    def count(self) -> int:
        """Number of indexed images."""
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
        self, key: str, *, expires_in: int = 900, content_type: str, attachment: bool = False
    ) -> str:
        """A GET URL whose response says ``content_type`` (whatever the object's own
        metadata claims) and, with ``attachment``, makes a browser download, not render."""
        ...

    def presign_put(
        self, key: str, *, content_type: str, content_length: int, expires_in: int = 900
    ) -> tuple[str, dict[str, str]]:
        """URL and the headers the client must send with its PUT (both signed)."""
        ...
