"""EmbeddedIndex over the DynamoDB catalog on moto (in-process): the cold load and the
incremental refresh from the change log, with an injected clock instead of sleeps."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from imagesearch.catalog.dynamodb import DynamoDBCatalog
from imagesearch.index.embedded import EmbeddedIndex, StaleIndexError
from imagesearch.ports import QueryFilters
from imagesearch.records import encode_vector, image_id_for_key
from imagesearch.resources import TOMBSTONE_TTL_SECONDS, table_definition
from tests.integration.catalog_support import (
    DIM,
    MODEL,
    START,
    TABLE,
    Clock,
    SpyClient,
    axis,
    keys_of,
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


def embedded(
    catalog: DynamoDBCatalog | Any, clock: Any, dimension: int = DIM, **options: Any
) -> EmbeddedIndex:
    """What a search instance holds: the embedded index over the catalog."""
    return EmbeddedIndex(catalog, model_id=MODEL, dimension=dimension, clock=clock, **options)


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
def mixed_table(catalog: DynamoDBCatalog, client: Any) -> None:
    """Searchable records along axes 0..5, and records a search must never return."""
    for n in range(6):
        catalog.put(record(f"uploads/ok/{n}.jpg", axis(n, 0.1), content_type="image/png"))
    catalog.put(record("uploads/no/rejected.jpg", status="rejected", reason="corrupt"))
    catalog.put(record("uploads/no/other-model.jpg", axis(0), model_id="other-model"))
    catalog.put(record("uploads/no/other-dim.jpg", np.ones(4, dtype=np.float32)))
    catalog.put(record("uploads/no/deleted.jpg", axis(0)))
    catalog.delete(
        image_id_for_key("uploads/no/deleted.jpg"), key="uploads/no/deleted.jpg", sequencer="S9"
    )
    put_raw(client, "uploads/no/truncated.jpg", encode_vector(axis(0))[:-4])
    put_raw(client, "uploads/no/zero.jpg", encode_vector(np.zeros(DIM, dtype=np.float32)))


@pytest.mark.parametrize("segments", [1, 4])
def test_cold_load_reads_only_searchable_vectors(
    client: Any, clock: Clock, catalog: DynamoDBCatalog, mixed_table: None, segments: int
) -> None:
    spy = SpyClient(client)
    search = embedded(
        DynamoDBCatalog(TABLE, client=spy, clock=clock), clock, scan_segments=segments
    )

    assert search.count() == 6
    results = search.query(axis(2), 3, QueryFilters())
    assert keys_of(catalog, results) == ["uploads/ok/2.jpg", "uploads/ok/1.jpg", "uploads/ok/3.jpg"]
    assert results[0].score == pytest.approx(1 / np.sqrt(1.01), abs=1e-6)

    scans = [kwargs for name, kwargs in spy.calls if name == "scan"]
    assert sorted(s.get("Segment", 0) for s in scans) == list(range(segments))
    assert all(s.get("TotalSegments", 1) == segments for s in scans)
    # The projection leaves every other attribute behind: the record's fields a matrix
    # row needs, and both vector slots with their model (either may be of this model
    # during a model switch)
    projected = {name.strip() for name in scans[0]["ProjectionExpression"].split(",")}
    names = {scans[0]["ExpressionAttributeNames"][alias] for alias in projected}
    assert names == {
        "image_id",
        "key",
        "content_type",
        "vector",
        "revision",
        "model_id",
        "dimension",
        "alt_vector",
        "alt_model_id",
        "alt_dimension",
    }
    assert all(s["ProjectionExpression"] == scans[0]["ProjectionExpression"] for s in scans)


def test_cold_load_follows_scan_pages(client: Any, clock: Clock, catalog: DynamoDBCatalog) -> None:
    # Given more vectors than one 1 MB scan page holds (moto pages by size like DynamoDB)
    big = 1024
    writer = DynamoDBCatalog(TABLE, client=client, clock=clock)
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((300, big)).astype(np.float32)
    for n, vector in enumerate(vectors):
        writer.put(record(f"uploads/{n:03d}.jpg", vector))
    spy = SpyClient(client)
    search = embedded(
        DynamoDBCatalog(TABLE, client=spy, clock=clock), clock, dimension=big, scan_segments=1
    )

    assert search.count() == 300
    assert len([name for name, _ in spy.calls if name == "scan"]) > 1
    best = search.query(vectors[123], 1, QueryFilters())[0]
    assert best.image_id == image_id_for_key("uploads/123.jpg")


def test_filters_reach_the_in_memory_index(
    catalog: DynamoDBCatalog, clock: Clock, mixed_table: None
) -> None:
    catalog.put(record("uploads/ok/jpeg.jpg", axis(2, 0.3), content_type="image/jpeg"))
    index = embedded(catalog, clock)
    jpeg_only = index.query(axis(2), 10, QueryFilters(content_types=("image/jpeg",)))
    assert keys_of(catalog, jpeg_only) == ["uploads/ok/jpeg.jpg"]
    in_folder = index.query(axis(2), 10, QueryFilters(prefix="uploads/ok/", min_score=0.5))
    assert keys_of(catalog, in_folder) == ["uploads/ok/2.jpg", "uploads/ok/jpeg.jpg"]


# -- search: incremental refresh ---------------------------------------------------


def test_changes_show_after_the_refresh_interval(
    client: Any, clock: Clock, catalog: DynamoDBCatalog, mixed_table: None
) -> None:
    search = embedded(
        DynamoDBCatalog(TABLE, client=client, clock=clock), clock, refresh_interval=1.0
    )
    writer = DynamoDBCatalog(TABLE, client=client, clock=clock)
    assert search.count() == 6

    # When, a moment later, one image is added, one changed, one rejected, one deleted
    clock.advance(0.3)
    writer.put(record("uploads/ok/new.jpg", axis(7), sequencer="S0002"))
    writer.put(record("uploads/ok/1.jpg", axis(7, 0.5), sequencer="S0002"))
    writer.put(record("uploads/ok/2.jpg", status="rejected", sequencer="S0002", reason="x"))
    writer.delete(image_id_for_key("uploads/ok/3.jpg"), key="uploads/ok/3.jpg", sequencer="S0002")

    # Then within the refresh interval the instance still answers from memory
    assert search.count() == 6
    # And once it has passed, every change is visible
    clock.advance(1.0)
    assert search.count() == 5
    results = search.query(axis(7), 10, QueryFilters())
    assert keys_of(catalog, results)[:2] == ["uploads/ok/new.jpg", "uploads/ok/1.jpg"]
    found = set(keys_of(catalog, results))
    assert "uploads/ok/2.jpg" not in found and "uploads/ok/3.jpg" not in found
    assert search.get_vectors([image_id_for_key("uploads/ok/3.jpg")]) == {}

    # And a deleted image that comes back is searchable again
    clock.advance(5)
    writer.put(record("uploads/ok/3.jpg", axis(3), sequencer="S0003"))
    clock.advance(1.0)
    assert search.count() == 6
    assert search.query(axis(3), 1, QueryFilters())[0].image_id == image_id_for_key(
        "uploads/ok/3.jpg"
    )


def test_refresh_ignores_records_of_another_model_or_dimension(
    catalog: DynamoDBCatalog, client: Any, clock: Clock, mixed_table: None
) -> None:
    index = embedded(catalog, clock)
    assert index.count() == 6
    clock.advance(2)
    # An indexed image re-embedded by another model leaves this index
    catalog.put(record("uploads/ok/0.jpg", axis(0), model_id="other", sequencer="S0002"))
    catalog.put(record("uploads/ok/x.jpg", np.ones(16, dtype=np.float32), sequencer="S0002"))
    put_raw(client, "uploads/ok/truncated.jpg", b"\0\0\x80?")
    clock.advance(2)
    assert index.count() == 5
    assert index.get_vectors([image_id_for_key("uploads/ok/0.jpg")]) == {}


def test_refresh_reads_every_day_since_the_watermark(client: Any) -> None:
    # Given an instance loaded ten seconds before midnight UTC
    clock = Clock(datetime(2026, 3, 1, 23, 59, 50, tzinfo=UTC).timestamp())
    search = embedded(DynamoDBCatalog(TABLE, client=client, clock=clock), clock)
    writer = DynamoDBCatalog(TABLE, client=client, clock=clock)
    assert search.count() == 0

    # When one image lands before midnight and one after
    clock.advance(5)
    writer.put(record("uploads/before.jpg", axis(1)))
    clock.advance(10)
    writer.put(record("uploads/after.jpg", axis(2)))
    clock.advance(1)

    # Then both are found, in their two day partitions
    assert search.count() == 2
    days = {
        raw_item(client, k)["change_day"]["S"] for k in ("uploads/before.jpg", "uploads/after.jpg")
    }
    assert days == {"2026-03-01", "2026-03-02"}


def test_writes_from_a_slow_clock_are_not_missed(client: Any, clock: Clock) -> None:
    search = embedded(DynamoDBCatalog(TABLE, client=client, clock=clock), clock)
    assert search.count() == 0
    clock.advance(10)
    assert search.count() == 0  # the watermark is now START + 10

    # When a writer whose clock is 20 s behind stores an image after that refresh
    late_clock = Clock(clock.now - 20)
    DynamoDBCatalog(TABLE, client=client, clock=late_clock).put(record("uploads/late.jpg"))
    clock.advance(1)

    # Then the overlap of the next refresh still picks it up
    assert search.count() == 1


def test_a_long_pause_reloads_everything(client: Any, clock: Clock) -> None:
    search = embedded(DynamoDBCatalog(TABLE, client=client, clock=clock), clock)
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
    search = embedded(
        DynamoDBCatalog(TABLE, client=spy, clock=clock),
        clock,
        refresh_interval=1.0,
        max_staleness=60,
    )
    DynamoDBCatalog(TABLE, client=client, clock=clock).put(record("uploads/a.jpg"))
    assert search.count() == 1

    # When the change index throttles, searches still answer, with a warning
    spy.fail_queries = True
    clock.advance(30)
    with caplog.at_level(logging.WARNING, logger="imagesearch.index.embedded"):
        assert len(search.query(axis(0), 5, QueryFilters())) == 1
    assert "index refresh failed" in caplog.text

    # But not past the staleness limit
    clock.advance(40)
    with pytest.raises(StaleIndexError):
        search.query(axis(0), 5, QueryFilters())

    # And they recover as soon as the table answers again
    spy.fail_queries = False
    assert search.count() == 1


def test_a_throttled_vector_fetch_serves_the_last_state_then_503s(
    client: Any, clock: Clock
) -> None:
    spy = SpyClient(client)
    writer = DynamoDBCatalog(TABLE, client=client, clock=clock)
    search = embedded(
        DynamoDBCatalog(TABLE, client=spy, clock=clock, sleep=lambda _: None),
        clock,
        refresh_interval=1.0,
        max_staleness=60,
    )
    writer.put(record("uploads/a.jpg"))
    assert search.count() == 1

    # When a new image's vector cannot be fetched (BatchGetItem keeps withholding keys)
    spy.withhold_all = True
    clock.advance(5)
    writer.put(record("uploads/b.jpg", axis(1)))
    clock.advance(5)
    assert search.count() == 1  # the last state, for a while
    clock.advance(70)
    with pytest.raises(StaleIndexError):
        search.count()

    # And it catches up once the table answers
    spy.withhold_all = False
    clock.advance(1)
    assert search.count() == 2


def test_get_vectors_answers_from_memory_and_direct_writes_change_only_memory(
    catalog: DynamoDBCatalog, clock: Clock
) -> None:
    catalog.put(record("uploads/a.jpg", axis(1, 0.5)))
    index = embedded(catalog, clock)
    assert index.count() == 1
    # Written after the load, before the next refresh: not in memory yet (the search
    # service reads such a vector from the catalog)
    catalog.put(record("uploads/b.jpg", axis(2) * 3))
    found = index.get_vectors([image_id_for_key(k) for k in ("uploads/a.jpg", "uploads/b.jpg")])
    assert list(found) == [image_id_for_key("uploads/a.jpg")]
    np.testing.assert_allclose(found[image_id_for_key("uploads/a.jpg")], axis(1, 0.5), atol=1e-6)

    # upsert/delete change this instance's memory, never the catalog
    index.delete([image_id_for_key("uploads/a.jpg")])
    assert index.get_vectors([image_id_for_key("uploads/a.jpg")]) == {}
    assert catalog.get(image_id_for_key("uploads/a.jpg")) is not None


def test_concurrent_searches_while_the_table_changes(client: Any) -> None:
    clock = Clock()
    lock = threading.Lock()

    def ticking() -> float:
        with lock:
            clock.advance(0.05)
            return clock.now

    search = embedded(
        DynamoDBCatalog(TABLE, client=client, clock=ticking), ticking, refresh_interval=0.2
    )
    writer = DynamoDBCatalog(TABLE, client=client, clock=ticking)
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
        writer.put(record(f"uploads/{n}.jpg", axis(n, 0.3)))
    for thread in threads:
        thread.join()

    assert errors == []
    clock.advance(5)
    assert search.count() == 40


# -- background refresh (local mode) ----------------------------------------------------


class SlowChangeLog:
    """The catalog feed, with the change-log read held until ``release`` is set."""

    def __init__(self, catalog: DynamoDBCatalog) -> None:
        self._catalog = catalog
        self.release = threading.Event()
        self.release.set()
        self.reading = threading.Event()

    def scan_vector_items(self, **options: Any) -> Iterator[Any]:
        return self._catalog.scan_vector_items(**options)

    def changes(self, since_ms: int, until_ms: int, **options: Any) -> Iterator[Any]:
        self.reading.set()
        assert self.release.wait(30)
        return self._catalog.changes(since_ms, until_ms, **options)

    def vector_items(self, image_ids: Any) -> Any:
        return self._catalog.vector_items(image_ids)


def eventually(predicate: Any, timeout: float = 30.0) -> None:
    """Wait for the background refresher (a bounded wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the background refresh did not get there"
        time.sleep(0.01)


def test_a_background_refresher_lets_searches_answer_from_the_state_in_hand(
    client: Any, clock: Clock
) -> None:
    writer = DynamoDBCatalog(TABLE, client=client, clock=clock)
    writer.put(record("uploads/a.jpg", axis(0)))
    feed = SlowChangeLog(DynamoDBCatalog(TABLE, client=client, clock=clock))
    search = embedded(feed, clock, refresh_interval=0.05, background_refresh=True)
    assert search.count() == 1  # the first load starts the refresher

    # When an image is added while the refresher's change-log read is slow
    feed.release.clear()
    feed.reading.clear()
    clock.advance(2)
    writer.put(record("uploads/b.jpg", axis(1)))
    assert feed.reading.wait(30)

    # Then searches answer at once from the state in hand while it reads
    hits = search.query(axis(1), 5, QueryFilters())
    assert [hit.image_id for hit in hits] == [image_id_for_key("uploads/a.jpg")]

    # And once the read is done the change is there, without a search asking for it
    feed.release.set()
    eventually(lambda: search.count() == 2)
    assert search.query(axis(1), 5, QueryFilters())[0].image_id == image_id_for_key("uploads/b.jpg")
    assert search.stop_refreshing(30)


def test_a_failing_background_refresh_serves_the_last_state_then_503s(
    client: Any, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    spy = SpyClient(client)
    writer = DynamoDBCatalog(TABLE, client=client, clock=clock)
    search = embedded(
        DynamoDBCatalog(TABLE, client=spy, clock=clock),
        clock,
        refresh_interval=0.05,
        max_staleness=60,
        background_refresh=True,
    )
    writer.put(record("uploads/a.jpg"))
    assert search.count() == 1

    # When the change log throttles, searches answer from memory; the refresher logs why
    with caplog.at_level(logging.WARNING, logger="imagesearch.index.embedded"):
        spy.fail_queries = True
        clock.advance(30)
        eventually(lambda: "index refresh failed" in caplog.text)
        assert len(search.query(axis(0), 5, QueryFilters())) == 1

        # But past the staleness limit the request refreshes itself, and fails
        clock.advance(40)
        with pytest.raises(StaleIndexError):
            search.query(axis(0), 5, QueryFilters())

    # And once the table answers again, so does the index, with what changed
    spy.fail_queries = False
    writer.put(record("uploads/b.jpg", axis(1)))
    clock.advance(1)
    eventually(lambda: search.count() == 2)
    assert search.stop_refreshing(30)


def test_refresh_soon_runs_the_background_refresher_now(client: Any, clock: Clock) -> None:
    writer = DynamoDBCatalog(TABLE, client=client, clock=clock)
    writer.put(record("uploads/a.jpg", axis(0)))
    search = embedded(
        DynamoDBCatalog(TABLE, client=client, clock=clock),
        clock,
        refresh_interval=3600,  # left alone, the next refresh is an hour away
        background_refresh=True,
    )
    assert search.count() == 1

    # When ingest has written an image and nudges the index (local mode's worker)
    clock.advance(2)
    writer.put(record("uploads/b.jpg", axis(1)))
    search.refresh_soon()

    # Then it is searchable without waiting for the interval
    eventually(lambda: search.count() == 2)
    assert search.stop_refreshing(30)


def test_an_index_nobody_holds_any_more_stops_its_background_refresher(
    client: Any, clock: Clock
) -> None:
    import gc

    search = embedded(
        DynamoDBCatalog(TABLE, client=client, clock=clock),
        clock,
        refresh_interval=0.05,
        background_refresh=True,
    )
    search.refresh()
    refresher = search._refresher
    assert refresher is not None and refresher.is_alive()

    # When the index is dropped (a model switch serves another one)
    del search
    gc.collect()

    # Then its refresher ends instead of refreshing for nobody
    refresher.join(30)
    assert not refresher.is_alive()


def test_a_refresh_reads_only_what_it_decides_on_from_the_change_log(
    client: Any, clock: Clock
) -> None:
    spy = SpyClient(client)
    writer = DynamoDBCatalog(TABLE, client=client, clock=clock)
    search = embedded(DynamoDBCatalog(TABLE, client=spy, clock=clock), clock)
    writer.put(record("uploads/a.jpg", axis(0)))
    assert search.count() == 1
    clock.advance(2)
    writer.put(record("uploads/b.jpg", axis(1)))
    spy.calls.clear()

    clock.advance(2)
    assert search.count() == 2

    queries = [kwargs for name, kwargs in spy.calls if name == "query"]
    assert queries
    for query in queries:
        names = query["ExpressionAttributeNames"]
        projected = {names[part.strip()] for part in query["ProjectionExpression"].split(",")}
        assert projected == {"image_id", "status", "revision", "changed_at"}
