"""The S3 Vectors emulator: its filter language, its request validation against
botocore's service model and the documented limits, and its wire-format errors."""

from __future__ import annotations

from typing import Any

import pytest

from imagesearch.local.s3vectors_emulator import (
    CLASSIC,
    ENHANCED,
    ENHANCED_DEFAULT_FROM,
    S3VectorsService,
    ServiceError,
    matches,
    validate_filter,
)

META = {"genre": ["documentary", "romance"], "year": 2019, "rated": True, "title": "x"}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ({"title": "x"}, True),
        ({"genre": {"$eq": "romance"}}, True),  # $eq matches any element of a list
        ({"genre": {"$eq": "drama"}}, False),
        ({"genre": {"$ne": "drama"}}, True),
        ({"genre": {"$ne": "romance"}}, False),
        ({"missing": {"$ne": "a"}}, True),
        ({"missing": {"$eq": "a"}}, False),
        ({"year": {"$gt": 2018}}, True),
        ({"year": {"$gt": 2019}}, False),
        ({"year": {"$gte": 2019}}, True),
        ({"year": {"$lt": 2019}}, False),
        ({"year": {"$lte": 2019}}, True),
        ({"title": {"$gt": 1}}, False),  # comparisons take numbers only
        ({"year": {"$in": [2018, 2019]}}, True),
        ({"genre": {"$in": ["drama", "romance"]}}, True),
        ({"genre": {"$nin": ["drama", "romance"]}}, False),
        ({"year": {"$nin": [2018]}}, True),
        ({"missing": {"$nin": [1]}}, True),
        ({"rated": {"$exists": True}}, True),
        ({"missing": {"$exists": True}}, False),
        ({"missing": {"$exists": False}}, True),
        ({"rated": 1}, False),  # a boolean is not a number
        ({"year": True}, False),
        ({"rated": True}, True),
        ({"$and": [{"year": 2019}, {"title": "x"}]}, True),
        ({"$and": [{"year": 2019}, {"title": "y"}]}, False),
        ({"$or": [{"year": 2000}, {"title": "x"}]}, True),
        ({"$or": [{"year": 2000}, {"title": "y"}]}, False),
        ({"year": 2019, "title": "y"}, False),  # keys of one object are ANDed
        ({"$or": [{"$and": [{"year": 2019}, {"rated": False}]}, {"genre": "romance"}]}, True),
    ],
)
def test_filter_semantics(expression: dict[str, Any], expected: bool) -> None:
    validate_filter(expression, lambda key: True)
    assert matches(expression, META) is expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ({}, "non-empty"),
        ([], "non-empty"),
        ({"$and": []}, r"\$and takes a non-empty array"),
        ({"$or": {"a": 1}}, r"\$or takes a non-empty array"),
        ({"$not": [{"a": 1}]}, "unsupported operator"),
        ({"a": {"$regex": "x"}}, "unsupported operator"),
        ({"a": {"$eq": 1, "$ne": 2}}, "one operator"),
        ({"a": {"$eq": [1]}}, "string, number or boolean"),
        ({"a": {"$gt": "1"}}, "takes a number"),
        ({"a": {"$in": []}}, "non-empty array"),
        ({"a": {"$nin": [[1]]}}, "non-empty array"),
        ({"a": {"$exists": 1}}, "boolean"),
        ({"key": "x"}, "not filterable"),
    ],
)
def test_malformed_filters_are_refused(expression: Any, message: str) -> None:
    with pytest.raises(ServiceError, match=message) as caught:
        validate_filter(expression, lambda key: key != "key")
    assert caught.value.code == "ValidationException"


@pytest.fixture
def service() -> S3VectorsService:
    service = S3VectorsService()
    service.handle("CreateVectorBucket", {"vectorBucketName": "vb-1"})
    service.handle(
        "CreateIndex",
        {
            "vectorBucketName": "vb-1",
            "indexName": "ix-1",
            "dataType": "float32",
            "dimension": 3,
            "distanceMetric": "cosine",
            "metadataConfiguration": {"nonFilterableMetadataKeys": ["key"]},
        },
    )
    return service


TARGET = {"vectorBucketName": "vb-1", "indexName": "ix-1"}


def put(service: S3VectorsService, *vectors: dict[str, Any]) -> None:
    service.handle("PutVectors", {**TARGET, "vectors": list(vectors)})


