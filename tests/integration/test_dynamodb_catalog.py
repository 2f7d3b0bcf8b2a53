"""DynamoDBCatalog on moto (in-process): conditional writes, reads, listing and counts,
with an injected clock instead of sleeps."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from imagesearch.catalog.dynamodb import DynamoDBCatalog
from imagesearch.records import ImageRecord, encode_vector, image_id_for_key
from imagesearch.resources import TOMBSTONE_TTL_SECONDS, table_definition
from tests.integration.catalog_support import (
    DIM,
    TABLE,
    Clock,
    SpyClient,
    axis,
    raw_item,
    record,
)


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
def catalog(client: Any, clock: Clock) -> DynamoDBCatalog:
    return DynamoDBCatalog(TABLE, client=client, clock=clock)


# -- writes ------------------------------------------------------------------------


def test_put_stores_every_field_and_a_binary_vector(
    catalog: DynamoDBCatalog, client: Any, clock: Clock
) -> None:
    vector = axis(2, 0.5)
    assert catalog.put(
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


def test_a_rejected_record_has_no_vector(catalog: DynamoDBCatalog, client: Any) -> None:
    assert catalog.put(record("uploads/bad.gif", status="rejected", reason="corrupt"))
    item = raw_item(client, "uploads/bad.gif")
    assert item is not None
    assert "vector" not in item
    assert item["reason"] == {"S": "corrupt"}


def test_an_older_state_never_overwrites_a_newer_one(catalog: DynamoDBCatalog, client: Any) -> None:
    # Given the state of event S0005
    assert catalog.put(record("uploads/a.jpg", axis(1), sequencer="S0005", etag="new"))

    # When the older event S0003 arrives late, it is skipped
    assert catalog.put(record("uploads/a.jpg", axis(2), sequencer="S0003", etag="old")) is False
    stored = catalog.get(image_id_for_key("uploads/a.jpg"))
    assert stored is not None and stored.etag == "new"

    # And a retry of S0005 itself may finish its write
    assert catalog.put(record("uploads/a.jpg", axis(1), sequencer="S0005", etag="retried"))
    stored = catalog.get(image_id_for_key("uploads/a.jpg"))
    assert stored is not None and stored.etag == "retried"


def test_a_tombstone_blocks_an_older_create_but_not_a_newer_one(
    catalog: DynamoDBCatalog, client: Any, clock: Clock
) -> None:
    image_id = image_id_for_key("uploads/a.jpg")
    # Given a delete (S0005) that arrives before its object's create (S0003)
    assert catalog.delete(image_id, key="uploads/a.jpg", sequencer="S0005")
    tombstone = raw_item(client, "uploads/a.jpg")
    assert tombstone is not None
    assert tombstone["status"] == {"S": "deleted"}
    assert tombstone["expires_at"] == {"N": str(int(clock.now) + TOMBSTONE_TTL_SECONDS)}
    assert "vector" not in tombstone
    assert catalog.get(image_id) is None

    # Then the older create is skipped
    assert catalog.put(record("uploads/a.jpg", sequencer="S0003")) is False
    assert catalog.get(image_id) is None

    # And a newer create replaces the whole tombstone, TTL included
    assert catalog.put(record("uploads/a.jpg", sequencer="S0007"))
    item = raw_item(client, "uploads/a.jpg")
    assert item is not None and item["status"] == {"S": "indexed"} and "expires_at" not in item


def test_an_api_tombstone_needs_the_revision_it_read_and_orders_just_after_it(
    catalog: DynamoDBCatalog, client: Any, clock: Clock
) -> None:
    image_id = image_id_for_key("uploads/a.jpg")
    assert catalog.put(record("uploads/a.jpg", sequencer="S0005"))
    read = catalog.get(image_id)
    assert read is not None
    # Rewritten since it was read (a retried event, same token): refused
    assert catalog.put(record("uploads/a.jpg", sequencer="S0005"))
    assert catalog.tombstone(read) is False
    assert catalog.get(image_id) is not None
    # A missing record is never created by it
    assert catalog.tombstone(replace(read, image_id="f" * 32, key="uploads/none.jpg")) is False
    assert raw_item(client, "uploads/none.jpg") is None

    current = catalog.get(image_id)
    assert current is not None and catalog.tombstone(current)
    item = raw_item(client, "uploads/a.jpg")
    assert item is not None
    assert (item["status"], item["sequencer"]) == ({"S": "deleted"}, {"S": "S0005."})
    assert item["expires_at"] == {"N": str(int(clock.now) + TOMBSTONE_TTL_SECONDS)}
    assert item["changed_at"] == {"N": str(int(clock.now * 1000))}  # in the change log
    # Newer than the version it deleted, older than any later event
    assert catalog.put(record("uploads/a.jpg", sequencer="S0005")) is False
    assert catalog.put(record("uploads/a.jpg", sequencer="S0006"))


def test_a_stale_delete_is_skipped(catalog: DynamoDBCatalog) -> None:
    catalog.put(record("uploads/a.jpg", sequencer="S0009"))
    image_id = image_id_for_key("uploads/a.jpg")
    assert catalog.delete(image_id, key="uploads/a.jpg", sequencer="S0008") is False
    assert catalog.get(image_id) is not None


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
    catalog: DynamoDBCatalog, bad: ImageRecord, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        catalog.put(bad)


# -- reads -------------------------------------------------------------------------


def test_get_with_and_without_the_vector(catalog: DynamoDBCatalog) -> None:
    vector = axis(3, 0.2)
    catalog.put(record("uploads/a.jpg", vector, caption="hello", width=10))
    image_id = image_id_for_key("uploads/a.jpg")

    plain = catalog.get(image_id)
    assert plain is not None
    assert (plain.key, plain.caption, plain.width, plain.dimension) == (
        "uploads/a.jpg",
        "hello",
        10,
        DIM,
    )
    assert plain.vector is None

    full = catalog.get(image_id, with_vector=True)
    assert full is not None and full.vector is not None
    np.testing.assert_array_equal(full.vector, vector)
    assert catalog.get(image_id_for_key("uploads/missing.jpg")) is None


def test_get_many_reads_in_chunks_and_skips_missing_and_deleted(
    catalog: DynamoDBCatalog, client: Any
) -> None:
    spy = SpyClient(client)
    reader = DynamoDBCatalog(TABLE, client=spy)
    keys = [f"uploads/{n:03d}.jpg" for n in range(130)]
    for key in keys:
        catalog.put(record(key))
    catalog.delete(image_id_for_key(keys[5]), key=keys[5], sequencer="S0009")

    wanted = [image_id_for_key(k) for k in keys] + [image_id_for_key("uploads/none.jpg")]
    found = reader.get_many(wanted + wanted[:3])  # duplicates are read once

    assert set(found) == {image_id_for_key(k) for k in keys if k != keys[5]}
    assert found[image_id_for_key(keys[7])].key == keys[7]
    assert all(r.vector is None for r in found.values())
    batches = [kwargs for name, kwargs in spy.calls if name == "batch_get_item"]
    assert [len(b["RequestItems"][TABLE]["Keys"]) for b in batches] == [100, 31]


def test_get_many_for_the_vector_sync_reads_consistently_with_vectors_and_tombstones(
    catalog: DynamoDBCatalog, client: Any
) -> None:
    spy = SpyClient(client)
    reader = DynamoDBCatalog(TABLE, client=spy)
    catalog.put(record("uploads/kept.jpg", axis(1)))
    catalog.put(record("uploads/gone.jpg", axis(2)))
    catalog.delete(image_id_for_key("uploads/gone.jpg"), key="uploads/gone.jpg", sequencer="S0009")
    wanted = [image_id_for_key(k) for k in ("uploads/kept.jpg", "uploads/gone.jpg")]

    found = reader.get_many(wanted, with_vector=True, include_deleted=True, consistent=True)

    kept, gone = (found[i] for i in wanted)
    assert kept.vector is not None
    np.testing.assert_allclose(kept.vector, axis(1))
    assert (gone.status, gone.vector, gone.sequencer) == ("deleted", None, "S0009")
    assert kept.revision and gone.revision  # what the sync compares between two reads
    [batch] = [kwargs for name, kwargs in spy.calls if name == "batch_get_item"]
    assert batch["RequestItems"][TABLE]["ConsistentRead"] is True


def test_get_many_retries_unprocessed_keys(catalog: DynamoDBCatalog, client: Any) -> None:
    spy = SpyClient(client)
    spy.withhold_batch_keys = 2
    pauses: list[float] = []
    reader = DynamoDBCatalog(TABLE, client=spy, sleep=pauses.append)
    keys = [f"uploads/{n}.jpg" for n in range(5)]
    for key in keys:
        catalog.put(record(key))

    found = reader.get_many(image_id_for_key(k) for k in keys)

    # 5 keys, 2 held back per call: 3 calls, with a growing pause between them
    assert set(found) == {image_id_for_key(k) for k in keys}
    assert len([name for name, _ in spy.calls if name == "batch_get_item"]) == 3
    assert len(pauses) == 2 and pauses[0] < pauses[1]


def test_get_many_gives_up_when_keys_stay_unprocessed(
    catalog: DynamoDBCatalog, client: Any
) -> None:
    spy = SpyClient(client)
    spy.withhold_all = True
    reader = DynamoDBCatalog(TABLE, client=spy, sleep=lambda _: None)
    catalog.put(record("uploads/a.jpg"))
    with pytest.raises(RuntimeError, match="unprocessed"):
        reader.get_many([image_id_for_key("uploads/a.jpg")])


# -- listing -----------------------------------------------------------------------


@pytest.fixture
def listed(catalog: DynamoDBCatalog) -> list[str]:
    """Indexed and rejected records interleaved by key, plus a tombstone."""
    keys = []
    for n in range(7):
        for folder in ("cats", "dogs"):
            key = f"uploads/{folder}/{n}.jpg"
            status = "rejected" if n % 3 == 1 else "indexed"
            catalog.put(record(key, status=status, reason="bad" if status == "rejected" else None))
            keys.append(key)
    gone = "uploads/cats/9.jpg"
    catalog.put(record(gone))
    catalog.delete(image_id_for_key(gone), key=gone, sequencer="S0009")
    return sorted(keys)


def all_pages(catalog: DynamoDBCatalog, **options: Any) -> tuple[list[str], int]:
    keys, cursor, pages = [], None, 0
    while True:
        page = catalog.list(cursor=cursor, **options)
        pages += 1
        keys.extend(r.key for r in page.items)
        assert len(page.items) <= options["limit"]
        cursor = page.cursor
        if cursor is None:
            return keys, pages
        assert pages < 50


def test_list_orders_by_key_across_statuses_and_never_shows_tombstones(
    catalog: DynamoDBCatalog, listed: list[str]
) -> None:
    page = catalog.list(prefix=None, status=None, limit=100, cursor=None)
    assert [r.key for r in page.items] == listed
    assert page.cursor is None
    assert all(r.vector is None for r in page.items)
    assert {r.status for r in page.items} == {"indexed", "rejected"}
    rejected = next(r for r in page.items if r.status == "rejected")
    assert rejected.reason == "bad"


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 14])
def test_paging_visits_everything_once_in_order(
    catalog: DynamoDBCatalog, listed: list[str], limit: int
) -> None:
    keys, pages = all_pages(catalog, prefix=None, status=None, limit=limit)
    assert keys == listed
    assert pages >= len(listed) // limit


@pytest.mark.parametrize("status", ["indexed", "rejected"])
@pytest.mark.parametrize("prefix", [None, "uploads/cats/", "uploads/dogs/1", "uploads/zebras/"])
def test_status_and_prefix_filters(
    catalog: DynamoDBCatalog, listed: list[str], status: str, prefix: str | None
) -> None:
    everything = catalog.list(prefix=None, status=None, limit=100, cursor=None).items
    expected = [r.key for r in everything if r.status == status and r.key.startswith(prefix or "")]
    keys, _ = all_pages(catalog, prefix=prefix, status=status, limit=2)
    assert keys == expected
    without_status, _ = all_pages(catalog, prefix=prefix, status=None, limit=3)
    assert without_status == [r.key for r in everything if r.key.startswith(prefix or "")]


def cursor_of(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def test_malformed_or_foreign_cursors_are_refused(
    catalog: DynamoDBCatalog, listed: list[str]
) -> None:
    page = catalog.list(prefix="uploads/", status=None, limit=2, cursor=None)
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
            catalog.list(prefix="uploads/", status=None, limit=2, cursor=cursor)
    # A real cursor only continues the listing it came from
    with pytest.raises(ValueError, match="another prefix or status"):
        catalog.list(prefix="uploads/cats/", status=None, limit=2, cursor=page.cursor)
    with pytest.raises(ValueError, match="another prefix or status"):
        catalog.list(prefix="uploads/", status="indexed", limit=2, cursor=page.cursor)
    assert catalog.list(prefix="uploads/", status=None, limit=2, cursor=page.cursor).items


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": 10, "status": "deleted"}, "status"),
    ],
)
def test_list_arguments_are_validated(
    catalog: DynamoDBCatalog, options: dict[str, Any], message: str
) -> None:
    arguments = {"prefix": None, "status": None, "cursor": None, **options}
    with pytest.raises(ValueError, match=message):
        catalog.list(**arguments)
