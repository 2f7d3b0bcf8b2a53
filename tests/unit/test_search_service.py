"""SearchService and the API request models, on in-memory fakes (no network)."""

from __future__ import annotations

import base64
import threading
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from fakes import imagefactory
from fakes.catalog import InMemoryCatalog, InMemoryVectorIndex
from imagesearch.api_models import (
    UPLOAD_CONTENT_TYPES,
    QueryPart,
    SearchRequest,
    UploadRequest,
    error_summary,
)
from imagesearch.embedders.base import Vector, unit_vector
from imagesearch.errors import (
    EmbedderConfigurationError,
    ImageRejected,
    InvalidCursor,
    InvalidRequest,
    ModelUnusable,
    NotFound,
    TransientEmbeddingError,
    UploadTooLarge,
)
from imagesearch.health import ImageCount
from imagesearch.model_health import ModelHealth, ModelProblem
from imagesearch.ports import QueryFilters, VectorEntry
from imagesearch.records import ImageRecord, image_id_for_key
from imagesearch.search import SearchService, decode_base64_image

DIM = 8
PREFIX = "uploads/"
MODEL = "amazon.titan-embed-image-v1"


def axis(i: int, j: int | None = None, weight: float = 1.0) -> Vector:
    """Unit vector along axis i (tilted towards axis j by ``weight``)."""
    v = np.zeros(DIM, dtype=np.float32)
    v[i] = 1.0
    if j is not None:
        v[j] = weight
    return unit_vector(v)


class FakeEmbedder:
    """Deterministic embedder that records every call."""

    model_id = MODEL
    dimension = DIM

    def __init__(self, vectors: dict[str, Vector] | None = None) -> None:
        self.vectors = vectors or {}
        self.calls: list[tuple[str | None, bytes | None]] = []
        self.purposes: list[str] = []

    def embed(
        self, *, text: str | None = None, image: bytes | None = None, purpose: str = "document"
    ) -> Vector:
        self.calls.append((text, image))
        self.purposes.append(purpose)
        if text is not None and image is None:
            return self.vectors[text]
        return axis(7)


class FakeIndex:
    """The in-memory catalog and vector index the service reads, seeded together."""

    def __init__(self) -> None:
        self.catalog = InMemoryCatalog()
        self.vectors = InMemoryVectorIndex(DIM)

    @property
    def records(self) -> dict[str, ImageRecord]:
        return self.catalog.records

    @property
    def queries(self) -> list[tuple[int, QueryFilters]]:
        return self.vectors.queries

    @property
    def list_calls(self) -> list[dict[str, Any]]:
        return self.catalog.list_calls

    def add(
        self, key: str, vector: Vector | None, *, in_index: bool = True, **fields: Any
    ) -> ImageRecord:
        image_id = image_id_for_key(key)
        status = fields.pop("status", "indexed")
        record = ImageRecord(
            image_id=image_id,
            key=key,
            status=status,
            content_type="image/jpeg",
            model_id=fields.pop("model_id", MODEL),
            dimension=DIM if vector is not None else None,
            sequencer="S1",
            vector=vector,
            **fields,
        )
        assert self.catalog.put(record)
        if vector is not None and in_index:
            self.vectors.upsert([VectorEntry(image_id, key, record.content_type, vector)])
        return record


class FakeStore:
    def __init__(self) -> None:
        self.deleted: list[str] = []
        self.put_requests: list[dict[str, Any]] = []
        self.served: dict[str, tuple[str, bool]] = {}  # key -> (content type, attachment)
        self.versions: dict[str, str | None] = {}  # key -> the version asked for

    def presign_get(
        self,
        key: str,
        *,
        expires_in: int = 900,
        content_type: str,
        attachment: bool = False,
        version: str | None = None,
    ) -> str:
        self.served[key] = (content_type, attachment)
        self.versions[key] = version
        return f"https://bucket.test/{key}?X-Amz-Expires={expires_in}"

    def presign_put(
        self,
        key: str,
        *,
        content_type: str,
        content_length: int,
        expires_in: int = 900,
        overwrite: bool = False,
    ) -> tuple[str, dict[str, str]]:
        self.put_requests.append(
            {
                "key": key,
                "content_type": content_type,
                "content_length": content_length,
                "overwrite": overwrite,
            }
        )
        return f"https://bucket.test/{key}?put", {
            "Content-Type": content_type,
            "Content-Length": str(content_length),
        }

    def delete(self, key: str) -> None:
        self.deleted.append(key)