def refused(service: S3VectorsService, operation: str, params: dict[str, Any]) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        service.handle(operation, params)
    return caught.value


def v(name: str, *data: float, **metadata: Any) -> dict[str, Any]:
    return {"key": name, "data": {"float32": list(data)}, "metadata": metadata}


def test_queries_are_exact_cosine_with_filters(service: S3VectorsService) -> None:
    put(service, v("a", 1, 0, 0, t="x"), v("b", 1, 1, 0, t="y"), v("c", 0, 1, 0, t="x"))
    answer = service.handle(
        "QueryVectors",
        {**TARGET, "topK": 2, "queryVector": {"float32": [1, 0, 0]}, "returnDistance": True},
    )
    assert [hit["key"] for hit in answer["vectors"]] == ["a", "b"]
    assert answer["vectors"][1]["distance"] == pytest.approx(1 - 2**-0.5)
    assert answer["distanceMetric"] == "cosine"
    filtered = service.handle(
        "QueryVectors",
        {**TARGET, "topK": 5, "queryVector": {"float32": [1, 0, 0]}, "filter": {"t": "x"}},
    )
    assert [hit["key"] for hit in filtered["vectors"]] == ["a", "c"]
    assert "metadata" not in filtered["vectors"][0] and "distance" not in filtered["vectors"][0]


@pytest.mark.parametrize(
    ("operation", "params", "message"),
    [
        ("QueryVectors", {"topK": 101, "queryVector": {"float32": [1, 0, 0]}}, "topK"),
        ("QueryVectors", {"topK": 0, "queryVector": {"float32": [1, 0, 0]}}, "topK"),
        ("QueryVectors", {"topK": 1, "queryVector": {"float32": [1, 0]}}, "dimension"),
        ("QueryVectors", {"topK": 1, "queryVector": {"float32": [0, 0, 0]}}, "zero vector"),
        ("QueryVectors", {"topK": 1}, "queryVector"),
        (
            "QueryVectors",
            {"topK": 1, "queryVector": {"float32": [1, 0, 0]}, "filter": {"key": "a"}},
            "not filterable",
        ),
        ("PutVectors", {"vectors": [v("a", 1, 0, 0)] * 501}, "500"),
        ("PutVectors", {"vectors": []}, "vectors"),
        ("PutVectors", {"vectors": [v("a", 1, 0, 0, 0)]}, "dimension"),
        # the float lists are checked in bulk; what that check does not accept is
        # reported by botocore's validator, value by value
        ("PutVectors", {"vectors": [v("a", 1, "0", 0)]}, "float32[1]"),
        ("PutVectors", {"vectors": [v("a", 1, [0], 0)]}, "float32[1]"),
        ("PutVectors", {"vectors": [v("a", 1, None, 0)]}, "float32[1]"),
        ("PutVectors", {"vectors": [v("a", 1, 0, 0), v("b", 1, "x", 0)]}, "vectors[1]"),
        ("PutVectors", {"vectors": [v("a", 1, float("nan"), 0)]}, "finite"),
        ("PutVectors", {"vectors": [v("a")]}, "dimension"),
        ("PutVectors", {"vectors": [v("", 1, 0, 0)]}, "key"),
        ("PutVectors", {"vectors": [v("a" * 1025, 1, 0, 0)]}, "maximum of 1024"),
        ("PutVectors", {"vectors": [v("a", 1, 0, 0, t={"x": 1})]}, "string, number"),
        ("PutVectors", {"vectors": [v("a", 1, 0, 0, **{f"k{n}": n for n in range(51)})]}, "50"),
        ("PutVectors", {"vectors": [v("a", 1, 0, 0, t="x" * 2100)]}, "filterable metadata"),
        ("PutVectors", {"vectors": [v("a", 1, 0, 0, key="x" * 41_000)]}, "40960"),
        ("GetVectors", {"keys": ["a"] * 101}, "100"),
        ("DeleteVectors", {"keys": ["a"] * 501}, "500"),
        ("ListVectors", {"maxResults": 1001}, "1000"),
        ("ListVectors", {"segmentCount": 17, "segmentIndex": 0}, "segmentCount"),
    ],
)
def test_requests_are_checked_against_model_and_limits(
    service: S3VectorsService, operation: str, params: dict[str, Any], message: str
) -> None:
    error = refused(service, operation, {**TARGET, **params})
    assert error.code == "ValidationException"
    assert error.status == 400
    assert message in error.message


