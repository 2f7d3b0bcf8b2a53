"""One error taxonomy: every domain error carries its HTTP status, and the search API
maps all of them (and Powertools' own) to ``{"message": ...}`` in one handler."""

from __future__ import annotations

import binascii
import inspect
import json

import pytest
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)

from imagesearch import errors
from imagesearch.errors import (
    RETRY_AFTER_SECONDS,
    EmbedderConfigurationError,
    ImageRejected,
    ImageSearchError,
    IndexUnavailable,
    InvalidCursor,
    InvalidEmbeddingInput,
    InvalidRequest,
    MalformedBody,
    ModelUnusable,
    NotFound,
    PayloadTooLarge,
    TransientEmbeddingError,
    UnsupportedMediaType,
    UploadTooLarge,
)
from imagesearch.handlers import api

# The status each error answers: the contract of SPEC section 6 and docs/api.md.
EXPECTED = [
    (MalformedBody("malformed JSON: x"), 400, "malformed JSON: x", {}),
    (UnsupportedMediaType(), 400, "Content-Type: application/json", {}),
    (ImageRejected("not an image"), 400, "image rejected: not an image", {}),
    (InvalidEmbeddingInput("too many tokens"), 400, "the model refused the input", {}),
    (InvalidCursor("cursor is not valid"), 400, "cursor is not valid", {}),
    (NotFound("no image with id x"), 404, "no image with id x", {}),
    (PayloadTooLarge("body too big"), 413, "body too big", {}),
    (UploadTooLarge("limited to 10 bytes"), 413, "limited to 10 bytes", {}),
    (InvalidRequest("weights cancel out"), 422, "weights cancel out", {}),
    (
        TransientEmbeddingError("ThrottlingException", throttled=True),
        429,
        "throttling",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    ),
    (
        TransientEmbeddingError("ReadTimeout"),
        503,
        "temporarily unavailable",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    ),
    (
        # The cause and fix, as records show them: no ARN or account id.
        EmbedderConfigurationError(
            "AccessDeniedException for arn:aws:iam::123456789012:role/x; enable model access"
        ),
        503,
        "the embedding model is unusable: AccessDeniedException for [ARN]; enable model access",
        {},
    ),
    (
        ModelUnusable("AWS credentials: none found — set AWS_PROFILE"),
        503,
        "the embedding model is unusable: AWS credentials: none found — set AWS_PROFILE",
        {},
    ),
    (
        IndexUnavailable("refresh failed for 75 s"),
        503,
        "search index is temporarily unavailable",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    ),
]


def test_every_error_in_the_module_subclasses_the_one_base() -> None:
    classes = [
        obj
        for obj in vars(errors).values()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == errors.__name__
    ]
    assert len(classes) >= 15
    assert all(issubclass(cls, ImageSearchError) for cls in classes)


def test_the_stale_index_error_is_an_index_unavailable() -> None:
    from imagesearch.index.embedded import StaleIndexError

    assert issubclass(StaleIndexError, IndexUnavailable)
    assert StaleIndexError("x").status == 503


@pytest.mark.parametrize(
    ("error", "status", "message", "headers"),
    EXPECTED,
    ids=[f"{type(e[0]).__name__}-{e[1]}" for e in EXPECTED],
)
def test_one_handler_maps_each_error_to_its_status_and_message(
    error: ImageSearchError, status: int, message: str, headers: dict[str, str]
) -> None:
    response = api._error_response(error)
    assert response.status_code == status
    assert response.content_type == "application/json"
    assert set(response.body) == {"message"}
    assert message in response.body["message"]
    for name, value in headers.items():
        assert response.headers[name] == value


def test_internal_details_of_operator_errors_stay_out_of_the_answer() -> None:
    response = api._error_response(EmbedderConfigurationError("AccessDenied on arn:aws:bedrock:x"))
    assert "arn:" not in json.dumps(response.body)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (RequestUnsupportedContentType("no", errors=[]), 400),
        (RequestValidationError([{"loc": ("body",), "type": "missing", "msg": "x"}]), 400),
        (RequestValidationError([{"loc": ("query", "limit"), "type": "x", "msg": "bad"}]), 422),
        (binascii.Error("bad base64"), 400),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), 400),
        (KeyError("surprise"), 500),
    ],
)
def test_framework_and_unexpected_errors_go_through_the_same_handler(
    error: Exception, status: int
) -> None:
    response = api._error_response(error)
    assert response.status_code == status
    assert set(response.body) == {"message"}


def test_the_api_registers_exactly_one_exception_handler() -> None:
    assert list(api.app.exception_handler_manager.get_registered_handlers()) == [Exception]