@pytest.fixture
def index() -> FakeIndex:
    index = FakeIndex()
    index.add(
        "uploads/shoes/red.jpg",
        axis(0),
        width=640,
        height=480,
        size=1234,
        caption="red",
        etag="etag-red",
    )
    index.add("uploads/shoes/blue.jpg", axis(0, 1, 0.5))
    index.add("uploads/bags/green.jpg", axis(1))
    index.add("uploads/bags/broken.jpg", None, status="rejected", reason="not an image")
    return index


@pytest.fixture
def embedder() -> FakeEmbedder:
    return FakeEmbedder({"red shoe": axis(0), "green bag": axis(1), "blue": axis(2)})


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def service(index: FakeIndex, embedder: FakeEmbedder, store: FakeStore) -> SearchService:
    return SearchService(
        index.catalog,
        index.vectors,
        embedder,
        store,
        upload_prefix=PREFIX,
        model_id=MODEL,
        dimension=DIM,
        url_ttl=600,
        max_upload_bytes=1000,
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- request models ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, "at least one of text, image, image_id or queries"),
        ({"text": ""}, "at least 1 character"),
        ({"text": "   "}, "must not be blank"),
        ({"text": "x" * 1001}, "at most 1000 characters"),
        ({"text": "a", "top_k": "10"}, "valid integer"),
        ({"text": "a", "top_k": 0}, "greater than or equal to 1"),
        ({"text": "a", "top_k": 101}, "less than or equal to 100"),
        ({"text": "a", "top_k": True}, "valid integer"),
        ({"text": {"$ne": ""}}, "valid string"),
        ({"text": "a", "min_score": 1.5}, "less than or equal to 1"),
        ({"text": "a", "prefix": {"$gt": ""}}, "valid string"),
        ({"text": "a", "content_type": "image/jpeg"}, "valid list"),
        ({"text": "a", "content_type": ["no-slash"]}, "should match pattern"),
        ({"text": "a", "colour": "red"}, "Extra inputs are not permitted"),
        ({"image_id": "../etc/passwd"}, "should match pattern"),
        ({"image_id": "0" * 32, "text": "a"}, "image_id cannot be combined"),
        ({"text": "a", "queries": [{"text": "b"}]}, "queries cannot be combined with text"),
        ({"queries": []}, "at least 1 item"),
        ({"queries": [{"text": "a", "image_id": "0" * 32}]}, "exactly one of"),
        ({"queries": [{"weight": 1.0}]}, "exactly one of"),
        ({"queries": [{"text": "a", "weight": "2"}]}, "valid number"),
        ({"queries": [{"text": "a", "weight": 0}]}, "weight must not be zero"),
        ({"queries": [{"text": "a", "weight": float("inf")}]}, "finite number"),
        ({"queries": [{"text": str(i)} for i in range(11)]}, "at most 10 items"),
    ],
)
def test_search_request_rejects(body: dict[str, Any], expected: str) -> None:
    # Given a body that breaks one rule, When it is validated, Then the message says which
    with pytest.raises(ValidationError) as caught:
        SearchRequest.model_validate(body)
    assert expected in error_summary(caught.value.errors())


