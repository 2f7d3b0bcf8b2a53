"""S3VectorsIndex on the emulator over HTTP: the requests it sends (batch sizes, the
filter mapping, no per-hit round trips), the errors botocore raises from the emulator's
wire format, and how the adapter maps them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError, ParamValidationError
from botocore.stub import Stubber

from imagesearch.errors import IndexUnavailable
from imagesearch.index.s3vectors import (
    LIST_SEGMENTS,
    MAX_FOLDER_DEPTH,
    MAX_QUERY_PAGES,
    S3VectorsIndex,
    folder_id,
    metadata_for,
)
from imagesearch.local.s3vectors_emulator import (
    ENHANCED_DEFAULT_FROM,
    S3VectorsEmulator,
    S3VectorsService,
)
from imagesearch.ports import QueryFilters, VectorEntry
from tests.support.s3vectors import client_for, fresh_index

DIM = 4


@pytest.fixture(scope="module")
def emulator() -> Iterator[S3VectorsEmulator]:
    with S3VectorsEmulator() as running:
        yield running


class Spy:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if not callable(method):
            return method  # client.meta: the adapter registers its event handlers there

        def call(**kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            return method(**kwargs)

        return call

    def named(self, name: str) -> list[dict[str, Any]]:
        return [kwargs for called, kwargs in self.calls if called == name]


@pytest.fixture
def spy(emulator: S3VectorsEmulator) -> tuple[Spy, S3VectorsIndex]:
    client, bucket, index = fresh_index(emulator, DIM)
    spy = Spy(client)
    return spy, S3VectorsIndex(spy, bucket=bucket, index=index, dimension=DIM)


def entries(count: int) -> list[VectorEntry]:
    rng = np.random.default_rng(3)
    return [
        VectorEntry(f"i{n}", f"uploads/a/{n}.jpg", "image/jpeg", rng.normal(size=DIM))
        for n in range(count)
    ]


def test_writes_and_reads_are_batched_at_the_service_limits(
    spy: tuple[Spy, S3VectorsIndex],
) -> None:
    client, index = spy
    index.upsert(entries(1001))
    assert [len(call["vectors"]) for call in client.named("put_vectors")] == [500, 500, 1]
    index.get_vectors([f"i{n}" for n in range(201)])
    assert [len(call["keys"]) for call in client.named("get_vectors")] == [100, 100, 1]
    index.delete([f"i{n}" for n in range(501)])
    assert [len(call["keys"]) for call in client.named("delete_vectors")] == [500, 1]
    index.upsert([])
    index.delete([])
    assert len(client.named("put_vectors")) == 3 and len(client.named("delete_vectors")) == 2


def test_a_query_is_one_call_with_the_filters_mapped(spy: tuple[Spy, S3VectorsIndex]) -> None:
    client, index = spy
    index.upsert(entries(5))
    filters = QueryFilters(
        prefix="uploads/a/", content_types=("image/png", "image/jpeg"), exclude_ids=("i1",)
    )
    index.query(np.ones(DIM), 10, filters)
    (call,) = client.named("query_vectors")
    assert call["topK"] == 11  # one more than asked, for the excluded id
    assert call["filter"] == {
        "$and": [
            {"folders": {"$eq": folder_id("uploads/a/")}},
            {"content_type": {"$in": ["image/png", "image/jpeg"]}},
        ]
    }
    assert call["returnMetadata"] and call["returnDistance"]
    assert call["queryMode"] == "ENHANCED"  # the filter applies before the search
    assert client.named("get_vectors") == []  # hits carry their key: no per-hit reads


def test_a_prefix_ending_mid_name_over_fetches(spy: tuple[Spy, S3VectorsIndex]) -> None:
    client, index = spy
    index.upsert(entries(3))
    assert [
        hit.image_id for hit in index.query(np.ones(DIM), 1, QueryFilters(prefix="uploads/a/1"))
    ] == ["i1"]
    index.query(np.ones(DIM), 1, QueryFilters(prefix="upl"))
    mid, bare = client.named("query_vectors")
    assert mid["topK"] == 100 and mid["filter"] == {"folders": {"$eq": folder_id("uploads/a/")}}
    assert bare["topK"] == 100 and "filter" not in bare


def test_metadata_stays_within_the_filterable_limit_for_the_deepest_keys() -> None:
    key = "uploads/" + "a/" * 508  # 1,024 bytes
    metadata = metadata_for(VectorEntry("x", key, "image/jpeg", np.ones(DIM)))
    assert len(metadata["folders"]) == MAX_FOLDER_DEPTH
    filterable = {k: v for k, v in metadata.items() if k != "key"}
    assert len(json.dumps(filterable).encode()) < 2048


def test_service_outages_are_index_unavailable(emulator: S3VectorsEmulator) -> None:
    client = client_for(emulator)
    index = S3VectorsIndex(client, bucket="vb-x", index="ix-x", dimension=DIM)
    with Stubber(client) as stub:
        stub.add_client_error("query_vectors", "ServiceUnavailableException", http_status_code=503)
        stub.add_client_error("get_vectors", "TooManyRequestsException", http_status_code=429)
        with pytest.raises(IndexUnavailable, match="ServiceUnavailableException"):
            index.query(np.ones(DIM), 5, QueryFilters())
        with pytest.raises(IndexUnavailable, match="TooManyRequestsException"):
            index.get_vectors(["a"])


def test_a_missing_index_is_reported_not_hidden(emulator: S3VectorsEmulator) -> None:
    index = S3VectorsIndex(client_for(emulator), bucket="vb-none", index="ix-none", dimension=DIM)
    with pytest.raises(IndexUnavailable, match="NotFoundException"):
        index.query(np.ones(DIM), 5, QueryFilters())
    with pytest.raises(ClientError, match="NotFoundException"):
        index.upsert(entries(1))  # ingest fails the message; SQS retries it


def test_dimension_outside_the_service_range_is_refused(emulator: S3VectorsEmulator) -> None:
    with pytest.raises(ValueError, match="dimension"):
        S3VectorsIndex(client_for(emulator), bucket="vb", index="ix", dimension=4097)


def test_errors_reach_boto3_in_the_wire_format(emulator: S3VectorsEmulator) -> None:
    client = client_for(emulator)
    with pytest.raises(ClientError) as caught:
        client.get_index(vectorBucketName="nope", indexName="nope")
    assert caught.value.response["Error"]["Code"] == "NotFoundException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    client.create_vector_bucket(vectorBucketName="vb-2")
    with pytest.raises(ClientError) as caught:
        client.create_vector_bucket(vectorBucketName="vb-2")
    assert caught.value.response["Error"]["Code"] == "ConflictException"
    client.create_index(
        vectorBucketName="vb-2",
        indexName="ix-2",
        dataType="float32",
        dimension=2,
        distanceMetric="cosine",
    )
    with pytest.raises(ClientError) as caught:
        client.query_vectors(
            vectorBucketName="vb-2", indexName="ix-2", topK=500, queryVector={"float32": [1, 0]}
        )
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ParamValidationError):  # botocore's own check, before sending
        client.query_vectors(vectorBucketName="vb-2", indexName="ix-2", topK=0)
    with pytest.raises(ClientError, match="queryVector is required"):
        client.query_vectors(vectorBucketName="vb-2", indexName="ix-2", topK=1)


def test_a_request_over_20_mib_is_refused(emulator: S3VectorsEmulator) -> None:
    import requests

    from imagesearch.local.s3vectors_emulator import MAX_PAYLOAD_BYTES

    answer = requests.post(
        f"{emulator.endpoint_url}/PutVectors", data=b" " * (MAX_PAYLOAD_BYTES + 1), timeout=60
    )
    assert answer.status_code == 400
    assert answer.headers["x-amzn-ErrorType"] == "ValidationException"
    assert "payload" in answer.json()["message"]


def test_written_vectors_read_back_exactly(spy: tuple[Spy, S3VectorsIndex]) -> None:
    _, index = spy
    written = entries(20)
    index.upsert(written)
    stored = index.get_vectors([entry.image_id for entry in written])
    sent = index._units([entry.vector for entry in written])  # the unit rows written
    for row, entry in enumerate(written):
        assert np.array_equal(stored[entry.image_id], sent[row])  # bit for bit


def test_listing_runs_in_parallel_segments(spy: tuple[Spy, S3VectorsIndex]) -> None:
    client, index = spy
    index.upsert(entries(1201))
    whole = list(index.keys(segments=1))
    assert len(whole) == len(set(whole)) == 1201
    assert [call.get("segmentCount") for call in client.named("list_vectors")] == [None, None]
    client.calls.clear()
    listed = list(index.keys())
    assert sorted(listed) == sorted(whole)  # every key once
    calls = client.named("list_vectors")
    assert {call["segmentCount"] for call in calls} == {LIST_SEGMENTS}
    assert {call["segmentIndex"] for call in calls} == set(range(LIST_SEGMENTS))
    assert index.count() == 1201


# -- query mode (decision 37) ---------------------------------------------------------


@pytest.fixture(scope="module")
def classic_emulator() -> Iterator[S3VectorsEmulator]:
    """Buckets created before 2026-09-30: their indexes are CLASSIC. Its CLASSIC search
    considers the 10 nearest vectors before it filters."""
    service = S3VectorsService(clock=lambda: ENHANCED_DEFAULT_FROM - 86_400, classic_candidates=10)
    with S3VectorsEmulator(service=service) as running:
        yield running


def test_a_small_folder_gets_top_k_on_a_classic_index(
    classic_emulator: S3VectorsEmulator,
) -> None:
    # Given a CLASSIC index: 40 images near the query elsewhere, 5 far from it in a folder
    client, bucket, name = fresh_index(classic_emulator, DIM)
    index = S3VectorsIndex(client, bucket=bucket, index=name, dimension=DIM)
    assert index.index_mode() == "CLASSIC"
    near = [
        VectorEntry(f"near{n}", f"uploads/big/{n}.jpg", "image/jpeg", np.array([1, 0, 0, n / 100]))
        for n in range(40)
    ]
    small = [
        VectorEntry(f"small{n}", f"uploads/small/{n}.jpg", "image/jpeg", np.array([0, 1, n, 0]))
        for n in range(5)
    ]
    index.upsert(near + small)

    # When the folder is searched for 5 images
    hits = index.query(np.array([1, 0, 0, 0]), 5, QueryFilters(prefix="uploads/small/"))

    # Then all five come back (the filter applies before the search), the index untouched
    assert sorted(hit.image_id for hit in hits) == [f"small{n}" for n in range(5)]
    assert index.index_mode() == "CLASSIC"


def test_a_classic_index_is_moved_to_enhanced_once(classic_emulator: S3VectorsEmulator) -> None:
    client, bucket, name = fresh_index(classic_emulator, DIM)
    spy = Spy(client)
    index = S3VectorsIndex(spy, bucket=bucket, index=name, dimension=DIM)
    assert index.use_enhanced_mode() is True
    assert index.index_mode() == "ENHANCED"
    assert index.use_enhanced_mode() is False  # already there: no second update
    assert spy.named("update_index_mode") == [
        {"vectorBucketName": bucket, "indexName": name, "indexMode": "ENHANCED"}
    ]


def test_an_index_described_without_a_mode_is_classic(emulator: S3VectorsEmulator) -> None:
    # A GetIndex answer from before index modes existed (the field is optional)
    client = client_for(emulator)
    index = S3VectorsIndex(client, bucket="vb-old", index="ix-old", dimension=DIM)
    described = {
        "vectorBucketName": "vb-old",
        "indexName": "ix-old",
        "indexArn": "arn:aws:s3vectors:us-east-1:123456789012:bucket/vb-old/index/ix-old",
        "creationTime": 0,
        "dataType": "float32",
        "dimension": DIM,
        "distanceMetric": "cosine",
    }
    with Stubber(client) as stub:
        stub.add_response("get_index", {"index": described})
        stub.add_response("get_index", {"index": {**described, "indexMode": "ENHANCED"}})
        assert index.index_mode() == "CLASSIC"
        assert index.index_mode() == "ENHANCED"


@pytest.fixture
def paging_emulator() -> Iterator[S3VectorsEmulator]:
    """The service may answer QueryVectors in pages (nextToken); this one pages by 3."""
    service = S3VectorsService()
    service.query_page_size = 3
    with S3VectorsEmulator(service=service) as running:
        yield running


def test_a_paged_query_answer_is_read_to_top_k(paging_emulator: S3VectorsEmulator) -> None:
    client, bucket, name = fresh_index(paging_emulator, DIM)
    spy = Spy(client)
    index = S3VectorsIndex(spy, bucket=bucket, index=name, dimension=DIM)
    index.upsert(
        [
            VectorEntry(f"v{n:02d}", f"uploads/{n}.jpg", "image/jpeg", np.array([1, n / 10, 0, 0]))
            for n in range(12)
        ]
    )

    hits = index.query(np.array([1, 0, 0, 0]), 10, QueryFilters())

    # Four pages of at most three, and the ten nearest in order (not the first page's three)
    assert [hit.image_id for hit in hits] == [f"v{n:02d}" for n in range(10)]
    pages = spy.named("query_vectors")
    assert len(pages) == 4 and "nextToken" not in pages[0]
    assert all(page["nextToken"] for page in pages[1:])


class EndlessPages:
    """A client whose every QueryVectors answer says there is more."""

    def __init__(self) -> None:
        self.calls = 0

    def query_vectors(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        return {"vectors": [], "nextToken": "more"}


def test_a_query_whose_pages_never_end_fails_as_unavailable() -> None:
    client = EndlessPages()
    index = S3VectorsIndex(client, bucket="vb-1", index="ix-1", dimension=DIM)
    with pytest.raises(IndexUnavailable, match="still paging"):
        index.query(np.array([1, 0, 0, 0]), 10, QueryFilters())
    assert client.calls == MAX_QUERY_PAGES
