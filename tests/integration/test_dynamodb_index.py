"""DynamoDBVectorIndex on moto (in-process): conditional writes, reads, listing, the
cold load and the incremental refresh, with an injected clock instead of sleeps."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from imagesearch.index.dynamodb import DynamoDBVectorIndex, StaleIndexError
from imagesearch.ports import QueryFilters
from imagesearch.records import ImageRecord, encode_vector, image_id_for_key
from imagesearch.resources import TOMBSTONE_TTL_SECONDS, table_definition

TABLE = "images-index-test"
MODEL = "amazon.titan-embed-image-v1"
DIM = 8
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SpyClient:
    """The moto client, with a record of calls and optional injected behaviour."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail_queries = False
        # BatchGetItem under throttling: keys answered as unprocessed per call (at least
        # one key still goes through), or every key when withhold_all is set.
        self.withhold_batch_keys = 0
        self.withhold_all = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(**kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            return method(**kwargs)

        return call

    def query(self, **kwargs: Any) -> Any:
        self.calls.append(("query", kwargs))
        if self.fail_queries:
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                "Query",
            )
        return self._client.query(**kwargs)

    def batch_get_item(self, RequestItems: dict[str, Any]) -> Any:
        self.calls.append(("batch_get_item", {"RequestItems": RequestItems}))
        ((table, request),) = RequestItems.items()
        keys = request["Keys"]
        if self.withhold_all:
            return {"Responses": {table: []}, "UnprocessedKeys": RequestItems}
        count = min(self.withhold_batch_keys, len(keys) - 1)
        held, sent = keys[:count], keys[count:]
        response = self._client.batch_get_item(RequestItems={table: {**request, "Keys": sent}})
        if held:
            response["UnprocessedKeys"] = {table: {**request, "Keys": held}}
        return response


@pytest.fixture
def client() -> Iterator[Any]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(**table_definition(TABLE))
        yield dynamodb


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def index(client: Any, clock: Clock) -> DynamoDBVectorIndex:
    return DynamoDBVectorIndex(TABLE, DIM, MODEL, client=client, clock=clock)


def axis(n: int, tilt: float = 0.0) -> np.ndarray:
    """Unit vector along axis ``n``, tilted towards the next axis by ``tilt``."""
    vector = np.zeros(DIM, dtype=np.float32)
    vector[n % DIM] = 1.0
    vector[(n + 1) % DIM] = tilt
    return vector / np.linalg.norm(vector)


def record(
    key: str,
    vector: np.ndarray | None = None,
    *,
    sequencer: str = "S0001",
    status: str = "indexed",
    content_type: str | None = "image/jpeg",
    model_id: str = MODEL,
    **fields: Any,
) -> ImageRecord:
    if status == "indexed" and vector is None:
        vector = axis(0)
    return ImageRecord(
        image_id=image_id_for_key(key),
        key=key,
        status=status,
        content_type=content_type,
        model_id=model_id,
        dimension=None if vector is None else int(vector.size),
        sequencer=sequencer,
        vector=vector if status == "indexed" else None,
        **fields,
    )


def raw_item(client: Any, key: str) -> dict[str, Any] | None:
    response = client.get_item(TableName=TABLE, Key={"image_id": {"S": image_id_for_key(key)}})
    return response.get("Item")


def keys_of(index: DynamoDBVectorIndex, results: list) -> list[str]:
    by_id = index.get_many([r.image_id for r in results])
    return [by_id[r.image_id].key for r in results]


# -- writes ------------------------------------------------------------------------


def test_upsert_stores_every_field_and_a_binary_vector(
    index: DynamoDBVectorIndex, client: Any, clock: Clock
) -> None:
    vector = axis(2, 0.5)
    assert index.upsert(
        record("uploads/a.jpg", vector, etag="e1", size=1234, width=640, height=480, caption="c")
    )

    item = raw_item(client, "uploads/a.jpg")
    assert item is not None
    assert item["vector"] == {"B": encode_vector(vector)}
    assert len(item["vector"]["B"]) == DIM * 4
    assert item["size"] == {"N": "1234"}
    assert item["dimension"] == {"N": str(DIM)}
    assert item["sequencer"] == {"S": "S0001"}
    assert item["changed_at"] == {"N": str(int(clock.now * 1000))}
    assert item["change_day"] == {"S": "2026-03-01"}
    # None fields are left out, not stored as NULL
    assert "reason" not in item and "indexed_at" not in item and "expires_at" not in item