def test_search_request_defaults_and_accepted_shapes() -> None:
    request = SearchRequest.model_validate(
        {"text": "red", "image": "aGk=", "min_score": 0, "content_type": ["image/png"]}
    )
    assert request.top_k == 10
    assert request.min_score == 0.0
    weighted = SearchRequest.model_validate(
        {"queries": [{"text": "a"}, {"image_id": "a" * 32, "weight": -1}]}
    )
    assert weighted.queries is not None
    assert [p.weight for p in weighted.queries] == [1.0, -1.0]


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("../../etc/passwd", "must not contain '.' or '..' path segments"),
        ("./x.jpg", "'.' or '..' path segments"),
        ("a/./b.jpg", "'.' or '..' path segments"),
        (".", "'.' or '..' path segments"),
        ("a/..", "'.' or '..' path segments"),
        ("\U0001f600" * 257 + ".jpg", "1032 bytes in UTF-8; S3 keys are at most 1024 bytes"),
        ("/abs.jpg", "no leading '/'"),
        ("a\x00b.jpg", "control characters"),
        ("line\nbreak.jpg", "control characters"),
        ("dir\\x.jpg", "not '\\'"),
        ("a//b.jpg", "empty path segments"),
        ("x" * 513, "at most 512 characters"),
        ("", "at least 1 character"),
    ],
)
def test_upload_request_rejects_unsafe_filenames(filename: str, expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        UploadRequest.model_validate({"filename": filename, "content_type": "image/jpeg"})
    assert expected in error_summary(caught.value.errors())


@pytest.mark.parametrize("filename", ["a..b.jpg", "..hidden.jpg", "x./y.jpg", ".x/.y.jpg"])
def test_upload_request_accepts_dots_inside_names(filename: str) -> None:
    request = {"filename": filename, "content_type": "image/jpeg", "size": 1}
    assert UploadRequest.model_validate(request).filename == filename


def test_upload_request_content_type_and_size_rules() -> None:
    with pytest.raises(ValidationError, match="image/jpeg"):
        UploadRequest.model_validate({"filename": "a.pdf", "content_type": "application/pdf"})
    with pytest.raises(ValidationError):
        UploadRequest.model_validate({"filename": "a.jpg", "content_type": "image/jpeg", "size": 0})
    # Unbounded uploads are gone: the size is required and signed (issue 9 finding 9)
    with pytest.raises(ValidationError, match="size"):
        UploadRequest.model_validate({"filename": "a.jpg", "content_type": "image/jpeg"})
    ok = UploadRequest.model_validate(
        {"filename": "shoes/red shoe.jpg", "content_type": "image/heic", "size": 10}
    )
    assert ok.size == 10
    assert set(UPLOAD_CONTENT_TYPES) >= {"image/jpeg", "image/png", "image/webp", "image/heic"}


def test_error_summary_names_fields_and_counts_the_rest() -> None:
    errors = [{"loc": ("body", "top_k"), "msg": "too big"}] + [
        {"loc": ("query", f"f{i}"), "msg": "bad"} for i in range(7)
    ]
    summary = error_summary(errors)
    assert summary.startswith("top_k: too big; f0: bad")
    assert summary.endswith("and 3 more")


# --- base64 -------------------------------------------------------------------------


def test_decode_base64_image_tolerates_common_encodings() -> None:
    data = bytes(range(256)) * 3
    standard = base64.b64encode(data).decode()
    assert decode_base64_image(standard) == data
    assert decode_base64_image("data:image/png;base64," + standard) == data
    wrapped = "\n".join(standard[i : i + 76] for i in range(0, len(standard), 76))
    assert decode_base64_image(wrapped) == data
    assert decode_base64_image(base64.urlsafe_b64encode(data).decode().rstrip("=")) == data


@pytest.mark.parametrize("value", ["not base64!!", "abcde", "====", "data:image/png;base64,"])
def test_decode_base64_image_rejects_garbage(value: str) -> None:
    with pytest.raises(ImageRejected, match=r"base64|empty"):
        decode_base64_image(value)


# --- search -------------------------------------------------------------------------


def test_text_search_ranks_hydrates_and_presigns(
    service: SearchService, index: FakeIndex, embedder: FakeEmbedder
) -> None:
    # Given three indexed images, When searching by text close to the red shoe
    response = service.search(SearchRequest(text="red shoe", top_k=3))
    # Then one model call, a query embedding (not a document one), and results ordered
    # by cosine similarity with exact scores
    assert embedder.calls == [("red shoe", None)]
    assert embedder.purposes == ["query"]
    keys = [r.key for r in response.results]
    assert keys == ["uploads/shoes/red.jpg", "uploads/shoes/blue.jpg", "uploads/bags/green.jpg"]
    scores = [r.score for r in response.results]
    assert scores == pytest.approx([1.0, float(axis(0, 1, 0.5)[0]), 0.0], abs=1e-6)
    first = response.results[0]
    assert first.image_id == image_id_for_key("uploads/shoes/red.jpg")
    assert first.url == "https://bucket.test/uploads/shoes/red.jpg?X-Amz-Expires=600"
    assert (
        first.thumbnail_url
        == f"https://bucket.test/thumbnails/{first.image_id}.jpg?X-Amz-Expires=600"
    )
    assert (first.width, first.height, first.size, first.caption) == (640, 480, 1234, "red")
    assert response.count == 3
    assert (response.model_id, response.dimension) == (MODEL, DIM)
    assert response.took_ms >= 0


def test_results_drop_records_that_vanished_and_keep_order(
    service: SearchService, index: FakeIndex
) -> None:
    # Given the best hit's record disappears between the index snapshot and hydration
    del index.records[image_id_for_key("uploads/shoes/red.jpg")]
    response = service.search(SearchRequest(text="red shoe", top_k=3))
    assert [r.key for r in response.results] == ["uploads/shoes/blue.jpg", "uploads/bags/green.jpg"]
    assert response.count == 2


def test_text_and_image_make_one_joint_call(service: SearchService, embedder: FakeEmbedder) -> None:
    image = imagefactory.jpeg(64, 48)
    service.search(SearchRequest(text="blue", image=b64(image)))
    assert len(embedder.calls) == 1
    text, sent = embedder.calls[0]
    assert text == "blue"
    assert sent == image  # a compliant JPEG goes to the model as it is


def test_image_is_validated_before_the_model(
    service: SearchService, embedder: FakeEmbedder
) -> None:
    with pytest.raises(ImageRejected, match="base64"):
        service.search(SearchRequest(image="%%%"))
    with pytest.raises(ImageRejected):
        service.search(SearchRequest(image=b64(b"%PDF-1.4 not an image")))
    assert embedder.calls == []


def test_more_like_this_uses_the_stored_vector_and_skips_itself(
    service: SearchService, index: FakeIndex, embedder: FakeEmbedder
) -> None:
    source = image_id_for_key("uploads/shoes/red.jpg")
    response = service.search(SearchRequest(image_id=source, top_k=5))
    assert embedder.calls == []
    assert [r.key for r in response.results][:1] == ["uploads/shoes/blue.jpg"]
    assert source not in {r.image_id for r in response.results}
    assert index.queries[-1][1].exclude_ids == (source,)


def test_more_like_this_reads_a_vector_newer_than_the_index_from_the_catalog(
    service: SearchService, index: FakeIndex, embedder: FakeEmbedder
) -> None:
    # Given an image the catalog holds but the index has not caught up with yet
    late = index.add("uploads/bags/late.jpg", axis(1, 0, 0.2), in_index=False)
    response = service.search(SearchRequest(image_id=late.image_id, top_k=1))
    assert embedder.calls == []
    assert [r.key for r in response.results] == ["uploads/bags/green.jpg"]
    # And a vector of another model or a rejected record is not "indexed"
    other = index.add("uploads/bags/other.jpg", axis(2), in_index=False, model_id="other")
    with pytest.raises(NotFound):
        service.search(SearchRequest(image_id=other.image_id))
    with pytest.raises(NotFound):
        service.search(SearchRequest(image_id=image_id_for_key("uploads/bags/broken.jpg")))


def test_unknown_image_id_is_not_found(service: SearchService) -> None:
    with pytest.raises(NotFound):
        service.search(SearchRequest(image_id="f" * 32))


def test_weighted_queries_sum_unit_vectors_and_renormalise(
    service: SearchService, embedder: FakeEmbedder
) -> None:
    request = SearchRequest(
        queries=[QueryPart(text="red shoe", weight=2.0), QueryPart(text="green bag", weight=-1.0)]
    )
    vector = service.query_vector(request)
    expected = unit_vector(2.0 * axis(0) - 1.0 * axis(1))
    np.testing.assert_allclose(vector, expected, atol=1e-6)
    assert sorted(t for t, _ in embedder.calls) == ["green bag", "red shoe"]


def test_negative_weight_pushes_results_away(service: SearchService) -> None:
    plain = service.search(SearchRequest(text="red shoe", top_k=3))
    steered = service.search(
        SearchRequest(
            queries=[QueryPart(text="red shoe"), QueryPart(text="green bag", weight=-1.0)],
            top_k=3,
        )
    )
    plain_scores = {r.key: r.score for r in plain.results}
    steered_scores = {r.key: r.score for r in steered.results}
    assert steered_scores["uploads/bags/green.jpg"] < plain_scores["uploads/bags/green.jpg"]
    assert steered.results[-1].key == "uploads/bags/green.jpg"
    assert steered_scores["uploads/bags/green.jpg"] < 0


def test_weights_that_cancel_out_are_refused(service: SearchService) -> None:
    request = SearchRequest(
        queries=[QueryPart(text="red shoe", weight=1.0), QueryPart(text="red shoe", weight=-1.0)]
    )
    with pytest.raises(InvalidRequest, match="cancel out"):
        service.search(request)


def test_filters_reach_the_index(service: SearchService, index: FakeIndex) -> None:
    response = service.search(
        SearchRequest(
            text="red shoe",
            prefix="bags/",
            content_type=["IMAGE/JPEG", "image/jpeg"],
            min_score=-0.5,
        )
    )
    _, filters = index.queries[-1]
    assert filters.prefix == "uploads/bags/"  # relative prefixes land under the upload prefix
    assert filters.content_types == ("image/jpeg",)
    assert filters.min_score == -0.5
    assert [r.key for r in response.results] == ["uploads/bags/green.jpg"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, None),
        ("uploads/shoes/", "uploads/shoes/"),
        ("upl", "upl"),
        ("shoes/", "uploads/shoes/"),
    ],
)
def test_key_prefix(service: SearchService, given: str | None, expected: str | None) -> None:
    assert service.key_prefix(given) == expected


