"""Issue 9, findings 3 to 12: inputs that used to yield a 500 (or too much), each
reproduced through the real handler on moto and the fake Bedrock. Every answer is a
4xx/503 with a JSON ``{"message": ...}``."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.integration.api_fixtures import (  # noqa: F401  (fixtures)
    Api,
    _module_api,
    shared_api_fixture,
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- Finding 4: JSON routes take JSON only, media types case-insensitive ---------------------

MULTIPART_BODY = '--xyz\r\nContent-Disposition: form-data; name="text"\r\n\r\nred\r\n--xyz--\r\n'


@pytest.mark.parametrize("path", ["/search", "/uploads"])
@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",  # no boundary: Powertools raised "Missing boundary" (500)
        "multipart/form-data; boundary=xyz",
        "application/x-www-form-urlencoded",
        "Application/X-WWW-Form-Urlencoded",
        "text/plain",
        "application/jsonx",
        "application/json-patch+json",
    ],
)
def test_non_json_bodies_are_refused_with_400(
    shared_api: Api, path: str, content_type: str
) -> None:
    # Given a body that is not JSON by its media type (a cross-site form sends these
    # without a CORS preflight)
    body = MULTIPART_BODY if content_type.startswith("multipart") else "text=red&filename=a.jpg"
    # When it is posted to a JSON route
    response = shared_api.call("POST", path, raw_body=body, headers={"Content-Type": content_type})
    # Then 400 with advice, never parsed, never a 500
    assert response.status == 400, response.body
    assert "Content-Type: application/json" in response.message
    assert shared_api.bedrock.calls == 0


@pytest.mark.parametrize(
    "content_type",
    ["APPLICATION/JSON", "Application/Json; charset=UTF-8", "application/json;charset=utf-8"],
)
def test_json_media_type_is_case_insensitive(shared_api: Api, content_type: str) -> None:
    response = shared_api.call(
        "POST",
        "/search",
        raw_body=json.dumps({"text": "red shoe", "top_k": 1}),
        headers={"Content-Type": content_type},
    )
    assert response.status == 200, response.body
    assert response.body["count"] == 1


def test_a_body_without_content_type_is_read_as_json(shared_api: Api) -> None:
    # Not a form: browsers always label form bodies, so an unlabelled body is safe to read.
    event_headers = {"Content-Type": ""}
    response = shared_api.call(
        "POST", "/search", raw_body=json.dumps({"text": "red shoe"}), headers=event_headers
    )
    assert response.status == 200, response.body


def test_get_routes_ignore_the_content_type(shared_api: Api) -> None:
    response = shared_api.call("GET", "/images", headers={"Content-Type": "multipart/form-data"})
    assert response.status == 200, response.body


# --- Finding 5: huge JSON integers ------------------------------------------------------------


@pytest.mark.parametrize("field", ["top_k", "min_score"])
def test_a_4400_digit_integer_is_400(shared_api: Api, field: str) -> None:
    # Python refuses to convert integers of more than 4,300 digits (a ValueError that
    # is not a JSON error): it used to escape as a 500.
    raw = json.dumps({"text": "red", field: 0}).replace("0}", "9" * 4400 + "}")
    response = shared_api.call("POST", "/search", raw_body=raw)
    assert response.status == 400, response.body
    assert "4400 digits" in response.message


def test_a_negative_huge_integer_in_a_query_part_is_400(shared_api: Api) -> None:
    raw = '{"queries": [{"text": "red", "weight": -%s}]}' % ("1" * 5000)
    response = shared_api.call("POST", "/search", raw_body=raw)
    assert response.status == 400, response.body
    assert "5000 digits" in response.message


def test_a_long_float_is_still_a_number(shared_api: Api) -> None:
    # Floats have no conversion limit: a 5,000-digit weight is just a large weight.
    raw = '{"queries": [{"text": "red", "weight": %s.5}]}' % ("1" * 300)
    response = shared_api.call("POST", "/search", raw_body=raw)
    assert response.status == 200, response.body


def test_a_huge_integer_query_parameter_is_422(shared_api: Api) -> None:
    response = shared_api.get("/images", query={"limit": "9" * 4400})
    assert response.status == 422, response.body
    assert "limit" in response.message


# --- Finding 7: a stale index is 503 ------------------------------------------------------------


def test_a_stale_index_is_503_with_retry_after(
    shared_api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from imagesearch.index.embedded import EmbeddedIndex, StaleIndexError

    # Given an index whose refreshes have failed for longer than the allowed staleness
    def stale(*_: Any, **__: Any) -> Any:
        raise StaleIndexError("search index not refreshed for 75 s: ThrottlingException")

    monkeypatch.setattr(EmbeddedIndex, "query", stale)
    # When a search arrives
    response = shared_api.post("/search", {"text": "red shoe"})
    # Then 503 with Retry-After, as docs/decisions.md promises, and no internals leak
    assert response.status == 503, response.body
    assert response.message == "the search index is temporarily unavailable; retry shortly"
    assert int(response.headers["retry-after"]) > 0
    # And the operator sees why
    assert any(
        rec.levelname == "ERROR" and rec.getMessage() == "search index unavailable"
        for rec in caplog.records
    )


# --- Finding 3: extreme weights -------------------------------------------------------------


def _scores(api: Api, weights: list[float]) -> list[float]:
    texts = ["red shoe", "blue bag", "green lamp"]
    parts = [{"text": texts[n], "weight": w} for n, w in enumerate(weights)]
    response = api.post("/search", {"queries": parts})
    assert response.status == 200, response.body
    return [hit["score"] for hit in response.body["results"]]


@pytest.mark.parametrize(
    ("extreme", "plain"),
    [
        ([1e37], [1.0]),  # float32 overflow: 500 before
        ([2.2e36, -2.2e36 / 4], [1.0, -0.25]),
        ([1e308, 1e308, 1e308], [1.0, 1.0, 1.0]),  # float64 overflow of the sum
        ([-1.7e308, 1.7e308 / 2], [-2.0, 1.0]),
        ([1e-300, 2e-300], [1.0, 2.0]),  # too short before, "cancel out" 422
        ([5e-324], [1.0]),  # the smallest float
    ],
)
def test_extreme_weights_act_as_their_ratios(
    shared_api: Api, extreme: list[float], plain: list[float]
) -> None:
    # Only the ratio of the weights matters: any finite weights give the direction
    # of the same ratios, with no overflow.
    assert _scores(shared_api, extreme) == pytest.approx(_scores(shared_api, plain), abs=1e-5)


def test_huge_weights_that_cancel_out_are_422(shared_api: Api) -> None:
    response = shared_api.post(
        "/search",
        {"queries": [{"text": "red", "weight": 1e308}, {"text": "red", "weight": -1e308}]},
    )
    assert response.status == 422, response.body
    assert "cancel out" in response.message


@pytest.mark.parametrize("literal", ["1e400", "-1e999"])
def test_a_weight_beyond_float_range_is_422(shared_api: Api, literal: str) -> None:
    raw = '{"queries": [{"text": "red", "weight": ' + literal + "}]}"
    response = shared_api.call("POST", "/search", raw_body=raw)
    assert response.status == 422, response.body
    assert "weight" in response.message


# --- Findings 6 and 8: cursors and prefixes are checked before DynamoDB sees them --------------


def cursor_of(payload: Any) -> str:
    raw = (
        payload
        if isinstance(payload, bytes)
        else json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass")
    )
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def start_key(key: str, image_id: str = "0" * 32, status: str = "indexed") -> dict[str, Any]:
    return {"status": {"S": status}, "key": {"S": key}, "image_id": {"S": image_id}}


def forged(at: dict[str, Any], prefix: str = "", status: str | None = "indexed") -> str:
    return cursor_of({"v": 1, "prefix": prefix, "status": status, "at": at})


def test_a_cursor_of_nested_brackets_is_400(shared_api: Api) -> None:
    # json.loads raised RecursionError on 1,500 '[': a 500 before
    response = shared_api.get("/images", query={"cursor": cursor_of(b"[" * 1500)})
    assert response.status == 400, response.body
    assert "cursor is not valid" in response.message


@pytest.mark.parametrize(
    ("name", "cursor", "query"),
    [
        # DynamoDB limits a sort key to 1,024 bytes: ValidationException (a 500) in AWS,
        # while moto answered 200.
        ("key-1025-ascii", forged({"indexed": start_key("uploads/" + "a" * 1017)}), {}),
        ("key-2048-bytes", forged({"indexed": start_key("uploads/" + "é" * 1020)}), {}),
        ("key-lone-surrogate", forged({"indexed": start_key("uploads/\ud800")}), {}),
        ("bad-image-id", forged({"indexed": start_key("uploads/a.jpg", image_id="x" * 5000)}), {}),
        (
            "rejected-partition",
            forged({"rejected": start_key("uploads/" + "é" * 600, status="rejected")}, status=None),
            {},
        ),
    ],
)
def test_forged_cursor_keys_are_checked_before_dynamodb(
    shared_api: Api, name: str, cursor: str, query: dict[str, str]
) -> None:
    status = {"status": "indexed"} if "rejected" not in name else {}
    response = shared_api.get("/images", query={"cursor": cursor, **status, **query})
    assert response.status == 400, (name, response.body)
    assert "cursor is not valid" in response.message


def test_a_forged_cursor_of_the_largest_real_key_is_accepted(shared_api: Api) -> None:
    # 1,024 bytes is a real S3 key: a cursor pointing there is a valid (empty) page.
    key = "uploads/" + "z" * (1024 - len("uploads/"))  # after every seeded key
    response = shared_api.get(
        "/images", query={"cursor": forged({"indexed": start_key(key)}), "status": "indexed"}
    )
    assert response.status == 200, response.body
    assert response.body == {"items": [], "cursor": None}


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("é" * 1024, "2048 bytes in UTF-8"),  # within 1,024 characters, 2,048 bytes
        ("a" * 1020, "1028 bytes in UTF-8 with the upload prefix"),  # + "uploads/"
    ],
)
def test_prefixes_longer_than_a_key_are_422(shared_api: Api, prefix: str, message: str) -> None:
    listing = shared_api.get("/images", query={"prefix": prefix})
    search = shared_api.post("/search", {"text": "red shoe", "prefix": prefix})
    for response in (listing, search):
        assert response.status == 422, response.body
        assert message in response.message
    assert shared_api.bedrock.calls == 0


def test_a_prefix_with_a_lone_surrogate_is_422(shared_api: Api) -> None:
    raw = '{"text": "red shoe", "prefix": "shoes/\\ud800"}'
    response = shared_api.call("POST", "/search", raw_body=raw)
    assert response.status == 422, response.body
    assert "prefix" in response.message


def test_a_prefix_of_exactly_a_key_is_fine(shared_api: Api) -> None:
    prefix = "uploads/" + "é" * 508  # 8 + 1016 = 1024 bytes
    response = shared_api.get("/images", query={"prefix": prefix})
    assert response.status == 200, response.body
    assert response.body["items"] == []


# --- Issue 17.7: DynamoDB throttling is 503 with Retry-After --------------------------------


@pytest.mark.parametrize(
    "code",
    ["ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"],
)
def test_a_throttled_catalog_is_503_with_retry_after(
    shared_api: Api, monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    from botocore.exceptions import ClientError

    from imagesearch.catalog.dynamodb import DynamoDBCatalog

    # Given a table that still throttles after the SDK's own retries
    def throttled(*_: Any, **__: Any) -> Any:
        raise ClientError({"Error": {"Code": code, "Message": "Rate exceeded"}}, "GetItem")

    monkeypatch.setattr(DynamoDBCatalog, "get", throttled)
    response = shared_api.get("/images/" + "a" * 32)
    # Then the caller is told to come back, not that the service broke
    assert response.status == 503, response.body
    assert response.message == "the image catalog is throttling requests; retry shortly"
    assert int(response.headers["retry-after"]) > 0


def test_a_batch_read_left_unprocessed_is_503_with_retry_after(
    shared_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imagesearch.catalog.dynamodb import CatalogThrottled, DynamoDBCatalog

    def unprocessed(*_: Any, **__: Any) -> Any:
        raise CatalogThrottled("BatchGetItem left keys unprocessed after 8 attempts")

    monkeypatch.setattr(DynamoDBCatalog, "get_many", unprocessed)
    response = shared_api.post("/search", {"text": "red shoe"})
    assert response.status == 503, response.body
    assert int(response.headers["retry-after"]) > 0


def test_other_catalog_errors_stay_500(shared_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError

    from imagesearch.catalog.dynamodb import DynamoDBCatalog

    def broken(*_: Any, **__: Any) -> Any:
        raise ClientError({"Error": {"Code": "ValidationException", "Message": "x"}}, "GetItem")

    monkeypatch.setattr(DynamoDBCatalog, "get", broken)
    response = shared_api.get("/images/" + "a" * 32)
    assert response.status == 500
    assert "retry-after" not in response.headers
