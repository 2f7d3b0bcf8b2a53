"""Local mode's catalog (local/moto_catalog.py): moto's table read in-process answers
what the catalog's requests answer (records by key, vector fetches, the full load), the
full load waits for requests inside moto, and the change log still goes to moto."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from imagesearch.catalog.dynamodb import DynamoDBCatalog
from imagesearch.index.embedded import EmbeddedIndex
from imagesearch.local.moto_catalog import MotoTableCatalog
from imagesearch.local.state import WriteGate
from imagesearch.ports import QueryFilters
from imagesearch.records import encode_vector, image_id_for_key
from imagesearch.resources import (
    ATTR_ALT_DIMENSION,
    ATTR_ALT_MODEL_ID,
    ATTR_ALT_VECTOR,
    table_definition,
)
from tests.integration.catalog_support import (
    DIM,
    MODEL,
    TABLE,
    Clock,
    SpyClient,
    axis,
    keys_of,
    record,
)

REGION = "us-east-1"


@pytest.fixture
def client() -> Iterator[Any]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(**table_definition(TABLE))
        yield dynamodb


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def catalog(client: Any, clock: Clock) -> DynamoDBCatalog:
    """Searchable records along axes 0..5, and records a search must never return."""
    catalog = DynamoDBCatalog(TABLE, client=client, clock=clock)
    for n in range(6):
        catalog.put(record(f"uploads/ok/{n}.jpg", axis(n, 0.1), content_type="image/png"))
    catalog.put(record("uploads/no/rejected.jpg", status="rejected", reason="corrupt"))
    catalog.put(record("uploads/no/other-model.jpg", axis(0), model_id="other-model"))
    catalog.put(record("uploads/no/other-dim.jpg", np.ones(4, dtype=np.float32)))
    catalog.put(record("uploads/no/deleted.jpg", axis(0)))
    catalog.delete(
        image_id_for_key("uploads/no/deleted.jpg"), key="uploads/no/deleted.jpg", sequencer="S9"
    )
    # During a model switch this model's vector may sit in the second slot
    client.put_item(
        TableName=TABLE,
        Item={
            "image_id": {"S": image_id_for_key("uploads/ok/switching.jpg")},
            "key": {"S": "uploads/ok/switching.jpg"},
            "status": {"S": "indexed"},
            "model_id": {"S": "next-model"},
            "dimension": {"N": "4"},
            "vector": {"B": encode_vector(np.ones(4, dtype=np.float32))},
            ATTR_ALT_MODEL_ID: {"S": MODEL},
            ATTR_ALT_DIMENSION: {"N": str(DIM)},
            ATTR_ALT_VECTOR: {"B": encode_vector(axis(6))},
            "sequencer": {"S": "S0001"},
        },
    )
    return catalog


def gate() -> WriteGate:
    return WriteGate(lambda environ, start_response: [])


def by_id(items: Any) -> dict[str, Any]:
    return {item["image_id"]["S"]: item for item in items}


@pytest.mark.parametrize("gated", [True, False])  # False: local mode without a state folder
@pytest.mark.parametrize("segments", [1, 4])
def test_the_feed_answers_what_the_scan_answers(
    catalog: DynamoDBCatalog, segments: int, gated: bool
) -> None:
    feed = MotoTableCatalog.over(catalog, gate=gate() if gated else None, region=REGION)

    parts = [
        list(
            feed.scan_vector_items(
                model_id=MODEL, dimension=DIM, segment=n, total_segments=segments
            )
        )
        for n in range(segments)
    ]

    scanned = by_id(catalog.scan_vector_items(model_id=MODEL, dimension=DIM))
    assert len(scanned) == 7
    read = [item for part in parts for item in part]
    assert len(read) == len(by_id(read))  # each image in one segment only
    assert by_id(read) == scanned  # same attributes, vectors as bytes
    vector = by_id(read)[image_id_for_key("uploads/ok/2.jpg")]["vector"]["B"]
    assert vector == encode_vector(axis(2, 0.1))


def test_the_index_loads_without_a_scan_and_refreshes_through_the_catalog(
    client: Any, clock: Clock, catalog: DynamoDBCatalog
) -> None:
    spy = SpyClient(client)
    watched = DynamoDBCatalog(TABLE, client=spy, clock=clock)
    index = EmbeddedIndex(
        MotoTableCatalog.over(watched, gate=gate(), region=REGION),
        model_id=MODEL,
        dimension=DIM,
        clock=clock,
        refresh_interval=0,
    )

    # The full load: every searchable image, and no request to moto at all
    hits = index.query(axis(3), 2, QueryFilters())
    assert keys_of(catalog, hits)[0] == "uploads/ok/3.jpg"
    assert index.count() == 7
    assert [name for name, _ in spy.calls if name == "scan"] == []

    # A later change arrives by the change log and a vector fetch, as usual
    clock.advance(5)
    catalog.put(record("uploads/ok/new.jpg", axis(7), sequencer="S0002"))
    catalog.delete(image_id_for_key("uploads/ok/0.jpg"), key="uploads/ok/0.jpg", sequencer="S9")
    clock.advance(1)

    assert keys_of(catalog, index.query(axis(7), 1, QueryFilters())) == ["uploads/ok/new.jpg"]
    assert index.count() == 7
    # The change log through moto's API; the changed vectors read in-process
    assert {name for name, _ in spy.calls} == {"query"}


def test_the_feed_waits_for_requests_inside_moto(catalog: DynamoDBCatalog) -> None:
    writes = gate()
    feed = MotoTableCatalog.over(catalog, gate=writes, region=REGION)
    read: list[int] = []

    def load() -> None:
        read.append(len(list(feed.scan_vector_items(model_id=MODEL, dimension=DIM))))

    # Given a request inside moto
    with writes.lock.shared():
        loader = threading.Thread(target=load)
        loader.start()
        loader.join(0.3)

        # Then the read waits for it to finish
        assert loader.is_alive()
        assert read == []
    loader.join(10)
    assert read == [7]


def test_a_reindex_reads_the_same_vectors(catalog: DynamoDBCatalog) -> None:
    feed = MotoTableCatalog.over(catalog, gate=gate(), region=REGION)

    def entries(source: DynamoDBCatalog) -> dict[str, tuple[str, str | None, list[float]]]:
        return {
            entry.image_id: (entry.key, entry.content_type, list(entry.vector))
            for entry in source.indexed_vectors(model_id=MODEL, dimension=DIM)
        }

    read = entries(feed)
    assert len(read) == 7
    assert read == entries(catalog)


# --- records by key ----------------------------------------------------------------


@pytest.mark.parametrize("with_vector", [False, True])
@pytest.mark.parametrize("include_deleted", [False, True])
def test_records_by_key_are_what_the_catalog_reads_through_moto(
    client: Any, catalog: DynamoDBCatalog, with_vector: bool, include_deleted: bool
) -> None:
    spy = SpyClient(client)
    local = MotoTableCatalog(TABLE, client=spy, gate=None, region=REGION)
    ids = [
        image_id_for_key(key)
        for key in (
            "uploads/ok/1.jpg",
            "uploads/no/rejected.jpg",
            "uploads/no/deleted.jpg",
            "uploads/ok/switching.jpg",
            "uploads/never/there.jpg",
        )
    ]

    read = local.get_many(ids, with_vector=with_vector, include_deleted=include_deleted)
    expected = catalog.get_many(ids, with_vector=with_vector, include_deleted=include_deleted)

    assert len(read) == (4 if include_deleted else 3)
    assert sorted(read) == sorted(expected)
    for image_id, want in expected.items():
        got = read[image_id]
        indexed = want.status == "indexed"
        assert (got.vector is not None) == (want.vector is not None) == (with_vector and indexed)
        for mine, theirs in ((got.vector, want.vector), (got.alt_vector, want.alt_vector)):
            assert (mine is None) == (theirs is None)
            if mine is not None and theirs is not None:
                assert mine.tobytes() == theirs.tobytes()
        got.vector = want.vector = got.alt_vector = want.alt_vector = None
        assert got == want
    for image_id in ids:
        assert local.get(image_id, include_deleted=include_deleted) == catalog.get(
            image_id, include_deleted=include_deleted
        )
    assert spy.calls == []  # no request to moto at all


def test_vector_fetches_are_what_the_catalog_reads_through_moto(
    client: Any, catalog: DynamoDBCatalog
) -> None:
    spy = SpyClient(client)
    local = MotoTableCatalog(TABLE, client=spy, gate=None, region=REGION)
    ids = [
        image_id_for_key(key)
        for key in ("uploads/ok/2.jpg", "uploads/ok/switching.jpg", "uploads/no/deleted.jpg")
    ]

    assert local.vector_items(ids) == catalog.vector_items(ids)
    assert len(local.vector_items(ids)) == 3
    assert spy.calls == []


def test_a_read_sees_the_write_that_just_answered(client: Any, catalog: DynamoDBCatalog) -> None:
    local = MotoTableCatalog(TABLE, client=client, gate=None, region=REGION)
    image_id = image_id_for_key("uploads/ok/3.jpg")
    assert local.get(image_id) is not None

    catalog.delete(image_id, key="uploads/ok/3.jpg", sequencer="S9")
    assert local.get(image_id) is None
    deleted = local.get(image_id, include_deleted=True)
    assert deleted is not None and deleted.status == "deleted"

    local.put(record("uploads/ok/3.jpg", axis(3), sequencer="S99"))  # writes go to moto
    again = local.get(image_id, with_vector=True)
    assert again is not None and again.status == "indexed"
    assert again.vector is not None and again.vector.tobytes() == axis(3).tobytes()