def test_non_filterable_metadata_may_be_large(service: S3VectorsService) -> None:
    put(service, v("a", 1, 0, 0, key="k" * 30_000, t="x"))
    got = service.handle("GetVectors", {**TARGET, "keys": ["a"], "returnMetadata": True})
    assert got["vectors"][0]["metadata"]["key"] == "k" * 30_000


def test_index_limits_and_conflicts(service: S3VectorsService) -> None:
    base = {"vectorBucketName": "vb-1", "dataType": "float32", "distanceMetric": "cosine"}
    assert (
        "4096"
        in refused(service, "CreateIndex", {**base, "indexName": "big", "dimension": 4097}).message
    )
    assert refused(service, "CreateIndex", {**base, "indexName": "z", "dimension": 3}).code == (
        "ValidationException"
    )
    conflict = refused(service, "CreateIndex", {**base, "indexName": "ix-1", "dimension": 3})
    assert (conflict.code, conflict.status) == ("ConflictException", 409)
    missing = refused(service, "GetIndex", {"vectorBucketName": "vb-1", "indexName": "nope"})
    assert (missing.code, missing.status) == ("NotFoundException", 404)
    many = {"nonFilterableMetadataKeys": [f"k{n}" for n in range(11)]}
    assert refused(
        service,
        "CreateIndex",
        {**base, "indexName": "ix-2", "dimension": 3, "metadataConfiguration": many},
    ).code == ("ValidationException")


def test_listing_pages_and_segments(service: S3VectorsService) -> None:
    put(service, *(v(f"k{n:02d}", 1, n, 0) for n in range(25)))
    seen: list[str] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {**TARGET, "maxResults": 10}
        if token:
            params["nextToken"] = token
        page = service.handle("ListVectors", params)
        seen += [vector["key"] for vector in page["vectors"]]
        token = page.get("nextToken")
        if not token:
            break
    assert seen == [f"k{n:02d}" for n in range(25)]
    segments = [
        {
            vector["key"]
            for vector in service.handle(
                "ListVectors", {**TARGET, "segmentCount": 3, "segmentIndex": s}
            )["vectors"]
        }
        for s in range(3)
    ]
    assert set().union(*segments) == set(seen) and sum(map(len, segments)) == 25


# -- index modes (decision 37) --------------------------------------------------------

BEFORE_ENHANCED = ENHANCED_DEFAULT_FROM - 86_400  # a bucket made the day before


def moded_service(created: float, *, candidates: int = 2) -> S3VectorsService:
    """vb-1/ix-1 as ``service`` makes it, in a bucket created at ``created``."""
    service = S3VectorsService(clock=lambda: created, classic_candidates=candidates)
    service.handle("CreateVectorBucket", {"vectorBucketName": "vb-1"})
    service.handle(
        "CreateIndex",
        {**TARGET, "dataType": "float32", "dimension": 3, "distanceMetric": "cosine"},
    )
    return service


def index_mode(service: S3VectorsService) -> str:
    return str(service.handle("GetIndex", TARGET)["index"]["indexMode"])


def test_new_indexes_take_the_mode_of_their_bucket_by_creation_date() -> None:
    old, new = moded_service(BEFORE_ENHANCED), moded_service(ENHANCED_DEFAULT_FROM)
    assert index_mode(old) == CLASSIC
    assert index_mode(new) == ENHANCED
    described = old.handle("GetVectorBucket", {"vectorBucketName": "vb-1"})["vectorBucket"]
    assert described["defaultIndexMode"] == CLASSIC


def test_the_bucket_default_applies_to_indexes_made_afterwards() -> None:
    service = moded_service(BEFORE_ENHANCED)
    service.handle(
        "PutVectorBucketDefaultIndexMode",
        {"vectorBucketName": "vb-1", "defaultIndexMode": ENHANCED},
    )
    service.handle(
        "CreateIndex",
        {
            "vectorBucketName": "vb-1",
            "indexName": "ix-2",
            "dataType": "float32",
            "dimension": 3,
            "distanceMetric": "cosine",
        },
    )
    later = service.handle("GetIndex", {"vectorBucketName": "vb-1", "indexName": "ix-2"})
    assert later["index"]["indexMode"] == ENHANCED
    assert index_mode(service) == CLASSIC  # the existing index keeps its mode