def test_a_rejected_record_has_no_vector(index: DynamoDBVectorIndex, client: Any) -> None:
    assert index.upsert(record("uploads/bad.gif", status="rejected", reason="corrupt"))
    item = raw_item(client, "uploads/bad.gif")
    assert item is not None
    assert "vector" not in item
    assert item["reason"] == {"S": "corrupt"}


def test_an_older_state_never_overwrites_a_newer_one(
    index: DynamoDBVectorIndex, client: Any
) -> None:
    # Given the state of event S0005
    assert index.upsert(record("uploads/a.jpg", axis(1), sequencer="S0005", etag="new"))

    # When the older event S0003 arrives late, it is skipped
    assert index.upsert(record("uploads/a.jpg", axis(2), sequencer="S0003", etag="old")) is False
    stored = index.get(image_id_for_key("uploads/a.jpg"))
    assert stored is not None and stored.etag == "new"

    # And a retry of S0005 itself may finish its write
    assert index.upsert(record("uploads/a.jpg", axis(1), sequencer="S0005", etag="retried"))
    stored = index.get(image_id_for_key("uploads/a.jpg"))
    assert stored is not None and stored.etag == "retried"


def test_a_tombstone_blocks_an_older_create_but_not_a_newer_one(
    index: DynamoDBVectorIndex, client: Any, clock: Clock
) -> None:
    image_id = image_id_for_key("uploads/a.jpg")
    # Given a delete (S0005) that arrives before its object's create (S0003)
    assert index.delete(image_id, key="uploads/a.jpg", sequencer="S0005")
    tombstone = raw_item(client, "uploads/a.jpg")
    assert tombstone is not None
    assert tombstone["status"] == {"S": "deleted"}
    assert tombstone["expires_at"] == {"N": str(int(clock.now) + TOMBSTONE_TTL_SECONDS)}
    assert "vector" not in tombstone
    assert index.get(image_id) is None

    # Then the older create is skipped
    assert index.upsert(record("uploads/a.jpg", sequencer="S0003")) is False
    assert index.get(image_id) is None

    # And a newer create replaces the whole tombstone, TTL included
    assert index.upsert(record("uploads/a.jpg", sequencer="S0007"))
    item = raw_item(client, "uploads/a.jpg")
    assert item is not None and item["status"] == {"S": "indexed"} and "expires_at" not in item


