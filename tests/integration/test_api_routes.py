"""Every route and status of the search API, end to end: API Gateway REST proxy events
into the real handler, moto in-process (S3, DynamoDB) and the fake Bedrock over HTTP.

Records are seeded through the real ``DynamoDBCatalog.put`` with vectors built
from ``fake_titan_embedding``, so the expected ranking and scores are known exactly.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np
import pytest
import requests

from fakes import bedrock as fake
from fakes import imagefactory
from imagesearch import resources as r
from imagesearch.api_models import SearchRequest
from imagesearch.embedders.base import unit_vector
from imagesearch.objectstore import URL_REUSE_SECONDS
from tests.integration.api_fixtures import (
    DIMENSION,
    DOMAIN,
    MODEL_ID,
    STAGE,
    Api,
    api_fixture,  # noqa: F401  (the `api` fixture)
    blend,
    key_of_url,
    orthogonal_to,
    seconds_valid,
    text_vector,
)

RED = (220, 30, 30)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def image_vector(data: bytes, text: str | None = None) -> np.ndarray:
    return unit_vector(fake.fake_titan_embedding(text, data, DIMENSION))


def seed_ranked(api: Api, query: np.ndarray) -> dict[str, float]:
    """Four images at known cosine similarities to ``query``; returns key -> score."""
    wanted = {"shoes/exact.jpg": 1.0, "shoes/close.jpg": 0.8, "bags/far.jpg": 0.3}
    wanted["bags/opposite.png"] = -0.5
    scores = {}
    for n, (name, score) in enumerate(wanted.items()):
        other = orthogonal_to(query, seed=n)
        vector = blend((score, query), (math.sqrt(1 - score**2), other))
        content_type = "image/png" if name.endswith(".png") else "image/jpeg"
        api.seed(name, vector, content_type=content_type)
        scores[api.aws.upload_prefix + name] = score
    return scores


# --- POST /search -----------------------------------------------------------------------


def test_text_search_returns_exact_ranking_and_scores(api: Api) -> None:
    # Given four images at cosine 1.0, 0.8, 0.3 and -0.5 from the text's embedding
    expected = seed_ranked(api, text_vector(fake, "red suede sneaker"))
    # When searching by that text
    response = api.post("/search", {"text": "red suede sneaker", "top_k": 10})
    # Then every image comes back, best first, with exactly those scores
    assert response.status == 200, response.body
    body = response.body
    assert [hit["key"] for hit in body["results"]] == list(expected)
    assert [hit["score"] for hit in body["results"]] == pytest.approx(
        list(expected.values()), abs=1e-5
    )
    assert body["count"] == 4
    assert (body["model_id"], body["dimension"]) == (MODEL_ID, DIMENSION)
    assert isinstance(body["took_ms"], float) and body["took_ms"] >= 0
    # And exactly one model call, with text only
    assert api.bedrock.calls == 1
    (call,) = api.bedrock.log
    assert (call.has_text, call.has_image, call.dimension) == (True, False, DIMENSION)


def test_result_fields_and_presigned_urls_point_at_the_objects(api: Api) -> None:
    record = api.seed(
        "shoes/red.jpg", text_vector(fake, "red shoe"), caption="a red shoe", width=800
    )
    api.aws.s3.put_object(
        Bucket=api.aws.bucket, Key=r.thumbnail_key(record.image_id), Body=b"thumb"
    )
    response = api.post("/search", {"text": "red shoe", "top_k": 1})
    assert response.status == 200
    (hit,) = response.body["results"]
    assert set(hit) == {
        "image_id", "key", "score", "url", "thumbnail_url", "content_type",
        "width", "height", "size", "uploaded_at", "caption",
    }  # fmt: skip
    assert hit["image_id"] == record.image_id
    assert (hit["key"], hit["caption"], hit["width"]) == (
        "uploads/shoes/red.jpg",
        "a red shoe",
        800,
    )
    assert key_of_url(hit["url"]) == "uploads/shoes/red.jpg"
    assert key_of_url(hit["thumbnail_url"]) == f"thumbnails/{record.image_id}.jpg"
    for url in (hit["url"], hit["thumbnail_url"]):  # SigV4, valid for at least 15 minutes
        assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url
        assert 900 <= seconds_valid(url) <= 900 + URL_REUSE_SECONDS
    # The presigned GETs really fetch the original and the thumbnail
    assert requests.get(hit["url"], timeout=10).content == b"original"
    assert requests.get(hit["thumbnail_url"], timeout=10).content == b"thumb"


def test_top_k_limits_results(api: Api) -> None:
    expected = seed_ranked(api, text_vector(fake, "leather bag"))
    response = api.post("/search", {"text": "leather bag", "top_k": 2})
    assert [hit["key"] for hit in response.body["results"]] == list(expected)[:2]


def test_image_search_embeds_the_image_only(api: Api) -> None:
    red = imagefactory.jpeg(96, 64, RED)
    blue = imagefactory.jpeg(96, 64, (30, 60, 220))
    api.seed("red.jpg", image_vector(red))
    api.seed("blue.jpg", image_vector(blue))
    response = api.post("/search", {"image": b64(red)})
    assert response.status == 200, response.body
    hits = response.body["results"]
    assert [h["key"] for h in hits] == ["uploads/red.jpg", "uploads/blue.jpg"]
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    expected_blue = float(image_vector(red) @ image_vector(blue))
    assert hits[1]["score"] == pytest.approx(expected_blue, abs=1e-5)
    (call,) = api.bedrock.log
    assert (call.has_text, call.has_image) == (False, True)


def test_image_is_converted_before_the_model(api: Api) -> None:
    # A WebP is not a Titan format: the API converts it before the one model call
    response = api.post("/search", {"image": b64(imagefactory.webp(120, 90))})
    assert response.status == 200, response.body
    assert api.bedrock.calls == 1
    assert api.bedrock.log[0].status == 200


def test_text_and_image_make_one_joint_call(api: Api) -> None:
    image = imagefactory.jpeg(96, 64, RED)
    joint = image_vector(image, text="red sneaker")
    api.seed("joint.jpg", joint)
    api.seed("text-only.jpg", text_vector(fake, "red sneaker"))
    response = api.post("/search", {"text": "red sneaker", "image": b64(image)})
    assert response.status == 200, response.body
    assert api.bedrock.calls == 1
    (call,) = api.bedrock.log
    assert (call.has_text, call.has_image) == (True, True)
    top = response.body["results"][0]
    assert (top["key"], top["score"]) == ("uploads/joint.jpg", pytest.approx(1.0, abs=1e-5))


def test_more_like_this_makes_no_model_call(api: Api) -> None:
    # Given images at known similarities to a source image
    source_vector = text_vector(fake, "green handbag")
    source = api.seed("source.jpg", source_vector)
    expected = seed_ranked(api, source_vector)
    # When searching by the source's id
    response = api.post("/search", {"image_id": source.image_id})
    # Then the others come back in order, the source itself is left out, and Bedrock is idle
    assert response.status == 200, response.body
    assert [h["key"] for h in response.body["results"]] == list(expected)
    assert source.image_id not in {h["image_id"] for h in response.body["results"]}
    assert api.bedrock.calls == 0


def test_weighted_queries_with_a_negative_weight_move_results(api: Api) -> None:
    shoe, blue = text_vector(fake, "running shoe"), text_vector(fake, "blue")
    api.seed("blue-shoe.jpg", blend((1.0, shoe), (0.5, blue)))
    api.seed("plain-shoe.jpg", blend((1.0, shoe), (0.6, orthogonal_to(shoe, 9))))
    plain = api.post("/search", {"text": "running shoe"})
    steered = api.post(
        "/search",
        {"queries": [{"text": "running shoe", "weight": 1.0}, {"text": "blue", "weight": -0.8}]},
    )
    assert plain.status == steered.status == 200, steered.body
    # Without steering the blue shoe wins; "minus blue" puts the plain shoe first
    assert plain.body["results"][0]["key"] == "uploads/blue-shoe.jpg"
    assert [h["key"] for h in steered.body["results"]] == [
        "uploads/plain-shoe.jpg",
        "uploads/blue-shoe.jpg",
    ]
    # And the scores are those of the renormalised weighted sum of the unit vectors
    query = blend((1.0, shoe), (-0.8, blue))
    for hit in steered.body["results"]:
        stored = api.catalog.get(hit["image_id"], with_vector=True)
        assert stored is not None and stored.vector is not None
        assert hit["score"] == pytest.approx(float(query @ unit_vector(stored.vector)), abs=1e-5)
    assert api.bedrock.calls == 1 + 2


def test_weighted_query_can_mix_an_image_id(api: Api) -> None:
    source = api.seed("source.jpg", text_vector(fake, "teal lamp"))
    expected = seed_ranked(api, text_vector(fake, "teal lamp"))
    response = api.post(
        "/search", {"queries": [{"image_id": source.image_id, "weight": 2}], "top_k": 3}
    )
    assert response.status == 200, response.body
    assert [h["key"] for h in response.body["results"]] == list(expected)[:3]
    assert api.bedrock.calls == 0


def test_weights_that_cancel_out_are_422(api: Api) -> None:
    api.seed("a.jpg", text_vector(fake, "lamp"))
    response = api.post(
        "/search", {"queries": [{"text": "lamp", "weight": 1}, {"text": "lamp", "weight": -1}]}
    )
    assert response.status == 422
    assert "cancel out" in response.message


def test_prefix_content_type_and_min_score_filters(api: Api) -> None:
    expected = seed_ranked(api, text_vector(fake, "wool scarf"))

    def keys(**filters: Any) -> list[str]:
        response = api.post("/search", {"text": "wool scarf", **filters})
        assert response.status == 200, response.body
        return [h["key"] for h in response.body["results"]]

    assert keys(prefix="uploads/shoes/") == ["uploads/shoes/exact.jpg", "uploads/shoes/close.jpg"]
    assert keys(prefix="bags/") == ["uploads/bags/far.jpg", "uploads/bags/opposite.png"]
    assert keys(content_type=["image/png"]) == ["uploads/bags/opposite.png"]
    assert keys(min_score=0.5) == [k for k, s in expected.items() if s >= 0.5]
    assert keys(prefix="bags/", min_score=0.0) == ["uploads/bags/far.jpg"]
    assert keys(prefix="nothing/") == []


def test_base64_encoded_event_body_is_accepted(api: Api) -> None:
    api.seed("a.jpg", text_vector(fake, "lamp"))
    response = api.post("/search", {"text": "lamp"}, base64_encoded=True)
    assert response.status == 200, response.body
    assert response.body["count"] == 1


def test_query_text_and_images_stay_out_of_the_logs(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api.seed("a.jpg", text_vector(fake, "lamp"))
    image = imagefactory.jpeg(32, 32, RED)
    response = api.post("/search", {"text": "secret purple unicorn", "image": b64(image)})
    assert response.status == 200
    # The search is logged with what kind of inputs it had...
    (logged,) = [rec for rec in caplog.records if rec.getMessage() == "search"]
    assert logged.__dict__["inputs"] == ["image", "text"]
    # ...but no record carries the text or the image
    everything = " ".join(str(rec.__dict__) for rec in caplog.records)
    assert "unicorn" not in everything
    assert b64(image)[:40] not in everything


# --- Upstream model errors -----------------------------------------------------------------


def test_throttled_model_is_429_with_retry_after(api: Api) -> None:
    api.bedrock.fail_next(2, "ThrottlingException")  # every attempt the client makes
    response = api.post("/search", {"text": "lamp"})
    assert response.status == 429
    assert "throttl" in response.message
    assert int(response.headers["retry-after"]) > 0
    assert api.bedrock.calls == 2


def test_unavailable_model_is_503(api: Api) -> None:
    api.bedrock.fail_next(2, "ServiceUnavailableException")
    response = api.post("/search", {"text": "lamp"})
    assert response.status == 503
    assert "temporarily unavailable" in response.message
    assert "retry-after" in response.headers


def test_model_access_denied_is_503_model_unavailable(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api.bedrock.fail_next(1, "AccessDeniedException")
    response = api.post("/search", {"text": "lamp"})
    assert response.status == 503
    # The cause and the fix, without the ARNs (those are in the log)
    assert response.message.startswith("the embedding model is unusable: Bedrock denied access")
    assert "Enable model access for amazon.titan-embed-image-v1" in response.message
    assert "arn:aws" not in response.message
    # And /health says so until a query embeds again
    health = api.call("GET", "/health", headers={"Authorization": ""}).body
    assert health["status"] == "degraded"
    assert health["cause"] == response.message
    assert health["model"]["state"] == "unusable"
    # Logged loudly: an operator must grant model access
    assert any(
        rec.levelname == "ERROR" and rec.getMessage() == "embedding model configuration error"
        for rec in caplog.records
    )


def test_model_validation_error_is_400_with_the_models_message(api: Api) -> None:
    api.bedrock.fail_next(1, "ValidationException", "Image exceeds max pixels allowed.")
    response = api.post("/search", {"text": "lamp"})
    assert response.status == 400
    assert "Image exceeds max pixels allowed." in response.message


def test_text_over_the_models_token_limit_is_400_from_the_model(api: Api) -> None:
    # 1000 characters pass the API's check but exceed Titan's 128 tokens
    response = api.post("/search", {"text": "word " * 200})
    assert response.status == 400
    assert "tokens" in response.message


# --- /images --------------------------------------------------------------------------------


def test_get_image_returns_the_record_without_vector(api: Api) -> None:
    record = api.seed("shoes/red.jpg", text_vector(fake, "red"), caption="red")
    response = api.get(f"/images/{record.image_id}")
    assert response.status == 200, response.body
    body = response.body
    assert "vector" not in body
    assert (body["image_id"], body["key"], body["status"]) == (
        record.image_id,
        "uploads/shoes/red.jpg",
        "indexed",
    )
    assert (body["caption"], body["model_id"], body["dimension"]) == ("red", MODEL_ID, DIMENSION)
    assert key_of_url(body["url"]) == "uploads/shoes/red.jpg"
    assert key_of_url(body["thumbnail_url"]) == f"thumbnails/{record.image_id}.jpg"


def test_rejected_image_shows_its_reason(api: Api) -> None:
    record = api.seed("bad.jpg", None, status=r.STATUS_REJECTED, reason="not an image")
    response = api.get(f"/images/{record.image_id}")
    assert response.status == 200
    assert (response.body["status"], response.body["reason"]) == ("rejected", "not an image")
    assert response.body["thumbnail_url"] is None


def test_unknown_image_is_404(api: Api) -> None:
    response = api.get("/images/" + "0" * 32)
    assert response.status == 404
    assert "0" * 32 in response.message


def test_list_images_pages_through_everything_in_key_order(api: Api) -> None:
    names = ["a/1.jpg", "a/2.jpg", "b/3.jpg", "b/4.jpg", "c/5.jpg"]
    for name in names:
        api.seed(name, text_vector(fake, name))
    api.seed("a/bad.jpg", None, status=r.STATUS_REJECTED, reason="corrupt")
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        response = api.get("/images", query=query)
        assert response.status == 200, response.body
        assert len(response.body["items"]) <= 2
        seen += [item["key"] for item in response.body["items"]]
        cursor = response.body["cursor"]
        if cursor is None:
            break
    assert seen == sorted(api.aws.upload_prefix + n for n in [*names, "a/bad.jpg"])


def test_list_images_filters_by_status_and_prefix(api: Api) -> None:
    api.seed("a/1.jpg", text_vector(fake, "x"))
    api.seed("b/2.jpg", text_vector(fake, "y"))
    api.seed("a/bad.jpg", None, status=r.STATUS_REJECTED, reason="corrupt")
    rejected = api.get("/images", query={"status": "rejected"})
    assert [(i["key"], i["reason"]) for i in rejected.body["items"]] == [
        ("uploads/a/bad.jpg", "corrupt")
    ]
    in_a = api.get("/images", query={"prefix": "a/", "status": "indexed"})
    assert [i["key"] for i in in_a.body["items"]] == ["uploads/a/1.jpg"]
    assert in_a.body["cursor"] is None
    assert all("url" in i and "vector" not in i for i in in_a.body["items"])


def test_delete_removes_the_object_and_answers_202(api: Api) -> None:
    record = api.seed("gone.jpg", text_vector(fake, "gone"))
    response = api.call("DELETE", f"/images/{record.image_id}")
    assert response.status == 202, response.body
    assert response.body == {"image_id": record.image_id, "key": record.key, "status": "deleting"}
    assert not api.aws.object_exists(record.key)


def test_delete_tombstones_the_record_and_thumbnail_before_answering(api: Api) -> None:
    # No ingest runs here: whatever the backlog, the API's answer is the delete's effect
    record = api.seed("gone.jpg", text_vector(fake, "gone"))
    thumbnail = r.thumbnail_key(record.image_id)
    api.aws.s3.put_object(Bucket=api.aws.bucket, Key=thumbnail, Body=b"jpeg")
    thumbnail_url = api.get(f"/images/{record.image_id}").body["thumbnail_url"]
    assert requests.get(thumbnail_url, timeout=10).status_code == 200

    assert api.call("DELETE", f"/images/{record.image_id}").status == 202

    assert api.catalog.get(record.image_id) is None
    tombstone = api.catalog.get(record.image_id, include_deleted=True)
    assert tombstone is not None and tombstone.status == r.STATUS_DELETED
    # Just newer than the deleted version: a retried event of it cannot bring it back
    assert record.sequencer is not None
    assert tombstone.sequencer == record.sequencer + "."
    assert not api.aws.object_exists(thumbnail)
    # S3 answers 403, not 404, for a missing key to a signer without ListBucket
    assert requests.get(thumbnail_url, timeout=10).status_code in (403, 404)
    assert api.get(f"/images/{record.image_id}").status == 404
    assert api.call("DELETE", f"/images/{record.image_id}").status == 404
    listed = api.get("/images").body["items"]
    assert record.image_id not in [item["image_id"] for item in listed]


def test_deleted_image_leaves_search_at_once_here_and_at_refresh_elsewhere(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imagesearch.composition import build_search_service
    from imagesearch.settings import SearchSettings, load_settings

    # No refresh falls due during the test: only the delete itself can change the index
    monkeypatch.setenv(r.ENV_INDEX_REFRESH_SECONDS, "3600")
    cat = api.seed("cat.jpg", text_vector(fake, "cat"))
    dog = api.seed("dog.jpg", text_vector(fake, "dog"))
    other = build_search_service(load_settings(SearchSettings))  # another warm instance
    other.warm()
    query = {"text": "cat", "top_k": 1}
    assert [h["image_id"] for h in api.post("/search", query).body["results"]] == [cat.image_id]

    assert api.call("DELETE", f"/images/{cat.image_id}").status == 202

    # The instance that served the delete dropped the vector: the next best fills top_k
    after = api.post("/search", query).body["results"]
    assert [hit["image_id"] for hit in after] == [dog.image_id]
    # Another instance never shows it (its hits are read back from the table) and drops
    # the vector at its next refresh, from the change log
    request = SearchRequest(text="cat", top_k=1)
    assert other.search(request).results == []
    other.warm()  # the refresh that index_refresh_seconds would run
    assert [hit.image_id for hit in other.search(request).results] == [dog.image_id]


def test_delete_unknown_image_is_404(api: Api) -> None:
    response = api.call("DELETE", "/images/" + "a" * 32)
    assert response.status == 404


# --- /uploads ---------------------------------------------------------------------------------


def test_upload_url_puts_the_object_into_the_prefix(api: Api) -> None:
    data = imagefactory.jpeg(64, 64, RED)
    response = api.post(
        "/uploads", {"filename": "new/shoe.jpg", "content_type": "image/jpeg", "size": len(data)}
    )
    assert response.status == 200, response.body
    assert response.body["key"] == "uploads/new/shoe.jpg"
    assert response.body["headers"] == {
        "Content-Type": "image/jpeg",
        "Content-Length": str(len(data)),
        "If-None-Match": "*",
    }
    assert key_of_url(response.body["url"]) == "uploads/new/shoe.jpg"
    put = requests.put(
        response.body["url"], data=data, headers=response.body["headers"], timeout=10
    )
    assert put.status_code == 200
    stored = api.aws.s3.get_object(Bucket=api.aws.bucket, Key="uploads/new/shoe.jpg")
    assert stored["Body"].read() == data
    assert stored["ContentType"] == "image/jpeg"


def test_upload_with_size_signs_content_length(api: Api) -> None:
    response = api.post(
        "/uploads", {"filename": "sized.png", "content_type": "image/png", "size": 1234}
    )
    assert response.status == 200, response.body
    assert response.body["headers"] == {
        "Content-Type": "image/png",
        "Content-Length": "1234",
        "If-None-Match": "*",
    }


def signed_headers(url: str) -> list[str]:
    from urllib.parse import parse_qs, urlparse

    return parse_qs(urlparse(url).query)["X-Amz-SignedHeaders"][0].split(";")


def test_upload_url_writes_once_and_never_over_another_image(api: Api) -> None:
    existing = api.seed("taken.jpg", text_vector(fake, "taken"), body=b"the original")
    data = imagefactory.jpeg(32, 32, RED)
    fields = {"content_type": "image/jpeg", "size": len(data)}

    # Over an existing image: S3 refuses the PUT, the original stays
    grant = api.post("/uploads", {"filename": "taken.jpg", **fields}).body
    assert "if-none-match" in signed_headers(grant["url"])
    put = requests.put(grant["url"], data=data, headers=grant["headers"], timeout=10)
    assert put.status_code == 412
    stored = api.aws.s3.get_object(Bucket=api.aws.bucket, Key=existing.key)["Body"].read()
    assert stored == b"the original"

    # A new key: written once; replaying the same URL within its 15 minutes is refused
    grant = api.post("/uploads", {"filename": "fresh.jpg", **fields}).body
    first = requests.put(grant["url"], data=data, headers=grant["headers"], timeout=10)
    assert first.status_code == 200
    replay = requests.put(grant["url"], data=data, headers=grant["headers"], timeout=10)
    assert replay.status_code == 412


def test_upload_with_overwrite_replaces_the_image(api: Api) -> None:
    existing = api.seed("replace.jpg", text_vector(fake, "old"), body=b"the original")
    data = imagefactory.jpeg(32, 32, RED)
    body = {"filename": "replace.jpg", "content_type": "image/jpeg", "size": len(data)}
    grant = api.post("/uploads", {**body, "overwrite": True}).body
    assert "If-None-Match" not in grant["headers"]
    assert "if-none-match" not in signed_headers(grant["url"])
    put = requests.put(grant["url"], data=data, headers=grant["headers"], timeout=10)
    assert put.status_code == 200
    stored = api.aws.s3.get_object(Bucket=api.aws.bucket, Key=existing.key)["Body"].read()
    assert stored == data


def test_upload_over_the_size_limit_is_413(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from imagesearch.handlers import api as api_module

    monkeypatch.setenv(r.ENV_MAX_UPLOAD_BYTES, "1000")
    api_module.configure(None)  # settings are read at (simulated) cold start
    response = api.post(
        "/uploads", {"filename": "big.jpg", "content_type": "image/jpeg", "size": 1001}
    )
    assert response.status == 413
    assert "limited to 1000 bytes" in response.message


# --- /health, /openapi.json, unknown routes ---------------------------------------------------


def test_health_needs_no_signature_and_counts_indexed_images(api: Api) -> None:
    first = api.seed("a.jpg", text_vector(fake, "a"))
    api.seed("b.jpg", text_vector(fake, "b"))
    api.seed("bad.jpg", None, status=r.STATUS_REJECTED, reason="corrupt")
    # A cold instance does not load the index for /health: it answers the count the
    # maintenance function published (none yet: null)
    response = api.call("GET", "/health", headers={"Authorization": ""})
    assert response.status == 200
    assert (response.body["images"], response.body["images_as_of"]) == (None, None)
    # Once a request loaded it, /health says what it holds, and as of when
    assert api.call("POST", "/search", body={"image_id": first.image_id}).status == 200
    response = api.call("GET", "/health", headers={"Authorization": ""})
    as_of = response.body.pop("images_as_of")
    assert response.body == {
        "status": "ok",
        "images": 2,
        "model_id": MODEL_ID,
        "dimension": DIMENSION,
        "capacity": r.CONTEXT_DEFAULTS["embeddedMaxImages"],
        "near_capacity": False,
        "cause": None,
        "model": {"state": "ok", "cause": None, "fix": None, "since": None},
    }
    assert as_of.endswith("Z")
    assert api.bedrock.calls == 0


def test_openapi_document_lists_every_route(api: Api) -> None:
    response = api.get("/openapi.json")
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    document = response.body
    assert document["openapi"].startswith("3.1")
    assert document["servers"] == [{"url": f"https://{DOMAIN}/{STAGE}"}]
    operations = {(path, method) for path, item in document["paths"].items() for method in item}
    assert operations >= {
        ("/search", "post"),
        ("/images", "get"),
        ("/images/{image_id}", "get"),
        ("/images/{image_id}", "delete"),
        ("/uploads", "post"),
        ("/health", "get"),
        ("/openapi.json", "get"),
    }
    search = document["paths"]["/search"]["post"]
    assert {"200", "400", "404", "413", "422", "429", "503"} <= set(search["responses"])
    assert "Retry-After" in search["responses"]["429"]["headers"]
    assert search["security"] == [{"sigv4": []}]
    assert "security" not in document["paths"]["/health"]["get"]
    schemas = document["components"]["schemas"]
    assert {"SearchRequest", "SearchResponse", "UploadRequest", "ErrorResponse"} <= set(schemas)
    assert schemas["SearchRequest"]["additionalProperties"] is False
    json.dumps(document)  # plain JSON all the way down


def test_unknown_route_is_404_json(api: Api) -> None:
    response = api.get("/nothing/here")
    assert response.status == 404
    assert "no route" in response.message


def test_wrong_method_is_405_json_with_allow(api: Api) -> None:
    response = api.call("PUT", "/images/" + "0" * 32)
    assert response.status == 405
    assert response.headers["allow"] == "DELETE, GET"
    assert "not allowed" in response.message