def test_min_score_cuts_results(service: SearchService) -> None:
    response = service.search(SearchRequest(text="red shoe", min_score=0.5))
    assert [r.key for r in response.results] == ["uploads/shoes/red.jpg", "uploads/shoes/blue.jpg"]


# --- images, uploads, health ----------------------------------------------------------


def test_get_image_shows_record_without_vector(service: SearchService) -> None:
    image_id = image_id_for_key("uploads/shoes/red.jpg")
    image = service.get_image(image_id)
    assert image.status == "indexed"
    assert image.url.startswith("https://bucket.test/uploads/shoes/red.jpg")
    assert image.thumbnail_url is not None
    assert "vector" not in image.model_dump()


def test_rejected_image_has_reason_and_no_thumbnail(service: SearchService) -> None:
    image = service.get_image(image_id_for_key("uploads/bags/broken.jpg"))
    assert (image.status, image.reason, image.thumbnail_url) == ("rejected", "not an image", None)


@pytest.mark.parametrize("image_id", ["f" * 32, "../x", "F" * 32])
def test_unknown_or_malformed_ids_are_not_found(service: SearchService, image_id: str) -> None:
    with pytest.raises(NotFound):
        service.get_image(image_id)
    with pytest.raises(NotFound):
        service.delete_image(image_id)