def test_a_stale_delete_is_skipped(index: DynamoDBVectorIndex) -> None:
    index.upsert(record("uploads/a.jpg", sequencer="S0009"))
    image_id = image_id_for_key("uploads/a.jpg")
    assert index.delete(image_id, key="uploads/a.jpg", sequencer="S0008") is False
    assert index.get(image_id) is not None


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (record("uploads/a.jpg", status="deleted"), "status"),
        (record("uploads/a.jpg", sequencer=""), "sequencer"),
        (
            ImageRecord(image_id="x", key="uploads/a.jpg", status="indexed", sequencer="S1"),
            "vector",
        ),
        (
            ImageRecord(
                image_id="x", key="k", status="indexed", sequencer="S1", dimension=3, vector=axis(0)
            ),
            "dimensions",
        ),
    ],
)
def test_invalid_records_are_refused(
    index: DynamoDBVectorIndex, bad: ImageRecord, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        index.upsert(bad)


# -- reads -------------------------------------------------------------------------


def test_get_with_and_without_the_vector(index: DynamoDBVectorIndex) -> None:
    vector = axis(3, 0.2)
    index.upsert(record("uploads/a.jpg", vector, caption="hello", width=10))
    image_id = image_id_for_key("uploads/a.jpg")

    plain = index.get(image_id)
    assert plain is not None
    assert (plain.key, plain.caption, plain.width, plain.dimension) == (
        "uploads/a.jpg",
        "hello",
        10,
        DIM,
    )
    assert plain.vector is None

    full = index.get(image_id, with_vector=True)
    assert full is not None and full.vector is not None
    np.testing.assert_array_equal(full.vector, vector)
    assert index.get(image_id_for_key("uploads/missing.jpg")) is None


def test_get_many_reads_in_chunks_and_skips_missing_and_deleted(
    index: DynamoDBVectorIndex, client: Any
) -> None:
    spy = SpyClient(client)
    reader = DynamoDBVectorIndex(TABLE, DIM, MODEL, client=spy)
    keys = [f"uploads/{n:03d}.jpg" for n in range(130)]
    for key in keys:
        index.upsert(record(key))
    index.delete(image_id_for_key(keys[5]), key=keys[5], sequencer="S0009")

    wanted = [image_id_for_key(k) for k in keys] + [image_id_for_key("uploads/none.jpg")]
    found = reader.get_many(wanted + wanted[:3])  # duplicates are read once

    assert set(found) == {image_id_for_key(k) for k in keys if k != keys[5]}
    assert found[image_id_for_key(keys[7])].key == keys[7]
    assert all(r.vector is None for r in found.values())
    batches = [kwargs for name, kwargs in spy.calls if name == "batch_get_item"]
    assert [len(b["RequestItems"][TABLE]["Keys"]) for b in batches] == [100, 31]


def test_get_many_retries_unprocessed_keys(index: DynamoDBVectorIndex, client: Any) -> None:
    spy = SpyClient(client)
    spy.withhold_batch_keys = 2
    pauses: list[float] = []
    reader = DynamoDBVectorIndex(TABLE, DIM, MODEL, client=spy, sleep=pauses.append)
    keys = [f"uploads/{n}.jpg" for n in range(5)]
    for key in keys:
        index.upsert(record(key))

    found = reader.get_many(image_id_for_key(k) for k in keys)

    # 5 keys, 2 held back per call: 3 calls, with a growing pause between them
    assert set(found) == {image_id_for_key(k) for k in keys}
    assert len([name for name, _ in spy.calls if name == "batch_get_item"]) == 3
    assert len(pauses) == 2 and pauses[0] < pauses[1]


def test_get_many_gives_up_when_keys_stay_unprocessed(
    index: DynamoDBVectorIndex, client: Any
) -> None:
    spy = SpyClient(client)
    spy.withhold_all = True
    reader = DynamoDBVectorIndex(TABLE, DIM, MODEL, client=spy, sleep=lambda _: None)
    index.upsert(record("uploads/a.jpg"))
    with pytest.raises(RuntimeError, match="unprocessed"):
        reader.get_many([image_id_for_key("uploads/a.jpg")])


# -- listing -----------------------------------------------------------------------


@pytest.fixture
def catalog(index: DynamoDBVectorIndex) -> list[str]:
    """Indexed and rejected records interleaved by key, plus a tombstone."""
    keys = []
    for n in range(7):
        for folder in ("cats", "dogs"):
            key = f"uploads/{folder}/{n}.jpg"
            status = "rejected" if n % 3 == 1 else "indexed"
            index.upsert(record(key, status=status, reason="bad" if status == "rejected" else None))
            keys.append(key)
    gone = "uploads/cats/9.jpg"
    index.upsert(record(gone))
    index.delete(image_id_for_key(gone), key=gone, sequencer="S0009")
    return sorted(keys)


def all_pages(index: DynamoDBVectorIndex, **options: Any) -> tuple[list[str], int]:
    keys, cursor, pages = [], None, 0
    while True:
        page = index.list(cursor=cursor, **options)
        pages += 1
        keys.extend(r.key for r in page.items)
        assert len(page.items) <= options["limit"]
        cursor = page.cursor
        if cursor is None:
            return keys, pages
        assert pages < 50


def test_list_orders_by_key_across_statuses_and_never_shows_tombstones(
    index: DynamoDBVectorIndex, catalog: list[str]
) -> None:
    page = index.list(prefix=None, status=None, limit=100, cursor=None)
    assert [r.key for r in page.items] == catalog
    assert page.cursor is None
    assert all(r.vector is None for r in page.items)
    assert {r.status for r in page.items} == {"indexed", "rejected"}
    rejected = next(r for r in page.items if r.status == "rejected")
    assert rejected.reason == "bad"


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 14])
def test_paging_visits_everything_once_in_order(
    index: DynamoDBVectorIndex, catalog: list[str], limit: int
) -> None:
    keys, pages = all_pages(index, prefix=None, status=None, limit=limit)
    assert keys == catalog
    assert pages >= len(catalog) // limit