def narrow_folder(service: S3VectorsService) -> dict[str, Any]:
    """Three vectors near the query outside the folder, two far from it inside."""
    put(
        service,
        v("near-1", 1, 0, 0),
        v("near-2", 1, 0.1, 0),
        v("near-3", 1, 0.2, 0),
        v("far-1", 0, 1, 0, folder="f"),
        v("far-2", 0, 0, 1, folder="f"),
    )
    return {**TARGET, "topK": 2, "queryVector": {"float32": [1, 0, 0]}, "filter": {"folder": "f"}}


def keys(answer: dict[str, Any]) -> list[str]:
    return [hit["key"] for hit in answer["vectors"]]


def test_a_classic_index_filters_during_the_search_an_enhanced_one_before() -> None:
    service = moded_service(BEFORE_ENHANCED, candidates=2)
    query = narrow_folder(service)
    # CLASSIC: the search visits the 2 nearest vectors, none in the folder
    assert keys(service.handle("QueryVectors", query)) == []
    assert keys(service.handle("QueryVectors", {**query, "topK": 4})) == ["far-1"]
    # ENHANCED, per query or as the index's mode: the folder first, then ranked
    enhanced = service.handle("QueryVectors", {**query, "queryMode": ENHANCED})
    assert keys(enhanced) == ["far-1", "far-2"]
    service.handle("UpdateIndexMode", {**TARGET, "indexMode": ENHANCED})
    assert index_mode(service) == ENHANCED
    assert keys(service.handle("QueryVectors", query)) == ["far-1", "far-2"]
    # back to CLASSIC: allowed for a bucket made before 2026-09-30
    service.handle("UpdateIndexMode", {**TARGET, "indexMode": CLASSIC})
    assert keys(service.handle("QueryVectors", query)) == []


def test_an_unfiltered_classic_query_ranks_every_vector() -> None:
    service = moded_service(BEFORE_ENHANCED, candidates=1)
    query = narrow_folder(service)
    del query["filter"]
    assert keys(service.handle("QueryVectors", {**query, "topK": 5}))[-1] == "far-2"


def test_classic_is_refused_where_the_service_refuses_it() -> None:
    service = moded_service(ENHANCED_DEFAULT_FROM)
    query = {**TARGET, "topK": 1, "queryVector": {"float32": [1, 0, 0]}}
    for operation, params in (
        ("UpdateIndexMode", {**TARGET, "indexMode": CLASSIC}),
        (
            "PutVectorBucketDefaultIndexMode",
            {"vectorBucketName": "vb-1", "defaultIndexMode": CLASSIC},
        ),
        ("QueryVectors", {**query, "queryMode": CLASSIC}),
    ):
        assert refused(service, operation, params).code == "ValidationException"
    assert refused(service, "UpdateIndexMode", {**TARGET, "indexMode": "FAST"}).code == (
        "ValidationException"  # not one of the model's values
    )
    assert index_mode(service) == ENHANCED


# -- names, as the service documents them ---------------------------------------------


@pytest.mark.parametrize(
    ("member", "name"),
    [
        ("vectorBucketName", "Vectors-1"),  # uppercase
        ("vectorBucketName", "my_vectors"),  # underscore
        ("vectorBucketName", "my.vectors"),  # dots: index names only
        ("vectorBucketName", "-vectors"),
        ("vectorBucketName", "vectors-"),
        ("indexName", "Index-1"),
        ("indexName", "ix_1"),
        ("indexName", ".ix1"),
        ("indexName", "ix1."),
        ("indexName", "ix 1"),
    ],
)
def test_names_are_checked_as_the_service_does(
    service: S3VectorsService, member: str, name: str
) -> None:
    error = refused(service, "GetIndex", {**TARGET, member: name})
    assert (error.code, error.status) == ("ValidationException", 400)
    assert error.message.startswith(f"1 validation error detected: Value '{name}' at '{member}'")
    assert error.fields == [{"path": member, "message": error.message.split(": ", 1)[1]}]


