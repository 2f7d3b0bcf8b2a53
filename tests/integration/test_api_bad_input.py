"""The bad-input table of the search API: every case answers 4xx with a JSON
``{"message": ...}`` that says what is wrong, and none reaches the model or yields 500."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from fakes import imagefactory
from tests.integration.api_fixtures import (  # noqa: F401  (fixtures)
    Api,
    _module_api,
    shared_api_fixture,
)

UNKNOWN_ID = "0123456789abcdef0123456789abcdef"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class Case:
    id: str
    status: int
    message: str  # substring of the error message
    method: str = "POST"
    path: str = "/search"
    body: Any = None
    raw_body: str | None = None
    query: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    base64_encoded: bool = False
    reaches_model: bool = False


def _oversized_body() -> str:
    # ~5.6 MB of base64: over the 5 MB body limit, under what API Gateway would take.
    return json.dumps({"image": b64(bytes(4_200_000))})


CASES = [
    # Not a JSON object at all
    Case("malformed-json", 400, "malformed JSON", raw_body='{"text": "red'),
    Case("trailing-garbage", 400, "malformed JSON", raw_body='{"text": "red"} x'),
    Case("array-body", 400, "must be a JSON object, not an array", raw_body='[{"text": "red"}]'),
    Case("null-body", 400, "must be a JSON object, not null", raw_body="null"),
    Case("string-body", 400, "must be a JSON object, not a string", raw_body='"red shoe"'),
    Case("number-body", 400, "must be a JSON object, not a number", raw_body="42"),
    Case("empty-body", 400, "must be a JSON object", raw_body=""),
    Case("nan-literal", 400, "NaN is not valid JSON", raw_body='{"text": "a", "min_score": NaN}'),
    Case("deeply-nested", 400, "nested too deeply", raw_body="[" * 100_000 + "]" * 100_000),
    Case(
        "form-encoded",
        400,
        "Content-Type: application/json",
        raw_body="text=red",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    Case(
        "plain-text-content-type",
        400,
        "Content-Type: application/json",
        raw_body='{"text": "red"}',
        headers={"Content-Type": "text/plain"},
    ),
    Case("bad-base64-event", 400, "not valid base64", raw_body="eyJ0ZXh0Ijo", base64_encoded=True),
    Case("non-utf8-event", 400, "UTF-8", raw_body=b64(b'{"text": "\xff"}'), base64_encoded=True),
    # Wrong types (strict: no coercion)
    Case("text-number", 422, "text: Input should be a valid string", body={"text": 5}),
    Case(
        "top_k-string",
        422,
        "top_k: Input should be a valid integer",
        body={"text": "a", "top_k": "10"},
    ),
    Case(
        "top_k-float",
        422,
        "top_k: Input should be a valid integer",
        body={"text": "a", "top_k": 2.5},
    ),
    Case(
        "top_k-bool",
        422,
        "top_k: Input should be a valid integer",
        body={"text": "a", "top_k": True},
    ),
    Case(
        "top_k-0",
        422,
        "top_k: Input should be greater than or equal to 1",
        body={"text": "a", "top_k": 0},
    ),
    Case(
        "top_k-101",
        422,
        "top_k: Input should be less than or equal to 100",
        body={"text": "a", "top_k": 101},
    ),
    Case("top_k-huge", 422, "top_k", body={"text": "a", "top_k": 10**30}),
    Case(
        "min_score-2",
        422,
        "min_score: Input should be less than or equal to 1",
        body={"text": "a", "min_score": 2},
    ),
    Case(
        "min_score-string",
        422,
        "min_score: Input should be a valid number",
        body={"text": "a", "min_score": "0.5"},
    ),
    Case(
        "content_type-string",
        422,
        "content_type: Input should be a valid list",
        body={"text": "a", "content_type": "image/png"},
    ),
    # Text limits
    Case("empty-text", 422, "text: String should have at least 1 character", body={"text": ""}),
    Case("blank-text", 422, "text must not be blank", body={"text": "   \n"}),
    Case(
        "text-10000-chars",
        422,
        "text: String should have at most 1000 characters",
        body={"text": "a" * 10_000},
    ),
    # Images
    Case("invalid-base64", 400, "image is not valid base64", body={"image": "not/base64!!"}),
    Case("base64-of-pdf", 400, "image rejected", body={"image": b64(imagefactory.pdf_bytes())}),
    Case(
        "base64-of-text", 400, "image rejected", body={"image": b64(b"just some words, no pixels")}
    ),
    # A JPEG passes to the model after a header check only (no full decode per query):
    # the model's refusal is still a 400 with its message.
    Case(
        "truncated-jpeg",
        400,
        "Unable to process",
        body={"image": b64(imagefactory.truncated_jpeg())},
        reaches_model=True,
    ),
    Case("oversized-image", 413, "6 MB", raw_body=_oversized_body()),
    Case("oversized-suggests-image_id", 413, "search by its image_id", raw_body=_oversized_body()),
    # Ids
    Case("unknown-image_id", 404, "not indexed", body={"image_id": UNKNOWN_ID}),
    Case(
        "traversal-image_id",
        422,
        "image_id: String should match pattern",
        body={"image_id": "../../etc/passwd"},
    ),
    Case("uppercase-image_id", 422, "image_id", body={"image_id": UNKNOWN_ID.upper()}),
    Case("unknown-image", 404, "no image with id", method="GET", path=f"/images/{UNKNOWN_ID}"),
    # SPEC section 6: any id that names no image, well-formed or not, is 404 (finding 12)
    Case("traversal-get", 404, "no image with id", method="GET", path="/images/..%2F..%2Fetc"),
    Case("traversal-delete", 404, "no image with id", method="DELETE", path="/images/..%2Fsecret"),
    Case("short-id-get", 404, "no image with id", method="GET", path="/images/abc"),
    Case("short-id-delete", 404, "no image with id", method="DELETE", path="/images/abc"),
    Case("uppercase-id-get", 404, "no image with id", method="GET", path="/images/" + "A" * 32),
    Case("unicode-id-get", 404, "no image with id", method="GET", path="/images/%C3%A9t%C3%A9"),
    # Missing and conflicting inputs
    Case(
        "no-input", 422, "give at least one of text, image, image_id or queries", body={"top_k": 5}
    ),
    Case("only-nulls", 422, "give at least one of", body={"text": None, "image": None}),
    Case(
        "queries-plus-text",
        422,
        "queries cannot be combined with text",
        body={"text": "a", "queries": [{"text": "b"}]},
    ),
    Case(
        "image_id-plus-text",
        422,
        "image_id cannot be combined",
        body={"text": "a", "image_id": UNKNOWN_ID},
    ),
    Case("empty-queries", 422, "queries: List should have at least 1 item", body={"queries": []}),
    Case(
        "part-two-inputs",
        422,
        "exactly one of text, image or image_id",
        body={"queries": [{"text": "a", "image_id": UNKNOWN_ID}]},
    ),
    Case("part-no-input", 422, "exactly one of", body={"queries": [{"weight": 2}]}),
    Case(
        "non-numeric-weight",
        422,
        "weight: Input should be a valid number",
        body={"queries": [{"text": "a", "weight": "heavy"}]},
    ),
    Case(
        "zero-weight",
        422,
        "weight must not be zero",
        body={"queries": [{"text": "a", "weight": 0}]},
    ),
    Case("queries-not-list", 422, "queries", body={"queries": {"text": "a"}}),
    # Unknown fields and operator objects
    Case(
        "unknown-field", 422, "topk: Extra inputs are not permitted", body={"text": "a", "topk": 5}
    ),
    Case(
        "unknown-part-field",
        422,
        "Extra inputs are not permitted",
        body={"queries": [{"text": "a", "boost": 2}]},
    ),
    Case(
        "operator-in-text", 422, "text: Input should be a valid string", body={"text": {"$ne": ""}}
    ),
    Case(
        "operator-in-prefix",
        422,
        "prefix: Input should be a valid string",
        body={"text": "a", "prefix": {"$regex": ".*"}},
    ),
    Case(
        "operator-in-content_type",
        422,
        "Input should be a valid string",
        body={"text": "a", "content_type": [{"$in": ["image/png"]}]},
    ),
    Case(
        "operator-in-image_id",
        422,
        "image_id: Input should be a valid string",
        body={"image_id": {"$gt": ""}},
    ),
    # GET /images query parameters
    Case(
        "bad-cursor",
        400,
        "cursor is not valid",
        method="GET",
        path="/images",
        query={"cursor": "garbage"},
    ),
    Case(
        "forged-cursor",
        400,
        "cursor is not valid",
        method="GET",
        path="/images",
        query={"cursor": b64(b'{"v": 1}')},
    ),
    Case(
        "bad-status",
        422,
        "status: Input should be 'indexed', 'rejected' or 'failed'",
        method="GET",
        path="/images",
        query={"status": "deleted"},
    ),
    Case(
        "limit-0",
        422,
        "limit: Input should be greater than or equal to 1",
        method="GET",
        path="/images",
        query={"limit": "0"},
    ),
    Case(
        "limit-101",
        422,
        "limit: Input should be less than or equal to 100",
        method="GET",
        path="/images",
        query={"limit": "101"},
    ),
    Case(
        "limit-word",
        422,
        "limit: Input should be a valid integer",
        method="GET",
        path="/images",
        query={"limit": "ten"},
    ),
    # POST /uploads
    Case(
        "upload-traversal",
        422,
        "filename must not contain '.' or '..' path segments",
        path="/uploads",
        body={"filename": "../../etc/x.jpg", "content_type": "image/jpeg", "size": 10},
    ),
    Case(
        "upload-absolute",
        422,
        "no leading '/'",
        path="/uploads",
        body={"filename": "/x.jpg", "content_type": "image/jpeg"},
    ),
    Case(
        "upload-control-char",
        422,
        "control characters",
        path="/uploads",
        body={"filename": "a\rb.jpg", "content_type": "image/jpeg"},
    ),
    Case(
        "upload-long-name",
        422,
        "at most 512 characters",
        path="/uploads",
        body={"filename": "x" * 600 + ".jpg", "content_type": "image/jpeg"},
    ),
    Case(
        "upload-not-image",
        422,
        "content_type: Input should be 'image/jpeg'",
        path="/uploads",
        body={"filename": "a.html", "content_type": "text/html"},
    ),
    Case(
        "upload-size-string",
        422,
        "size: Input should be a valid integer",
        path="/uploads",
        body={"filename": "a.jpg", "content_type": "image/jpeg", "size": "12"},
    ),
    Case(
        "upload-missing-filename",
        422,
        "filename: Field required",
        path="/uploads",
        body={"content_type": "image/jpeg"},
    ),
    Case(
        "upload-operator",
        422,
        "filename: Input should be a valid string",
        path="/uploads",
        body={"filename": {"$ne": ""}, "content_type": "image/jpeg"},
    ),
    Case(
        "upload-over-limit",
        413,
        "uploads are limited to",
        path="/uploads",
        body={"filename": "a.jpg", "content_type": "image/jpeg", "size": 10**12},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_a_clear_4xx(shared_api: Api, case: Case) -> None:
    # Given one indexed image (shared by the whole table: no case changes anything)
    # When the bad request arrives
    response = shared_api.call(
        case.method,
        case.path,
        body=case.body,
        raw_body=case.raw_body,
        query=case.query,
        headers=case.headers,
        base64_encoded=case.base64_encoded,
    )
    # Then a 4xx with a JSON message that says what is wrong, and the model never ran
    assert response.status == case.status, response.body
    assert case.message in response.message
    assert response.headers["content-type"] == "application/json"
    assert shared_api.bedrock.calls == (1 if case.reaches_model else 0)


def test_the_table_covers_every_bad_input_status() -> None:
    assert len(CASES) >= 20
    assert {c.status for c in CASES} == {400, 404, 413, 422}