@pytest.mark.parametrize("status", ["indexed", "rejected"])
@pytest.mark.parametrize("prefix", [None, "uploads/cats/", "uploads/dogs/1", "uploads/zebras/"])
def test_status_and_prefix_filters(
    index: DynamoDBVectorIndex, catalog: list[str], status: str, prefix: str | None
) -> None:
    everything = index.list(prefix=None, status=None, limit=100, cursor=None).items
    expected = [r.key for r in everything if r.status == status and r.key.startswith(prefix or "")]
    keys, _ = all_pages(index, prefix=prefix, status=status, limit=2)
    assert keys == expected
    without_status, _ = all_pages(index, prefix=prefix, status=None, limit=3)
    assert without_status == [r.key for r in everything if r.key.startswith(prefix or "")]


def cursor_of(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def test_malformed_or_foreign_cursors_are_refused(
    index: DynamoDBVectorIndex, catalog: list[str]
) -> None:
    page = index.list(prefix="uploads/", status=None, limit=2, cursor=None)
    assert page.cursor is not None
    good = json.loads(base64.urlsafe_b64decode(page.cursor + "=" * (-len(page.cursor) % 4)))
    bad_status = json.loads(json.dumps(good))
    bad_status["at"]["indexed"]["status"] = {"S": "rejected"}
    bad_shape = json.loads(json.dumps(good))
    bad_shape["at"]["indexed"]["key"] = {"N": "1"}
    outside = json.loads(json.dumps(good))
    outside["at"]["indexed"]["key"] = {"S": "elsewhere/1.jpg"}
    cases = {
        "!!not base64!!": "malformed",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(): "malformed",
        cursor_of(["a", "list"]): "malformed",
        cursor_of({**good, "v": 2}): "malformed",
        cursor_of({**good, "at": {}}): "malformed",
        cursor_of({**good, "at": {"deleted": None}}): "malformed",
        cursor_of(bad_status): "malformed",
        cursor_of(bad_shape): "malformed",
        cursor_of(outside): "malformed",
        "A" * 10_000: "too long",
    }
    for cursor, message in cases.items():
        with pytest.raises(ValueError, match=message):
            index.list(prefix="uploads/", status=None, limit=2, cursor=cursor)
    # A real cursor only continues the listing it came from
    with pytest.raises(ValueError, match="another prefix or status"):
        index.list(prefix="uploads/cats/", status=None, limit=2, cursor=page.cursor)
    with pytest.raises(ValueError, match="another prefix or status"):
        index.list(prefix="uploads/", status="indexed", limit=2, cursor=page.cursor)
    assert index.list(prefix="uploads/", status=None, limit=2, cursor=page.cursor).items


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": 10, "status": "deleted"}, "status"),
    ],
)
def test_list_arguments_are_validated(
    index: DynamoDBVectorIndex, options: dict[str, Any], message: str
) -> None:
    arguments = {"prefix": None, "status": None, "cursor": None, **options}
    with pytest.raises(ValueError, match=message):
        index.list(**arguments)


# -- search: cold load ---------------------------------------------------------------