def test_tombstones_are_not_found(service: SearchService, index: FakeIndex) -> None:
    image_id = image_id_for_key("uploads/shoes/red.jpg")
    index.records[image_id] = replace(index.records[image_id], status="deleted")
    with pytest.raises(NotFound):
        service.get_image(image_id)


def test_delete_removes_original_record_vector_and_thumbnail(
    service: SearchService, store: FakeStore, index: FakeIndex
) -> None:
    image_id = image_id_for_key("uploads/shoes/red.jpg")
    accepted = service.delete_image(image_id)
    assert store.deleted == ["uploads/shoes/red.jpg", f"thumbnails/{image_id}.jpg"]
    assert (accepted.image_id, accepted.key, accepted.status) == (
        image_id,
        "uploads/shoes/red.jpg",
        "deleting",
    )
    tombstone = index.records[image_id]
    assert (tombstone.status, tombstone.sequencer) == ("deleted", "S1.")
    assert index.vectors.get_vectors([image_id]) == {}


def test_delete_of_a_record_rewritten_meanwhile_leaves_it_to_the_s3_events(
    service: SearchService, store: FakeStore, index: FakeIndex
) -> None:
    # Ingest rewrites the record between the API's read and its tombstone
    key = "uploads/shoes/red.jpg"
    image_id = image_id_for_key(key)

    def rewrite(operation: str, image_ids: list[str]) -> None:
        if operation == "tombstone":
            index.catalog.before = lambda operation, image_ids: None
            assert index.catalog.put(replace(index.records[image_id], sequencer="S2"))

    index.catalog.before = rewrite
    accepted = service.delete_image(image_id)

    assert accepted.status == "deleting"
    assert store.deleted == [key]  # the original only: the thumbnail may be the new one's
    assert (index.records[image_id].status, index.records[image_id].sequencer) == ("indexed", "S2")
    assert image_id in index.vectors.get_vectors([image_id])