def test_valid_names_pass_dots_in_index_names_included(service: S3VectorsService) -> None:
    index = {
        "vectorBucketName": "vb-1",
        "indexName": "titan.v2-1024",
        "dataType": "float32",
        "dimension": 3,
        "distanceMetric": "cosine",
    }
    service.handle("CreateIndex", index)
    assert service.handle("GetIndex", TARGET | {"indexName": "titan.v2-1024"})["index"]
    service.handle("CreateVectorBucket", {"vectorBucketName": "0a-9"})


def test_arns_are_checked_against_the_models_pattern(service: S3VectorsService) -> None:
    bad = "arn:aws:s3vectors:us-east-1:123:bucket/vb-1/index/ix-1"  # a 3-digit account
    error = refused(service, "GetIndex", {"indexArn": bad})
    assert error.code == "ValidationException"
    assert "regular expression pattern" in error.message
    assert error.fields is not None and error.fields[0]["path"] == "indexArn"


# -- throttling and injected faults ---------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def with_index(service: S3VectorsService, name: str, dimension: int = 3) -> dict[str, str]:
    service.handle(
        "CreateIndex",
        {
            "vectorBucketName": "vb-1",
            "indexName": name,
            "dataType": "float32",
            "dimension": dimension,
            "distanceMetric": "cosine",
            "metadataConfiguration": {"nonFilterableMetadataKeys": ["key"]},
        },
    )
    return {"vectorBucketName": "vb-1", "indexName": name}


def batch(start: int, count: int) -> list[dict[str, Any]]:
    return [v(f"k{n}", 1, n, 0) for n in range(start, start + count)]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def timed(clock: FakeClock) -> S3VectorsService:
    service = S3VectorsService(clock=clock)
    service.handle("CreateVectorBucket", {"vectorBucketName": "vb-1"})
    with_index(service, "ix-1")
    return service


def test_writes_are_not_throttled_unless_asked(timed: S3VectorsService) -> None:
    for start in range(0, 10_000, 500):  # 10,000 vectors in one instant
        timed.handle("PutVectors", {**TARGET, "vectors": batch(start, 500)})
    assert timed.refused == []


def test_vectors_over_the_index_rate_are_throttled_until_time_passes(
    timed: S3VectorsService, clock: FakeClock
) -> None:
    timed.limit_writes()  # the service's 2,500 vectors/s and 1,000 requests/s
    for start in range(0, 2500, 500):
        timed.handle("PutVectors", {**TARGET, "vectors": batch(start, 500)})
    error = refused(timed, "PutVectors", {**TARGET, "vectors": batch(2500, 500)})
    assert (error.code, error.status) == ("TooManyRequestsException", 429)
    deleting = refused(timed, "DeleteVectors", {**TARGET, "keys": ["k0"]})
    assert deleting.code == "TooManyRequestsException"  # deletes share the write limit
    assert timed.handle("ListVectors", {**TARGET, "maxResults": 1})["vectors"]  # reads are not
    assert len(list(timed.buckets["vb-1"].indexes["ix-1"].rows)) == 2500  # nothing half-written
    clock.now += 0.2  # 500 vectors' worth
    timed.handle("PutVectors", {**TARGET, "vectors": batch(2500, 500)})
    assert timed.refused == [
        ("PutVectors", "TooManyRequestsException"),
        ("DeleteVectors", "TooManyRequestsException"),
    ]


def test_requests_over_the_index_rate_are_throttled_per_index(
    timed: S3VectorsService, clock: FakeClock
) -> None:
    other = with_index(timed, "ix-2")
    timed.limit_writes(vectors_per_second=None, requests_per_second=3)
    for n in range(3):
        timed.handle("DeleteVectors", {**TARGET, "keys": [f"k{n}"]})
    assert refused(timed, "DeleteVectors", {**TARGET, "keys": ["k9"]}).status == 429
    timed.handle("DeleteVectors", {**other, "keys": ["k9"]})  # another index: its own rate
    clock.now += 1 / 3
    timed.handle("DeleteVectors", {**TARGET, "keys": ["k9"]})
    timed.limit_writes(None, None)
    for n in range(10):
        timed.handle("DeleteVectors", {**TARGET, "keys": [f"k{n}"]})