def put_raw(
    client: Any, key: str, vector_bytes: bytes, *, dimension: int = DIM, changed_at: float = START
) -> None:
    """An item written by something else: a truncated vector, say."""
    changed_ms = int(changed_at * 1000)
    client.put_item(
        TableName=TABLE,
        Item={
            "image_id": {"S": image_id_for_key(key)},
            "key": {"S": key},
            "status": {"S": "indexed"},
            "model_id": {"S": MODEL},
            "dimension": {"N": str(dimension)},
            "vector": {"B": vector_bytes},
            "sequencer": {"S": "S0001"},
            "changed_at": {"N": str(changed_ms)},
            "change_day": {"S": datetime.fromtimestamp(changed_at, UTC).strftime("%Y-%m-%d")},
        },
    )


@pytest.fixture
def mixed_table(index: DynamoDBVectorIndex, client: Any) -> None:
    """Searchable records along axes 0..5, and records a search must never return."""
    for n in range(6):
        index.upsert(record(f"uploads/ok/{n}.jpg", axis(n, 0.1), content_type="image/png"))
    index.upsert(record("uploads/no/rejected.jpg", status="rejected", reason="corrupt"))
    index.upsert(record("uploads/no/other-model.jpg", axis(0), model_id="other-model"))
    index.upsert(record("uploads/no/other-dim.jpg", np.ones(4, dtype=np.float32)))
    index.upsert(record("uploads/no/deleted.jpg", axis(0)))
    index.delete(
        image_id_for_key("uploads/no/deleted.jpg"), key="uploads/no/deleted.jpg", sequencer="S9"
    )
    put_raw(client, "uploads/no/truncated.jpg", encode_vector(axis(0))[:-4])
    put_raw(client, "uploads/no/zero.jpg", encode_vector(np.zeros(DIM, dtype=np.float32)))


@pytest.mark.parametrize("segments", [1, 4])
def test_cold_load_reads_only_searchable_vectors(
    client: Any, clock: Clock, mixed_table: None, segments: int
) -> None:
    spy = SpyClient(client)
    search = DynamoDBVectorIndex(TABLE, DIM, MODEL, client=spy, clock=clock, scan_segments=segments)

    assert search.count() == 6
    results = search.query(axis(2), 3, QueryFilters())
    assert keys_of(search, results) == ["uploads/ok/2.jpg", "uploads/ok/1.jpg", "uploads/ok/3.jpg"]
    assert results[0].score == pytest.approx(1 / np.sqrt(1.01), abs=1e-6)

    scans = [kwargs for name, kwargs in spy.calls if name == "scan"]
    assert sorted(s.get("Segment", 0) for s in scans) == list(range(segments))
    assert all(s.get("TotalSegments", 1) == segments for s in scans)
    # The projection leaves every other attribute behind
    assert all(s["ProjectionExpression"] == "#id, #key, #ct, #vec" for s in scans)


def test_cold_load_follows_scan_pages(
    client: Any, clock: Clock, index: DynamoDBVectorIndex
) -> None:
    # Given more vectors than one 1 MB scan page holds (moto pages by size like DynamoDB)
    big = 1024
    writer = DynamoDBVectorIndex(TABLE, big, MODEL, client=client, clock=clock)
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((300, big)).astype(np.float32)
    for n, vector in enumerate(vectors):
        writer.upsert(record(f"uploads/{n:03d}.jpg", vector))
    spy = SpyClient(client)
    search = DynamoDBVectorIndex(TABLE, big, MODEL, client=spy, clock=clock, scan_segments=1)

    assert search.count() == 300
    assert len([name for name, _ in spy.calls if name == "scan"]) > 1
    best = search.query(vectors[123], 1, QueryFilters())[0]
    assert best.image_id == image_id_for_key("uploads/123.jpg")


def test_filters_reach_the_in_memory_index(index: DynamoDBVectorIndex, mixed_table: None) -> None:
    index.upsert(record("uploads/ok/jpeg.jpg", axis(2, 0.3), content_type="image/jpeg"))
    jpeg_only = index.query(axis(2), 10, QueryFilters(content_types=("image/jpeg",)))
    assert keys_of(index, jpeg_only) == ["uploads/ok/jpeg.jpg"]
    in_folder = index.query(axis(2), 10, QueryFilters(prefix="uploads/ok/", min_score=0.5))
    assert keys_of(index, in_folder) == ["uploads/ok/2.jpg", "uploads/ok/jpeg.jpg"]