def test_list_images_pages_and_maps_bad_cursors(service: SearchService, index: FakeIndex) -> None:
    page = service.list_images(prefix="shoes/", status=None, limit=1, cursor=None)
    assert [i.key for i in page.items] == ["uploads/shoes/blue.jpg"]
    assert page.cursor is not None
    assert index.list_calls[-1] == {"prefix": "uploads/shoes/", "status": None, "limit": 1}
    rejected = service.list_images(prefix=None, status="rejected", limit=10, cursor=None)
    assert [(i.key, i.thumbnail_url) for i in rejected.items] == [("uploads/bags/broken.jpg", None)]
    with pytest.raises(InvalidCursor, match="cursor is not valid"):
        service.list_images(prefix=None, status=None, limit=10, cursor="garbage")


def test_create_upload_presigns_into_the_prefix(service: SearchService, store: FakeStore) -> None:
    upload = service.create_upload(
        UploadRequest(filename="shoes/new.jpg", content_type="image/jpeg", size=999)
    )
    assert upload.key == "uploads/shoes/new.jpg"
    assert upload.headers == {"Content-Type": "image/jpeg", "Content-Length": "999"}
    assert store.put_requests == [
        {
            "key": "uploads/shoes/new.jpg",
            "content_type": "image/jpeg",
            "content_length": 999,
            "overwrite": False,
        }
    ]
    service.create_upload(
        UploadRequest(filename="shoes/new.jpg", content_type="image/jpeg", size=9, overwrite=True)
    )
    assert store.put_requests[-1]["overwrite"] is True


def test_create_upload_refuses_keys_over_s3s_limit(service: SearchService) -> None:
    def upload(name: str) -> str:
        request = UploadRequest(filename=name, content_type="image/jpeg", size=1)
        return service.create_upload(request).key

    # 1,020 bytes pass the request model; with "uploads/" the key would be 1,028
    with pytest.raises(InvalidRequest, match="key of 1028 bytes in UTF-8"):
        upload("€" * 338 + "ab.jpg")
    with pytest.raises(InvalidRequest, match="key of 1025 bytes"):
        upload("€" * 337 + "ab.jpg")
    assert len(upload("€" * 337 + "a.jpg").encode()) == 1024


