"""Domain exceptions, one taxonomy: every error the product raises on purpose
subclasses ``ImageSearchError`` and carries its HTTP status (and ``Retry-After``
where a retry helps). Adapters translate SDK errors into these once; the ingest
handler maps them to outcomes (retry, reject) and the search API maps all of them
to ``{"message": ...}`` in one exception handler (``handlers/api.py``)."""

from __future__ import annotations

import logging
import re

from imagesearch.resources import METRIC_CONFIGURATION_ERRORS

# Seconds a client should wait before retrying a 429 or 503.
RETRY_AFTER_SECONDS = 2


class ImageSearchError(Exception):
    """Base class of every domain error.

    ``status`` is the HTTP answer, ``public_message`` what the caller is told (the
    default: the exception's text), ``headers`` any extra response headers.
    ``log_level``, ``log_message`` and ``metric`` say whether and how the API
    records it (``log_level`` None: a caller's mistake, not worth a log line)."""

    status: int = 500
    retry_after: int | None = None
    log_level: int | None = None
    log_message: str = "request failed"
    metric: str | None = None

    @property
    def public_message(self) -> str:
        return str(self) or "internal error"

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after else {}


# --- the caller's request ----------------------------------------------------------


class BadRequest(ImageSearchError):
    """The request cannot be read: not JSON, not an object, undecodable (HTTP 400)."""

    status = 400


class MalformedBody(BadRequest):
    """The body is not a JSON object (HTTP 400)."""


class UnsupportedMediaType(BadRequest):
    """A JSON route got a body of another media type (form, multipart, text)."""

    def __init__(self) -> None:
        super().__init__("request body must be JSON: send it with Content-Type: application/json")


class InvalidRequest(ImageSearchError):
    """Well-formed, but cannot be answered as asked (HTTP 422)."""

    status = 422


class InvalidCursor(InvalidRequest):
    """A list cursor that this API did not hand out (HTTP 400)."""

    status = 400


class PayloadTooLarge(ImageSearchError):
    """The request body or a declared upload is over its limit (HTTP 413)."""

    status = 413


class UploadTooLarge(PayloadTooLarge):
    """The declared upload size is over the deployment's limit (HTTP 413)."""


class NotFound(ImageSearchError):
    """No such image (HTTP 404)."""

    status = 404

    @property
    def public_message(self) -> str:
        return str(self) or "not found"


class RouteNotFound(NotFound):
    """No route matches the path (HTTP 404)."""


class MethodNotAllowed(ImageSearchError):
    """The path exists, the method does not (HTTP 405 with ``Allow``)."""

    status = 405

    def __init__(self, message: str, allowed: list[str]) -> None:
        super().__init__(message)
        self.allowed = allowed

    @property
    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)}


class ImageRejected(ImageSearchError):
    """The object is not an image we can index (corrupt, unsupported, too large...).

    Permanent: the ingest path records status ``rejected`` with ``reason``; the API
    answers 400.
    """

    status = 400

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def public_message(self) -> str:
        return f"image rejected: {self.reason}"


# --- the embedding model ------------------------------------------------------------


# What must never reach a record's reason (shown by the API and the CLI): ARNs (they
# name the account, roles and functions) and bare 12-digit account ids.
_ARN = re.compile(r"\barn:aws[a-z-]*:[^\s,;\"'()]*")
_ACCOUNT_ID = re.compile(r"(?<![\d.])\d{12}(?![\d.])")


def redact(text: str) -> str:
    """``text`` without ARNs and account ids (they stay in the logs only)."""
    return _ACCOUNT_ID.sub("[account]", _ARN.sub("[ARN]", text))