# -- search: incremental refresh ---------------------------------------------------


def test_changes_show_after_the_refresh_interval(
    client: Any, clock: Clock, mixed_table: None
) -> None:
    search = DynamoDBVectorIndex(
        TABLE, DIM, MODEL, client=client, clock=clock, refresh_interval=1.0
    )
    writer = DynamoDBVectorIndex(TABLE, DIM, MODEL, client=client, clock=clock)
    assert search.count() == 6

    # When, a moment later, one image is added, one changed, one rejected, one deleted
    clock.advance(0.3)
    writer.upsert(record("uploads/ok/new.jpg", axis(7), sequencer="S0002"))
    writer.upsert(record("uploads/ok/1.jpg", axis(7, 0.5), sequencer="S0002"))
    writer.upsert(record("uploads/ok/2.jpg", status="rejected", sequencer="S0002", reason="x"))
    writer.delete(image_id_for_key("uploads/ok/3.jpg"), key="uploads/ok/3.jpg", sequencer="S0002")

    # Then within the refresh interval the instance still answers from memory
    assert search.count() == 6
    # And once it has passed, every change is visible
    clock.advance(1.0)
    assert search.count() == 5
    results = search.query(axis(7), 10, QueryFilters())
    assert keys_of(search, results)[:2] == ["uploads/ok/new.jpg", "uploads/ok/1.jpg"]
    found = set(keys_of(search, results))
    assert "uploads/ok/2.jpg" not in found and "uploads/ok/3.jpg" not in found
    assert search.vector_of(image_id_for_key("uploads/ok/3.jpg")) is None

    # And a deleted image that comes back is searchable again
    clock.advance(5)
    writer.upsert(record("uploads/ok/3.jpg", axis(3), sequencer="S0003"))
    clock.advance(1.0)
    assert search.count() == 6
    assert search.query(axis(3), 1, QueryFilters())[0].image_id == image_id_for_key(
        "uploads/ok/3.jpg"
    )


def test_refresh_ignores_records_of_another_model_or_dimension(
    index: DynamoDBVectorIndex, client: Any, clock: Clock, mixed_table: None
) -> None:
    assert index.count() == 6
    clock.advance(2)
    # An indexed image re-embedded by another model leaves this index
    index.upsert(record("uploads/ok/0.jpg", axis(0), model_id="other", sequencer="S0002"))
    index.upsert(record("uploads/ok/x.jpg", np.ones(16, dtype=np.float32), sequencer="S0002"))
    put_raw(client, "uploads/ok/truncated.jpg", b"\0\0\x80?")
    clock.advance(2)
    assert index.count() == 5
    assert index.vector_of(image_id_for_key("uploads/ok/0.jpg")) is None


def test_refresh_reads_every_day_since_the_watermark(client: Any) -> None:
    # Given an instance loaded ten seconds before midnight UTC
    clock = Clock(datetime(2026, 3, 1, 23, 59, 50, tzinfo=UTC).timestamp())
    search = DynamoDBVectorIndex(TABLE, DIM, MODEL, client=client, clock=clock)
    writer = DynamoDBVectorIndex(TABLE, DIM, MODEL, client=client, clock=clock)
    assert search.count() == 0

    # When one image lands before midnight and one after
    clock.advance(5)
    writer.upsert(record("uploads/before.jpg", axis(1)))
    clock.advance(10)
    writer.upsert(record("uploads/after.jpg", axis(2)))
    clock.advance(1)

    # Then both are found, in their two day partitions
    assert search.count() == 2
    days = {
        raw_item(client, k)["change_day"]["S"] for k in ("uploads/before.jpg", "uploads/after.jpg")
    }
    assert days == {"2026-03-01", "2026-03-02"}


