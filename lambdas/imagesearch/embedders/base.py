"""The Embedder port: text, image bytes, or both -> one unit-norm float32 vector."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """A multimodal embedding model.

    ``embed`` takes text, image bytes (JPEG or PNG, already within the model's
    limits: see ``imagesearch.images``), or both, and returns a unit-norm float32
    vector of length ``dimension``. With both, the model returns one joint
    embedding. Failures raise the ``EmbeddingError`` subclasses of
    ``imagesearch.errors``.
    """

    @property
    def model_id(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, *, text: str | None = None, image: bytes | None = None) -> Vector: ...


def unit_vector(values: npt.ArrayLike) -> Vector:
    """float32 copy of ``values`` scaled to unit L2 norm (cosine = dot product)."""
    vector = np.asarray(values, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("embedding has zero or non-finite norm")
    return vector / np.float32(norm)