def test_only_indexed_images_are_served_inline_as_their_type(
    service: SearchService, store: FakeStore
) -> None:
    # Given an indexed JPEG and a rejected object whose metadata claimed an image
    service.get_image(image_id_for_key("uploads/shoes/red.jpg"))
    service.get_image(image_id_for_key("uploads/bags/broken.jpg"))
    # Then the JPEG is served inline as image/jpeg, its thumbnail too...
    assert store.served["uploads/shoes/red.jpg"] == ("image/jpeg", False)
    red_id = image_id_for_key("uploads/shoes/red.jpg")
    assert store.served[f"thumbnails/{red_id}.jpg"] == ("image/jpeg", False)
    # ...and the rejected object downloads as opaque bytes
    assert store.served["uploads/bags/broken.jpg"] == ("application/octet-stream", True)


def test_result_urls_are_asked_for_the_records_version(
    service: SearchService, store: FakeStore
) -> None:
    # The object store may hand out a URL again only for the same ETag (a replaced
    # image must not show a browser's cached copy of the old one).
    (hit,) = service.search(SearchRequest(text="red shoe", top_k=1)).results
    assert hit.key == "uploads/shoes/red.jpg"
    assert store.versions[hit.key] == "etag-red"
    assert store.versions[f"thumbnails/{hit.image_id}.jpg"] == "etag-red"


def test_create_upload_refuses_sizes_over_the_limit(service: SearchService) -> None:
    with pytest.raises(UploadTooLarge, match="limited to 1000 bytes"):
        service.create_upload(
            UploadRequest(filename="big.jpg", content_type="image/jpeg", size=1001)
        )


def test_health_answers_the_published_count_without_counting(
    index: FakeIndex, embedder: FakeEmbedder, store: FakeStore
) -> None:
    def counted() -> ImageCount:
        return ImageCount(3, 1_767_225_600_000)

    service = SearchService(
        index.catalog,
        index.vectors,
        embedder,
        store,
        upload_prefix=PREFIX,
        model_id=MODEL,
        dimension=DIM,
        published_count=counted,
    )
    health = service.health()
    assert (health.status, health.images, health.model_id, health.dimension) == (
        "ok",
        3,
        MODEL,
        DIM,
    )
    assert health.images_as_of == "2026-01-01T00:00:00.000Z"


