"""Local mode's embedding cache: the same bytes (or text) under another name, or again
after a restart, cost no model call. Keyed by the content's SHA-256, the model id and
the dimension; stored in ``STATE_DIR/embeddings.sqlite`` (one file, atomic writes).
Local mode only: the Lambda path embeds as it always does."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imagesearch.embedders.base import (
    Embedder,
    EmbedInput,
    ModelLimits,
    Purpose,
    Vector,
    embed_images,
    limits_of,
)

CACHE_NAME = "embeddings.sqlite"


def cache_key(
    model_id: str,
    dimension: int,
    text: str | None,
    image: bytes | None,
    purpose: str = "document",
) -> str:
    digest = hashlib.sha256()
    for part in (model_id, str(dimension), purpose, "text", text or "", "image"):
        digest.update(part.encode("utf-8") + b"\0")
    digest.update(hashlib.sha256(image).digest() if image is not None else b"")
    return digest.hexdigest()


class EmbeddingCache:
    """key -> float32 vector bytes in SQLite (WAL: readers never wait for a writer)."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (key TEXT PRIMARY KEY, vector BLOB NOT NULL)"
        )
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Vector | None:
        with self._lock:
            row = self._db.execute("SELECT vector FROM embeddings WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return np.frombuffer(row[0], dtype="<f4").astype(np.float32)

    def put(self, key: str, vector: Vector) -> None:
        blob = np.asarray(vector, dtype="<f4").tobytes()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO embeddings (key, vector) VALUES (?, ?)", (key, blob)
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedEmbedder:
    """The Embedder port in front of ``inner``: a cached vector is returned as is; a
    miss asks the model and keeps the answer. Errors are never cached."""

    def __init__(self, inner: Embedder, cache: EmbeddingCache) -> None:
        self._inner = inner
        self._cache = cache

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    @property
    def dimension(self) -> int:
        return self._inner.dimension

    @property
    def limits(self) -> ModelLimits:
        return limits_of(self._inner)

    def embed(
        self,
        *,
        text: str | None = None,
        image: bytes | None = None,
        purpose: Purpose = "document",
    ) -> Vector:
        # (models embed queries and documents differently: the purpose is in the key)
        key = cache_key(self.model_id, self.dimension, text, image, purpose)
        cached = self._cache.get(key)
        if cached is not None and cached.shape == (self.dimension,):
            return cached
        vector = self._inner.embed(text=text, image=image, purpose=purpose)
        self._cache.put(key, vector)
        return vector

    def embed_images(self, items: Sequence[EmbedInput]) -> list[Vector]:
        """Stored images: the cached ones as they are, the misses in as few model calls
        as the inner embedder allows."""
        keys = [
            cache_key(self.model_id, self.dimension, i.text, i.image, "document") for i in items
        ]
        found: list[Vector | None] = []
        for key in keys:
            cached = self._cache.get(key)
            found.append(
                cached if cached is not None and cached.shape == (self.dimension,) else None
            )
        missing = [n for n, vector in enumerate(found) if vector is None]
        for n, vector in zip(
            missing, embed_images(self._inner, [items[n] for n in missing]), strict=True
        ):
            self._cache.put(keys[n], vector)
            found[n] = vector
        return [vector for vector in found if vector is not None]
