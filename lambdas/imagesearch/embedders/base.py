"""The Embedder port: text, image bytes, or both -> one unit-norm float32 vector.

Each adapter also says what it accepts (``limits``: image formats, pixels, bytes, text
length) so that the image pipeline prepares each model's input from the model's own
limits, and whether an embedding is for a stored image (``"document"``) or for a
search (``"query"``): models with asymmetric retrieval (Nova 2, Cohere v4) embed the
two differently; Titan and CLIP ignore it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]
Purpose = Literal["document", "query"]
PURPOSES: tuple[Purpose, ...] = ("document", "query")


@dataclass(frozen=True)
class ModelLimits:
    """What one model takes, as ``imagesearch.images.prepare_*`` needs it.

    ``native_formats``: lower-case Pillow format names the model reads as they are
    (others are converted to JPEG). ``max_side``/``max_bytes``: the largest image
    sent as it is. ``max_area``: pixels above which the model downsamples anyway
    (we downscale first: same result, smaller request), None when it has no such rule.
    ``max_text_chars``: longest text worth sending (captions are cut below it).
    ``max_batch``: images per request of ``embed_images``.
    """

    native_formats: frozenset[str]
    max_side: int
    max_bytes: int
    max_area: int | None = None
    max_text_chars: int = 500
    max_batch: int = 1


# Titan Multimodal G1, the conservative reading of its docs (2048 px, 5 MB, 128 tokens).
TITAN_LIMITS = ModelLimits(
    native_formats=frozenset({"jpeg", "png"}),
    max_side=2048,
    max_bytes=5_000_000,
    max_text_chars=500,
)


@dataclass(frozen=True)
class EmbedInput:
    """One item of a batch: image bytes and optional text embedded with it."""

    image: bytes
    text: str | None = None


@runtime_checkable
class Embedder(Protocol):
    """A multimodal embedding model.

    ``embed`` takes text, image bytes (prepared within ``limits``: see
    ``imagesearch.images``), or both, and returns a unit-norm float32 vector of
    length ``dimension``. With both, one joint embedding. ``purpose`` is
    ``"document"`` for images being indexed and ``"query"`` for searches. Failures
    raise the ``EmbeddingError`` subclasses of ``imagesearch.errors``.
    """

    @property
    def model_id(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    @property
    def limits(self) -> ModelLimits: ...

    def embed(
        self,
        *,
        text: str | None = None,
        image: bytes | None = None,
        purpose: Purpose = "document",
    ) -> Vector: ...


@runtime_checkable
class BatchEmbedder(Embedder, Protocol):
    """An embedder that can embed several stored images in one model call."""

    def embed_images(self, items: Sequence[EmbedInput]) -> list[Vector]:
        """Document embeddings of ``items``, in order; equal to one ``embed`` each."""
        ...


def embed_images(embedder: Embedder, items: Sequence[EmbedInput]) -> list[Vector]:
    """Document embeddings of ``items`` in as few calls as the embedder allows:
    its ``embed_images`` when it has one, else one ``embed`` per item."""
    if not items:
        return []
    if isinstance(embedder, BatchEmbedder):
        return embedder.embed_images(items)
    return [embedder.embed(text=i.text, image=i.image, purpose="document") for i in items]


def limits_of(embedder: object) -> ModelLimits:
    """An embedder's limits; Titan's for doubles that do not declare any."""
    limits = getattr(embedder, "limits", None)
    return limits if isinstance(limits, ModelLimits) else TITAN_LIMITS


def unit_vector(values: npt.ArrayLike) -> Vector:
    """float32 copy of ``values`` scaled to unit L2 norm (cosine = dot product)."""
    vector = np.asarray(values, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("embedding has zero or non-finite norm")
    return vector / np.float32(norm)


def sniff_image_format(data: bytes) -> str | None:
    """Lower-case format of image bytes by magic number (the formats models read)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None