def test_injected_faults_answer_the_models_errors_then_pass(timed: S3VectorsService) -> None:
    timed.fail_next("PutVectors", 2, "ServiceUnavailableException")
    timed.fail_next("ListVectors")  # TooManyRequestsException by default
    for _ in range(2):
        error = refused(timed, "PutVectors", {**TARGET, "vectors": batch(0, 1)})
        assert (error.code, error.status) == ("ServiceUnavailableException", 503)
    throttled = refused(timed, "ListVectors", dict(TARGET))
    assert (throttled.code, throttled.status) == ("TooManyRequestsException", 429)
    assert timed.handle("ListVectors", dict(TARGET)) == {"vectors": []}  # nothing was written
    timed.handle("PutVectors", {**TARGET, "vectors": batch(0, 1)})
    assert timed.calls[-2:] == ["ListVectors", "PutVectors"]
    with pytest.raises(ValueError, match="not an error"):
        timed.fail_next("PutVectors", 1, "SlowDown")
    with pytest.raises(ValueError, match="unknown operation"):
        timed.fail_next("PutObject")


# -- ListVectors pages: 1,000 keys and 1 MB --------------------------------------------


def list_all(service: S3VectorsService, target: dict[str, str], **options: Any) -> list[Any]:
    pages: list[Any] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {**target, **options}
        if token:
            params["nextToken"] = token
        page = service.handle("ListVectors", params)
        pages.append(page)
        token = page.get("nextToken")
        if not token:
            return pages


def test_list_pages_stop_at_one_megabyte_of_response(timed: S3VectorsService) -> None:
    import json

    target = with_index(timed, "ix-wide", dimension=1024)
    rng = __import__("numpy").random.default_rng(5)
    for start in range(0, 300, 100):
        vectors = [
            {
                "key": f"w{n:03d}",
                "data": {"float32": rng.normal(size=1024).tolist()},
                "metadata": {"key": "k" * 10_000},
            }
            for n in range(start, start + 100)
        ]
        timed.handle("PutVectors", {**target, "vectors": vectors})
    for options, most in (
        ({"returnData": True}, 60),  # ~20 KB of float text a vector
        ({"returnMetadata": True}, 110),  # ~10 KB
        ({"returnData": True, "returnMetadata": True}, 40),
    ):
        pages = list_all(timed, target, **options)
        # as the emulator answers: compact JSON, as the service does
        sizes = [len(json.dumps(page, separators=(",", ":")).encode()) for page in pages]
        assert max(sizes) <= 1024 * 1024
        assert max(sizes) > 900 * 1024  # full pages, not needlessly small ones
        assert all(len(page["vectors"]) <= most for page in pages[:-1])
        listed = [vector["key"] for page in pages for vector in page["vectors"]]
        assert listed == [f"w{n:03d}" for n in range(300)]
    (keys_only,) = list_all(timed, target)  # keys alone: one page holds all 300
    assert len(keys_only["vectors"]) == 300


def test_a_listing_goes_on_while_its_listed_vectors_are_deleted(timed: S3VectorsService) -> None:
    timed.handle("PutVectors", {**TARGET, "vectors": batch(0, 25)})
    listed: list[str] = []
    token: str | None = None
    while True:
        page = timed.handle(
            "ListVectors", {**TARGET, "maxResults": 10, **({"nextToken": token} if token else {})}
        )
        keys = [vector["key"] for vector in page["vectors"]]
        listed += keys
        timed.handle("DeleteVectors", {**TARGET, "keys": keys})
        token = page.get("nextToken")
        if not token:
            break
    assert sorted(listed) == sorted(f"k{n}" for n in range(25))
    assert timed.handle("ListVectors", dict(TARGET)) == {"vectors": []}


def test_query_answers_in_pages_when_asked_and_refuses_a_foreign_token(
    service: S3VectorsService,
) -> None:
    put(service, *(v(f"k{n}", 1.0, n / 10, 0.0) for n in range(5)))
    service.query_page_size = 2
    query = {**TARGET, "topK": 5, "queryVector": {"float32": [1.0, 0.0, 0.0]}}
    keys, token, pages = [], None, 0
    while True:
        answer = service.handle(
            "QueryVectors", {**query, **({"nextToken": token} if token else {})}
        )
        keys += [hit["key"] for hit in answer["vectors"]]
        pages += 1
        token = answer.get("nextToken")
        if token is None:
            break
    assert (keys, pages) == ([f"k{n}" for n in range(5)], 3)
    error = refused(service, "QueryVectors", {**query, "nextToken": "not-a-token"})
    assert error.code == "ValidationException"