def test_health_without_a_published_count_never_counts_the_index(
    service: SearchService, index: FakeIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An index that could count (the scale tier's would list every vector) is not asked
    monkeypatch.setattr(index.vectors, "count", lambda: pytest.fail("counted the index"))
    health = service.health()
    assert (health.images, health.images_as_of) == (None, None)


def test_query_images_are_decoded_one_at_a_time_within_the_budget(
    service: SearchService, embedder: FakeEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a decode budget smaller than one decode, and a probe on the decoding step
    from imagesearch import images

    monkeypatch.setattr(images, "_DECODES", images._DecodeBudget(1))
    active, most = [0], [0]
    lock = threading.Lock()
    downscale = images._downscale

    def probe(*args: Any, **kwargs: Any) -> Any:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            return downscale(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(images, "_downscale", probe)
    # When one request carries ten query images (embedded from several threads)
    parts = [QueryPart(image=b64(imagefactory.webp(640, 480)), weight=1.0) for _ in range(10)]
    service.search(SearchRequest(queries=parts))
    # Then all ten reach the model, and no two were ever decoded at the same time
    assert len(embedder.calls) == 10
    assert most[0] == 1


# --- the model's usability (issue 17, item 10) --------------------------------------


class FailingEmbedder(FakeEmbedder):
    """Raises ``errors`` in turn, then embeds as FakeEmbedder."""

    def __init__(self, *errors: Exception) -> None:
        super().__init__({"red shoe": axis(0)})
        self.errors = list(errors)

    def embed(
        self, *, text: str | None = None, image: bytes | None = None, purpose: str = "document"
    ) -> Vector:
        if self.errors:
            raise self.errors.pop(0)
        return super().embed(text=text, image=image, purpose=purpose)


def _service_with(
    index: FakeIndex, store: FakeStore, embedder: FakeEmbedder, health: ModelHealth
) -> SearchService:
    return SearchService(
        index.catalog,
        index.vectors,
        embedder,
        store,
        upload_prefix=PREFIX,
        model_id=MODEL,
        dimension=DIM,
        model_health=health,
    )


NOON = 1_767_268_800.0  # 2026-01-01T12:00:00Z


def test_a_configuration_error_degrades_health_until_a_query_embeds_again(
    index: FakeIndex, store: FakeStore
) -> None:
    denied = EmbedderConfigurationError(
        "Bedrock denied access for arn:aws:iam::123456789012:role/api; enable model access"
    )
    service = _service_with(index, store, FailingEmbedder(denied), ModelHealth(lambda: NOON))

    with pytest.raises(EmbedderConfigurationError) as raised:
        service.search(SearchRequest(text="red shoe"))
    assert raised.value.public_message == (
        "the embedding model is unusable: Bedrock denied access for [ARN]; enable model access"
    )
    health = service.health()
    assert health.status == "degraded"
    assert health.cause == (
        "the embedding model is unusable: Bedrock denied access for [ARN]; enable model access"
    )
    assert health.model.model_dump() == {
        "state": "unusable",
        "cause": "Bedrock denied access for [ARN]; enable model access",
        "fix": None,
        "since": "2026-01-01T12:00:00+00:00",
    }

    service.search(SearchRequest(text="red shoe"))  # the model answers again

    assert (service.health().status, service.health().cause) == ("ok", None)
    assert service.health().model.state == "ok"


def test_a_transient_failure_names_the_cause_a_check_found(
    index: FakeIndex, store: FakeStore
) -> None:
    # Given a start-up check that found no credentials (Bedrock then looks unreachable)
    health = ModelHealth(lambda: NOON)
    health.checked("AWS credentials: none found", "set AWS_PROFILE")
    unreachable = TransientEmbeddingError("EndpointConnectionError: could not connect")
    service = _service_with(index, store, FailingEmbedder(unreachable), health)

    with pytest.raises(ModelUnusable) as raised:
        service.search(SearchRequest(text="red shoe"))

    assert raised.value.status == 503
    assert raised.value.public_message == (
        "the embedding model is unusable: AWS credentials: none found — set AWS_PROFILE"
    )
    assert service.health().model.fix == "set AWS_PROFILE"
    # A successful (perhaps cached) embed does not overrule the check: only the check does
    service.search(SearchRequest(text="red shoe"))
    assert service.health().status == "degraded"
    health.checked(None)
    assert service.health().status == "ok"


@pytest.mark.parametrize(
    "error",
    [
        TransientEmbeddingError("ReadTimeout"),
        TransientEmbeddingError("ThrottlingException", throttled=True),
    ],
)
def test_transient_failures_stay_retry_shortly_without_a_known_cause(
    index: FakeIndex, store: FakeStore, error: TransientEmbeddingError
) -> None:
    service = _service_with(index, store, FailingEmbedder(error), ModelHealth())

    with pytest.raises(TransientEmbeddingError) as raised:
        service.search(SearchRequest(text="red shoe"))

    assert "retry shortly" in raised.value.public_message
    assert service.health().status == "ok"


def test_throttling_stays_throttling_even_with_a_known_problem(
    index: FakeIndex, store: FakeStore
) -> None:
    health = ModelHealth()
    health.checked("Bedrock is busy: ThrottlingException", "nothing: files wait and are retried")
    throttled = TransientEmbeddingError("ThrottlingException", throttled=True)
    service = _service_with(index, store, FailingEmbedder(throttled), health)

    with pytest.raises(TransientEmbeddingError) as raised:
        service.search(SearchRequest(text="red shoe"))

    assert raised.value.status == 429


def test_a_changed_check_result_restarts_its_time() -> None:
    now = [NOON]
    health = ModelHealth(lambda: now[0])
    health.checked("model access: denied", "enable it")
    now[0] += 60
    health.checked("model access: denied", "enable it")  # the same: still since noon
    assert health.problem() == ModelProblem("model access: denied", "enable it", NOON)
    health.checked("AWS credentials: expired", "aws sso login")
    assert health.problem() == ModelProblem("AWS credentials: expired", "aws sso login", NOON + 60)
