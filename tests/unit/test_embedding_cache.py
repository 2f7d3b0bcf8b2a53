"""Local mode's embedding cache (issue 11.1): same content, model and dimension -> no
second model call, across restarts; errors are never cached."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from imagesearch.embedders import ModelLimits
from imagesearch.errors import TransientEmbeddingError
from imagesearch.local.embedding_cache import CachedEmbedder, EmbeddingCache, cache_key


class CountingEmbedder:
    def __init__(self, model_id: str = "m", dimension: int = 16, fail: bool = False) -> None:
        self.model_id = model_id
        self.dimension = dimension
        self.calls = 0
        self.fail = fail

    def embed(
        self, *, text: str | None = None, image: bytes | None = None, purpose: str = "document"
    ) -> np.ndarray:
        self.calls += 1
        if self.fail:
            raise TransientEmbeddingError("busy")
        seed = zlib.crc32((text or "").encode() + (image or b""))
        vector = np.zeros(self.dimension, dtype=np.float32)
        vector[seed % self.dimension] = 1.0
        return vector


def test_the_same_bytes_under_another_name_cost_no_second_call(tmp_path: Path) -> None:
    inner = CountingEmbedder()
    embedder = CachedEmbedder(inner, EmbeddingCache(tmp_path / "e.sqlite"))

    first = embedder.embed(image=b"JPEG BYTES")
    again = embedder.embed(image=b"JPEG BYTES")
    other = embedder.embed(image=b"OTHER BYTES")

    assert inner.calls == 2
    assert np.array_equal(first, again) and again.dtype == np.float32
    assert not np.array_equal(first, other)


def test_the_cache_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    CachedEmbedder(CountingEmbedder(), EmbeddingCache(path)).embed(text="red", image=b"IMG")
    cache = EmbeddingCache(path)
    later = CountingEmbedder()

    CachedEmbedder(later, cache).embed(text="red", image=b"IMG")

    assert later.calls == 0
    assert cache.hits == 1


def test_model_dimension_and_parts_are_part_of_the_key() -> None:
    keys = {
        cache_key("m", 4, None, b"x"),
        cache_key("m", 8, None, b"x"),
        cache_key("other", 4, None, b"x"),
        cache_key("m", 4, "x", None),
        cache_key("m", 4, "x", b"x"),
    }
    assert len(keys) == 5


def test_errors_are_not_cached(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    failing = CountingEmbedder(fail=True)

    with pytest.raises(TransientEmbeddingError):
        CachedEmbedder(failing, cache).embed(image=b"IMG")
    working = CountingEmbedder()
    CachedEmbedder(working, cache).embed(image=b"IMG")

    assert working.calls == 1


class CountingBatchEmbedder(CountingEmbedder):
    """A multi-image model: ``embed_images`` is one call for the whole list."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.batches: list[int] = []

    @property
    def limits(self) -> ModelLimits:
        return ModelLimits(
            native_formats=frozenset({"jpeg"}), max_side=64, max_bytes=1000, max_batch=8
        )

    def embed_images(self, items: list) -> list[np.ndarray]:
        self.batches.append(len(items))
        if self.fail:
            raise TransientEmbeddingError("busy")
        calls = self.calls
        vectors = [self.embed(text=i.text, image=i.image) for i in items]
        self.calls = calls  # one model call for the list
        return vectors


def test_a_batch_sends_only_the_misses_in_one_call_and_keeps_their_vectors(
    tmp_path: Path,
) -> None:
    from imagesearch.embedders import EmbedInput

    inner = CountingBatchEmbedder()
    embedder = CachedEmbedder(inner, EmbeddingCache(tmp_path / "e.sqlite"))
    known = embedder.embed(image=b"KNOWN", purpose="document")
    items = [EmbedInput(b"A"), EmbedInput(b"KNOWN"), EmbedInput(b"B", text="caption")]

    vectors = embedder.embed_images(items)

    # the cached image is not sent again; the two misses go in one call, in order
    assert inner.batches == [2]
    assert np.array_equal(vectors[1], known)
    assert np.array_equal(vectors[0], inner.embed(image=b"A"))
    assert np.array_equal(vectors[2], inner.embed(text="caption", image=b"B"))
    # and are cached: the same batch again costs no call
    assert np.array_equal(np.stack(embedder.embed_images(items)), np.stack(vectors))
    assert inner.batches == [2]


def test_a_failed_batch_caches_nothing(tmp_path: Path) -> None:
    from imagesearch.embedders import EmbedInput

    inner = CountingBatchEmbedder(fail=True)
    embedder = CachedEmbedder(inner, EmbeddingCache(tmp_path / "e.sqlite"))
    with pytest.raises(TransientEmbeddingError):
        embedder.embed_images([EmbedInput(b"A"), EmbedInput(b"B")])
    inner.fail = False
    embedder.embed_images([EmbedInput(b"A"), EmbedInput(b"B")])
    assert inner.batches == [2, 2]