def test_writes_from_a_slow_clock_are_not_missed(client: Any, clock: Clock) -> None:
    search = DynamoDBVectorIndex(TABLE, DIM, MODEL, client=client, clock=clock)
    assert search.count() == 0
    clock.advance(10)
    assert search.count() == 0  # the watermark is now START + 10

    # When a writer whose clock is 20 s behind stores an image after that refresh
    late_clock = Clock(clock.now - 20)
    DynamoDBVectorIndex(TABLE, DIM, MODEL, client=client, clock=late_clock).upsert(
        record("uploads/late.jpg")
    )
    clock.advance(1)

    # Then the overlap of the next refresh still picks it up
    assert search.count() == 1


def test_a_long_pause_reloads_everything(client: Any, clock: Clock) -> None:
    search = DynamoDBVectorIndex(TABLE, DIM, MODEL, client=client, clock=clock)
    assert search.count() == 0
    # An item the change index cannot show any more (its change day is long gone)
    put_raw(client, "uploads/old.jpg", encode_vector(axis(1)), changed_at=START - 3 * 86400)
    clock.advance(1)
    assert search.count() == 0

    clock.advance(TOMBSTONE_TTL_SECONDS)
    assert search.count() == 1


def test_a_failed_refresh_serves_the_last_state_for_a_while(
    client: Any, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    spy = SpyClient(client)
    search = DynamoDBVectorIndex(
        TABLE, DIM, MODEL, client=spy, clock=clock, refresh_interval=1.0, max_staleness=60
    )
    DynamoDBVectorIndex(TABLE, DIM, MODEL, client=client, clock=clock).upsert(
        record("uploads/a.jpg")
    )
    assert search.count() == 1

    # When the change index throttles, searches still answer, with a warning
    spy.fail_queries = True
    clock.advance(30)
    with caplog.at_level(logging.WARNING, logger="imagesearch.index.dynamodb"):
        assert len(search.query(axis(0), 5, QueryFilters())) == 1
    assert "index refresh failed" in caplog.text

    # But not past the staleness limit
    clock.advance(40)
    with pytest.raises(StaleIndexError):
        search.query(axis(0), 5, QueryFilters())

    # And they recover as soon as the table answers again
    spy.fail_queries = False
    assert search.count() == 1


def test_vector_of_falls_back_to_the_table(
    index: DynamoDBVectorIndex, client: Any, clock: Clock
) -> None:
    index.upsert(record("uploads/a.jpg", axis(1, 0.5)))
    assert index.count() == 1
    # Written after the load, before the next refresh: read from the table
    index.upsert(record("uploads/b.jpg", axis(2) * 3))
    fresh = index.vector_of(image_id_for_key("uploads/b.jpg"))
    assert fresh is not None
    np.testing.assert_allclose(fresh, axis(2), atol=1e-6)
    in_memory = index.vector_of(image_id_for_key("uploads/a.jpg"))
    np.testing.assert_allclose(in_memory, axis(1, 0.5), atol=1e-6)

    index.upsert(record("uploads/r.jpg", status="rejected"))
    index.upsert(record("uploads/m.jpg", axis(0), model_id="other"))
    for key in ("uploads/r.jpg", "uploads/m.jpg", "uploads/missing.jpg"):
        assert index.vector_of(image_id_for_key(key)) is None


def test_concurrent_searches_while_the_table_changes(client: Any) -> None:
    clock = Clock()
    lock = threading.Lock()

    def ticking() -> float:
        with lock:
            clock.advance(0.05)
            return clock.now

    search = DynamoDBVectorIndex(
        TABLE, DIM, MODEL, client=client, clock=ticking, refresh_interval=0.2
    )
    writer = DynamoDBVectorIndex(TABLE, DIM, MODEL, client=client, clock=ticking)
    errors: list[BaseException] = []

    def searching() -> None:
        try:
            for n in range(25):
                results = search.query(axis(n), 5, QueryFilters(prefix="uploads/"))
                assert len(results) <= 5
        except BaseException as error:  # reported below, in the test thread
            errors.append(error)

    threads = [threading.Thread(target=searching) for _ in range(3)]
    for thread in threads:
        thread.start()
    for n in range(40):
        writer.upsert(record(f"uploads/{n}.jpg", axis(n, 0.3)))
    for thread in threads:
        thread.join()

    assert errors == []
    clock.advance(5)
    assert search.count() == 40
