"""Domain exceptions. Adapters translate SDK errors into these once; the ingest
handler and the API map them to outcomes (retry, reject, HTTP status) in one place."""

from __future__ import annotations


class ImageSearchError(Exception):
    """Base class of every domain error."""


class ImageRejected(ImageSearchError):
    """The object is not an image we can index (corrupt, unsupported, too large...).

    Permanent: the ingest path records status ``rejected`` with ``reason``; the API
    answers 400/422.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EmbeddingError(ImageSearchError):
    """Base class of embedding model failures."""


class TransientEmbeddingError(EmbeddingError):
    """Throttling, timeouts, 5xx: retry later (ingest: message retried; API: 429/503)."""

    def __init__(self, message: str, *, throttled: bool = False) -> None:
        super().__init__(message)
        self.throttled = throttled


class InvalidEmbeddingInput(EmbeddingError):
    """The model refused this input (ValidationException): permanent, never retried."""


class EmbedderConfigurationError(EmbeddingError):
    """Access denied, unknown model, wrong region: an operator must act. Logged loudly,
    retried through the queue, then DLQ + alarm."""


class NotFound(ImageSearchError):
    """No such image."""