class EmbeddingError(ImageSearchError):
    """Base class of embedding model failures.

    ``str(error)`` is the full detail for the logs (the model's message, IAM hints with
    ARNs); ``reason`` is what a record may show: given explicitly, or the detail with
    ARNs and account ids taken out. ``code`` is Bedrock's error code, when it sent one.
    """

    def __init__(self, message: str, *, reason: str | None = None, code: str | None = None):
        super().__init__(message)
        self._reason = reason
        self.code = code

    @property
    def reason(self) -> str:
        return redact(self._reason if self._reason is not None else str(self))


class TransientEmbeddingError(EmbeddingError):
    """Throttling, timeouts, 5xx: retry later (ingest: message retried; API: 429/503)."""

    retry_after = RETRY_AFTER_SECONDS
    log_level = logging.WARNING

    def __init__(
        self,
        message: str,
        *,
        throttled: bool = False,
        reason: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, reason=reason, code=code)
        self.throttled = throttled
        self.status = 429 if throttled else 503
        self.metric = "ThrottledSearches" if throttled else None
        self.log_message = (
            "embedding model throttled" if throttled else "embedding model unavailable"
        )

    @property
    def public_message(self) -> str:
        if self.throttled:
            return "the embedding model is throttling requests; retry shortly"
        return "the embedding model is temporarily unavailable; retry shortly"


class InvalidEmbeddingInput(EmbeddingError):
    """The model refused this input (ValidationException): permanent, never retried."""

    status = 400

    @property
    def public_message(self) -> str:
        return f"the model refused the input: {self.reason}"


class EmbedderConfigurationError(EmbeddingError):
    """Access denied, unknown model, wrong region: an operator must act. Logged loudly,
    retried through the queue, then DLQ + alarm. The caller learns that it is not a
    passing problem (unlike TransientEmbeddingError's "temporarily unavailable") and
    its cause and fix: the ``reason`` records show (no ARNs or account ids)."""

    status = 503
    log_level = logging.ERROR
    log_message = "embedding model configuration error"
    # A ValidationException no rule knows: maybe this input's fault, maybe the
    # deployment's (decision 33); a model switch gives such an image up after a few.
    maybe_input = False
    metric = METRIC_CONFIGURATION_ERRORS

    @property
    def public_message(self) -> str:
        return f"the embedding model is unusable: {self.reason}"


class ModelUnusable(ImageSearchError):
    """A query failed while the model is known to be unusable (a check found the cause,
    local mode's probe for example): the 503 names the cause and the fix instead of
    "retry shortly"."""

    status = 503
    log_level = logging.WARNING
    log_message = "embedding model unusable"

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause

    @property
    def public_message(self) -> str:
        return f"the embedding model is unusable: {redact(self.cause)}"


# --- the index ----------------------------------------------------------------------


class IndexUnavailable(ImageSearchError):
    """The search index cannot answer now (refresh failing beyond the allowed
    staleness): retry later (HTTP 503 with Retry-After)."""

    status = 503
    retry_after = RETRY_AFTER_SECONDS
    log_level = logging.ERROR
    log_message = "search index unavailable"

    @property
    def public_message(self) -> str:
        return "the search index is temporarily unavailable; retry shortly"


# --- the catalog ----------------------------------------------------------------------

# What DynamoDB answers once its SDK retries are spent on a throttled table or account.
DYNAMODB_THROTTLING_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)


class CatalogThrottled(ImageSearchError):
    """DynamoDB throttled the image table past the SDK's retries: retry later (HTTP 503
    with Retry-After, like every other unavailable dependency; decision 43)."""

    status = 503
    retry_after = RETRY_AFTER_SECONDS
    log_level = logging.WARNING
    log_message = "image catalog throttled"
    metric = "CatalogThrottled"

    @property
    def public_message(self) -> str:
        return "the image catalog is throttling requests; retry shortly"


class HttpStatusError(ImageSearchError):
    """An error the web framework raised with its own status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class InternalError(ImageSearchError):
    """Our bug: logged with its traceback, answered as a bare 500."""

    log_level = logging.ERROR

    @property
    def public_message(self) -> str:
        return "internal error"
