"""The embedded index's S3 snapshot and its proportional refresh, on moto (in-process):
first build, catch-up, concurrent writers, corrupt / stale / missing / other-model
snapshots falling back to the Scan path, refresh reading vectors only for changed rows,
and GET /health answering without a table read."""

from __future__ import annotations

import json
import logging
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from imagesearch.catalog.dynamodb import DynamoDBCatalog
from imagesearch.health import ImageCount, PublishedCount
from imagesearch.index.embedded import EmbeddedIndex, Exported
from imagesearch.index.maintenance import refresh_snapshot
from imagesearch.index.snapshot import SnapshotError, SnapshotStore
from imagesearch.ports import QueryFilters
from imagesearch.records import ImageRecord, image_id_for_key, iso_from_ms
from imagesearch.resources import (
    IMAGE_COUNT_ID,
    IMAGE_COUNT_READ_SECONDS,
    SNAPSHOT_MAX_LAG_SECONDS,
    TOMBSTONE_TTL_SECONDS,
    table_definition,
)
from imagesearch.search import SearchService
from tests.integration.catalog_support import START, Clock

TABLE = "images-snapshot-test"
BUCKET = "images-snapshot-test"
PREFIX = "index-snapshots/"
MODEL = "amazon.titan-embed-image-v1"
DIM = 8


class Spy:
    """A boto3 client that records the operations called on it."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[str] = []
        self.kwargs: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            self.kwargs.append(kwargs)
            return attribute(*args, **kwargs)

        return call


@pytest.fixture
def aws() -> Iterator[tuple[Any, Any]]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(**table_definition(TABLE))
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield dynamodb, s3


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def catalog(aws: tuple[Any, Any], clock: Clock) -> DynamoDBCatalog:
    return DynamoDBCatalog(TABLE, client=aws[0], clock=clock)


def store_of(s3: Any, clock: Clock, **options: Any) -> SnapshotStore:
    # Small parts: a handful of vectors already spans several ranged GETs.
    return SnapshotStore(BUCKET, PREFIX, client=s3, clock=clock, part_bytes=64, **options)


def index_of(
    catalog: DynamoDBCatalog,
    clock: Clock,
    store: SnapshotStore | None,
    fallbacks: list[str] | None = None,
    model_id: str = MODEL,
) -> EmbeddedIndex:
    return EmbeddedIndex(
        catalog,
        model_id=model_id,
        dimension=DIM,
        clock=clock,
        refresh_interval=0,
        snapshots=store,
        on_fallback=None if fallbacks is None else fallbacks.append,
    )


def axis(n: int) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[n % DIM] = 1.0
    return vector


def put(catalog: DynamoDBCatalog, n: int, vector: np.ndarray, sequencer: str = "S1") -> str:
    key = f"uploads/{n}.jpg"
    catalog.put(
        ImageRecord(
            image_id=image_id_for_key(key),
            key=key,
            status="indexed",
            content_type="image/jpeg",
            model_id=MODEL,
            dimension=DIM,
            sequencer=sequencer,
            vector=vector,
        )
    )
    return image_id_for_key(key)


def delete(catalog: DynamoDBCatalog, n: int, sequencer: str = "S9") -> None:
    key = f"uploads/{n}.jpg"
    catalog.delete(image_id_for_key(key), key=key, sequencer=sequencer)


def top(index: EmbeddedIndex, n: int) -> str | None:
    found = index.query(axis(n), 1, QueryFilters())
    return found[0].image_id if found else None


def spied_catalog(aws: tuple[Any, Any], clock: Clock) -> tuple[DynamoDBCatalog, Spy]:
    spy = Spy(aws[0])
    return DynamoDBCatalog(TABLE, client=spy, clock=clock), spy


def build_first(catalog: DynamoDBCatalog, s3: Any, clock: Clock) -> None:
    store = store_of(s3, clock)
    result = refresh_snapshot(index_of(catalog, clock, store), store, clock=clock)
    assert result.written and result.reason == "no usable snapshot"


# -- lifecycle ------------------------------------------------------------------------


def test_first_build_then_cold_starts_read_the_snapshot_not_the_table(
    aws: tuple[Any, Any], catalog: DynamoDBCatalog, clock: Clock
) -> None:
    # Given five images and no snapshot yet
    ids = [put(catalog, n, axis(n)) for n in range(5)]
    s3 = aws[1]

    # When the maintenance run builds the first one
    build_first(catalog, s3, clock)
    clock.advance(60)

    # Then a cold instance loads it without a Scan, and answers like the table says
    spied, spy = spied_catalog(aws, clock)
    fallbacks: list[str] = []
    index = index_of(spied, clock, store_of(s3, clock), fallbacks)
    assert [top(index, n) for n in range(5)] == ids
    assert index.source == "snapshot" and fallbacks == []
    assert "scan" not in spy.calls and "batch_get_item" not in spy.calls
    assert set(spy.calls) == {"query"}  # the catch-up: change log only

    # And a second run with nothing new leaves the snapshot alone
    store = store_of(s3, clock)
    again = refresh_snapshot(index_of(catalog, clock, store), store, clock=clock)
    assert (again.written, again.reason, again.count) == (False, "unchanged", 5)


def test_cold_start_catches_up_adds_overwrites_and_deletes_since_the_snapshot(
    aws: tuple[Any, Any], catalog: DynamoDBCatalog, clock: Clock
) -> None:
    ids = [put(catalog, n, axis(n)) for n in range(4)]
    build_first(catalog, aws[1], clock)
    clock.advance(120)
    # After the snapshot: one added, one overwritten (now along axis 7), one deleted
    added = put(catalog, 5, axis(5))
    put(catalog, 1, axis(7), sequencer="S2")
    delete(catalog, 2)
    clock.advance(5)

    spied, spy = spied_catalog(aws, clock)
    index = index_of(spied, clock, store_of(aws[1], clock))
    assert index.count() == 4
    assert top(index, 5) == added
    assert top(index, 7) == ids[1]
    assert ids[2] not in index.get_vectors(ids)
    assert index.source == "snapshot" and "scan" not in spy.calls
    # Vectors were fetched for exactly the two rows written since (not the delete)
    batches = [c for c in spy.calls if c == "batch_get_item"]
    assert len(batches) == 1

    # And the maintenance run writes a new snapshot holding those changes
    store = store_of(aws[1], clock)
    result = refresh_snapshot(index_of(catalog, clock, store), store, clock=clock)
    assert (result.written and result.reason == "2 changes since the snapshot") or result.written
    fresh = index_of(catalog, clock, store_of(aws[1], clock))
    assert fresh.count() == 4 and top(fresh, 7) == ids[1]


def test_concurrent_writers_leave_a_complete_snapshot_and_never_go_back(
    aws: tuple[Any, Any], catalog: DynamoDBCatalog, clock: Clock
) -> None:
    s3 = aws[1]
    for n in range(3):
        put(catalog, n, axis(n))

    def write(exported: Exported) -> None:
        store_of(s3, clock).write(
            model_id=MODEL,
            dimension=DIM,
            watermark_ms=int(exported.watermark * 1000),
            ids=exported.ids,
            keys=exported.keys,
            content_types=exported.content_types,
            revisions=exported.revisions,
            matrix=exported.rows,
        )

    with index_of(catalog, clock, None).exported() as old:  # writer A read the table (now)
        clock.advance(30)
        put(catalog, 3, axis(3))
        with index_of(catalog, clock, None).exported() as newer:  # B later, one more image
            # When B points to its snapshot first and A, slower, finishes after it
            write(newer)
            write(old)

    # Then the pointer still names B's (newer) snapshot, and A's object is gone
    header = store_of(s3, clock).read_header()
    assert header is not None and header.count == 4
    objects = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}snapshots/")["Contents"]
    assert [o["Key"] for o in objects] == [header.object_key]

    # And a third write retires B's object only one write later (a reader that just read
    # the old pointer still finds it)
    clock.advance(30)
    put(catalog, 4, axis(4))
    with index_of(catalog, clock, None).exported() as third:
        write(third)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX)["Contents"]}
    assert header.object_key in keys
    clock.advance(30)
    with index_of(catalog, clock, None).exported() as fourth:
        write(fourth)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX)["Contents"]}
    assert header.object_key not in keys and len(keys) == 3  # pointer, current, retired
    assert index_of(catalog, clock, store_of(s3, clock)).count() == 5


# -- fallbacks ------------------------------------------------------------------------


def _corrupt_vectors(s3: Any) -> None:
    header = store_of(s3, Clock()).read_header()
    assert header is not None
    body = bytearray(s3.get_object(Bucket=BUCKET, Key=header.object_key)["Body"].read())
    body[header.vectors_offset + 5] ^= 0xFF
    s3.put_object(Bucket=BUCKET, Key=header.object_key, Body=bytes(body))


def _truncate(s3: Any) -> None:
    header = store_of(s3, Clock()).read_header()
    assert header is not None
    body = s3.get_object(Bucket=BUCKET, Key=header.object_key)["Body"].read()
    s3.put_object(Bucket=BUCKET, Key=header.object_key, Body=body[:-10])


def _garble_pointer(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"{PREFIX}current.json", Body=b"{not json")


def _drop_object(s3: Any) -> None:
    header = store_of(s3, Clock()).read_header()
    assert header is not None
    s3.delete_object(Bucket=BUCKET, Key=header.object_key)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_corrupt_vectors, "corrupt"),
        (_truncate, "corrupt"),
        (_garble_pointer, "corrupt"),
        (_drop_object, "missing"),
    ],
)
def test_a_damaged_snapshot_falls_back_to_the_scan_with_a_reason(
    aws: tuple[Any, Any],
    catalog: DynamoDBCatalog,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    damage: Any,
    reason: str,
) -> None:
    ids = [put(catalog, n, axis(n)) for n in range(3)]
    build_first(catalog, aws[1], clock)
    damage(aws[1])

    fallbacks: list[str] = []
    spied, spy = spied_catalog(aws, clock)
    index = index_of(spied, clock, store_of(aws[1], clock), fallbacks)
    assert [top(index, n) for n in range(3)] == ids
    assert fallbacks == [reason] and index.source == "scan" and "scan" in spy.calls
    assert "loading the index by Scan" in caplog.text

    # And the next maintenance run replaces it
    store = store_of(aws[1], clock)
    assert refresh_snapshot(index_of(catalog, clock, store), store, clock=clock).written
    assert index_of(catalog, clock, store_of(aws[1], clock)).count() == 3


def test_no_snapshot_yet_falls_back(
    aws: tuple[Any, Any], catalog: DynamoDBCatalog, clock: Clock
) -> None:
    put(catalog, 0, axis(0))
    fallbacks: list[str] = []
    index = index_of(catalog, clock, store_of(aws[1], clock), fallbacks)
    assert index.count() == 1 and fallbacks == ["missing"]


def test_a_snapshot_older_than_half_the_tombstone_ttl_is_not_used(
    aws: tuple[Any, Any], catalog: DynamoDBCatalog, clock: Clock
) -> None:
    ids = [put(catalog, n, axis(n)) for n in range(3)]
    build_first(catalog, aws[1], clock)
    clock.advance(TOMBSTONE_TTL_SECONDS / 2 + 60)
    delete(catalog, 0)  # its tombstone may have expired by the time anyone looks

    fallbacks: list[str] = []
    index = index_of(catalog, clock, store_of(aws[1], clock), fallbacks)
    assert index.count() == 2 and ids[0] not in index.get_vectors(ids)
    assert fallbacks == ["stale"]


def test_model_change_ignores_the_old_models_snapshot_and_replaces_it(
    aws: tuple[Any, Any], catalog: DynamoDBCatalog, clock: Clock
) -> None:
    put(catalog, 0, axis(0))
    build_first(catalog, aws[1], clock)

    # When the deployment switches model, its instances do not read the old snapshot
    fallbacks: list[str] = []
    other = index_of(catalog, clock, store_of(aws[1], clock), fallbacks, model_id="other-model")
    assert other.count() == 0 and fallbacks == ["mismatch"]
    # (and /health's count from the instance is of its own model, none of the old one's)
    own = other.loaded_image_count()
    assert own is not None and (own.images, own.model_id) == (0, "other-model")

    # And its maintenance run points to a snapshot of the new model
    store = store_of(aws[1], clock)
    result = refresh_snapshot(
        index_of(catalog, clock, store, model_id="other-model"), store, clock=clock
    )
    assert result.written
    header = store.read_header()
    assert header is not None and header.model_id == "other-model"


def test_snapshot_reads_check_model_and_header(
    aws: tuple[Any, Any], catalog: DynamoDBCatalog, clock: Clock
) -> None:
    put(catalog, 0, axis(0))
    build_first(catalog, aws[1], clock)
    store = store_of(aws[1], clock)
    with pytest.raises(SnapshotError) as raised:
        store.load(model_id=MODEL, dimension=16)
    assert raised.value.reason == "mismatch"
    pointer = json.loads(aws[1].get_object(Bucket=BUCKET, Key=store.pointer_key)["Body"].read())
    pointer["header"]["count"] = 2  # parts no longer match the count
    aws[1].put_object(Bucket=BUCKET, Key=store.pointer_key, Body=json.dumps(pointer).encode())
    with pytest.raises(SnapshotError) as raised:
        store.load(model_id=MODEL, dimension=DIM)
    assert raised.value.reason == "corrupt"


# -- refresh in proportion to changes ------------------------------------------------------


def test_refresh_fetches_vectors_only_for_rows_not_held_at_that_revision(
    aws: tuple[Any, Any], clock: Clock
) -> None:
    spied, spy = spied_catalog(aws, clock)
    ids = [put(spied, n, axis(n)) for n in range(4)]
    index = index_of(spied, clock, None)
    assert index.count() == 4
    spy.calls.clear()

    # Nothing changed: the overlap re-reads the last 30 s of the change log, no vectors
    clock.advance(2)
    assert index.count() == 4
    assert "batch_get_item" not in spy.calls and "scan" not in spy.calls

    # Adds, overwrites and deletes: one BatchGetItem, for the two rows with vectors
    put(spied, 1, axis(6), sequencer="S2")
    added = put(spied, 7, axis(7))
    delete(spied, 3)
    spy.calls.clear()
    clock.advance(2)
    assert index.count() == 4
    assert top(index, 6) == ids[1] and top(index, 7) == added
    assert ids[3] not in index.get_vectors(ids)
    assert spy.calls.count("batch_get_item") == 1

    # The next refresh sees the same changes again (overlap) and fetches nothing
    spy.calls.clear()
    clock.advance(2)
    assert index.count() == 4 and "batch_get_item" not in spy.calls


def test_change_log_items_carry_no_vector_and_spread_over_shards(
    aws: tuple[Any, Any], catalog: DynamoDBCatalog
) -> None:
    for n in range(40):
        put(catalog, n, axis(n))
    changes = list(catalog.changes(int(START * 1000) - 1000, int(START * 1000) + 1000))
    assert len(changes) == 40
    assert all("vector" not in item and "revision" in item for item in changes)
    shards = {
        aws[0].get_item(TableName=TABLE, Key={"image_id": item["image_id"]})["Item"][
            "change_shard"
        ]["S"]
        for item in changes
    }
    assert len(shards) > 1 and all(s.startswith("2026-03-01#") for s in shards)


def test_a_gap_longer_than_the_tombstone_ttl_reloads(aws: tuple[Any, Any], clock: Clock) -> None:
    spied, spy = spied_catalog(aws, clock)
    ids = [put(spied, n, axis(n)) for n in range(3)]
    index = index_of(spied, clock, None)
    assert index.count() == 3
    # A delete whose tombstone expired while this instance slept: only a reload knows
    clock.advance(TOMBSTONE_TTL_SECONDS + 10)
    aws[0].delete_item(TableName=TABLE, Key={"image_id": {"S": ids[0]}})
    spy.calls.clear()
    assert index.count() == 2
    assert "scan" in spy.calls


# -- /health ------------------------------------------------------------------------------


def health_service(catalog: DynamoDBCatalog, index: EmbeddedIndex, clock: Clock) -> SearchService:
    return SearchService(
        catalog,
        index,
        None,
        None,  # type: ignore[arg-type]
        upload_prefix="uploads/",
        model_id=MODEL,
        dimension=DIM,
        capacity=6,
        published_count=PublishedCount(catalog.published_count, clock=clock),
    )


def test_health_reads_one_item_at_most_and_never_loads(
    aws: tuple[Any, Any], catalog: DynamoDBCatalog, clock: Clock
) -> None:
    for n in range(5):
        put(catalog, n, axis(n))
    build_first(catalog, aws[1], clock)
    spied, spy = spied_catalog(aws, clock)
    index = index_of(spied, clock, store_of(aws[1], clock))
    service = health_service(spied, index, clock)

    # Before maintenance published a count, a cold instance knows none: one GetItem,
    # no snapshot read, no Query or Scan, nothing loaded
    health = service.health()
    assert (health.images, health.images_as_of) == (None, None)
    assert spy.calls == ["get_item"] and index.loaded_count() is None

    # Published, it answers that count (read again once the cached read is a minute old)
    catalog.publish_count(ImageCount(5, int(clock() * 1000), MODEL, DIM))
    clock.advance(IMAGE_COUNT_READ_SECONDS)
    spy.calls.clear()
    health = service.health()
    assert (health.images, health.capacity, health.near_capacity) == (5, 6, True)
    assert health.images_as_of == iso_from_ms(int((clock() - IMAGE_COUNT_READ_SECONDS) * 1000))
    assert spy.calls == ["get_item"]
    assert service.health().images == 5 and spy.calls == ["get_item"]

    # Once loaded, the instance's own count when it is newer, with no refresh behind it
    index.refresh()
    put(catalog, 5, axis(5))
    spy.calls.clear()
    clock.advance(10)
    health = service.health()
    assert health.images == 5 and spy.calls == []
    assert health.images_as_of == iso_from_ms(int((clock() - 10) * 1000))


def test_health_takes_the_newer_count_of_its_own_model_space(
    aws: tuple[Any, Any], catalog: DynamoDBCatalog, clock: Clock
) -> None:
    for n in range(3):
        put(catalog, n, axis(n))
    index = index_of(catalog, clock, None)
    index.refresh()  # 3, as of now
    service = health_service(catalog, index, clock)
    loaded_at = clock()

    # A newer published count of another model (a switch flipped): not this space's
    catalog.publish_count(ImageCount(9, int((loaded_at + 5) * 1000), "other.model", DIM))
    assert service.health().images == 3
    # An older published count of this space: the loaded one is newer
    catalog.publish_count(ImageCount(2, int((loaded_at - 5) * 1000), MODEL, DIM))
    clock.advance(IMAGE_COUNT_READ_SECONDS)
    assert service.health().images == 3
    # A newer one of this space (or of every model: the scale tier's) wins
    catalog.publish_count(ImageCount(4, int((loaded_at + 5) * 1000)))
    clock.advance(IMAGE_COUNT_READ_SECONDS)
    health = service.health()
    assert (health.images, health.images_as_of) == (4, iso_from_ms(int((loaded_at + 5) * 1000)))


@pytest.mark.parametrize(
    ("failure", "logged"),
    [
        ("denied", "AccessDeniedException"),
        ("malformed", "the published image count item is malformed"),
    ],
)
def test_health_without_a_readable_count_answers_null_and_retries_a_minute_later(
    aws: tuple[Any, Any],
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    failure: str,
    logged: str,
) -> None:
    class Failing(Spy):
        def get_item(self, **kwargs: Any) -> Any:
            self.calls.append("get_item")
            if failure == "denied":
                raise ClientError(
                    {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetItem"
                )
            return {"Item": {"image_id": {"S": IMAGE_COUNT_ID}, "images": {"N": "3"}}}

    spy = Failing(aws[0])
    catalog = DynamoDBCatalog(TABLE, client=spy, clock=clock)
    service = health_service(catalog, index_of(catalog, clock, None), clock)

    with caplog.at_level(logging.WARNING, logger="imagesearch.health"):
        assert service.health().images is None
        assert service.health().images is None  # not read again at once
    assert "could not read the published image count" in caplog.text and logged in caplog.text
    assert spy.calls == ["get_item"]
    clock.advance(IMAGE_COUNT_READ_SECONDS)
    assert service.health().images is None and spy.calls == ["get_item", "get_item"]


# -- when maintenance writes ------------------------------------------------------------


def test_maintenance_writes_after_enough_changes_or_once_they_are_old(
    aws: tuple[Any, Any], catalog: DynamoDBCatalog, clock: Clock
) -> None:
    for n in range(3):
        put(catalog, n, axis(n))
    clock.advance(1)
    build_first(catalog, aws[1], clock)
    spied, spy = spied_catalog(aws, clock)

    def run() -> Any:
        store = store_of(aws[1], clock)
        return refresh_snapshot(
            index_of(spied, clock, store),
            store,
            clock=clock,
            count_changes=spied.count_changes,
            after_changes=3,
            max_lag=600,
        )

    # With nothing new, a run reads the header and counts: no load
    clock.advance(60)
    spy.calls.clear()
    spy.kwargs.clear()
    quiet = run()
    assert (quiet.written, quiet.reason, quiet.count) == (False, "unchanged", 3)
    assert set(spy.calls) == {"query"}  # COUNT queries of the change log only
    assert {kwargs.get("Select") for kwargs in spy.kwargs} == {"COUNT"}

    # With fewer changes than the threshold, a young snapshot stays
    clock.advance(60)
    put(catalog, 3, axis(3), sequencer="S2")
    put(catalog, 4, axis(4), sequencer="S2")
    clock.advance(60)
    waiting = run()
    assert not waiting.written and waiting.reason.startswith("2 changes in")

    # And the third change makes one due at once
    put(catalog, 5, axis(5), sequencer="S2")
    clock.advance(60)
    due = run()
    assert due.written and due.reason == "3 changes since the snapshot" and due.count == 6

    # A single change waits until the snapshot is max_lag old, then is written
    clock.advance(60)
    delete(catalog, 0)
    clock.advance(60)
    assert not run().written
    clock.advance(600)
    late = run()
    assert late.written and late.count == 5
    clock.advance(60)
    assert run().reason == "unchanged"


def test_changes_counted_but_already_in_the_snapshot_are_written_once(
    aws: tuple[Any, Any], catalog: DynamoDBCatalog, clock: Clock
) -> None:
    # Given changes stamped the very millisecond the snapshot's load started (they are
    # in it, but the count since its watermark includes them)
    put(catalog, 0, axis(0))
    put(catalog, 1, axis(1))
    build_first(catalog, aws[1], clock)

    def run() -> Any:
        store = store_of(aws[1], clock)
        return refresh_snapshot(
            index_of(catalog, clock, store),
            store,
            clock=clock,
            count_changes=catalog.count_changes,
            max_lag=600,
        )

    clock.advance(601)
    # Then, once old enough, a run writes (nothing new to apply) and moves the watermark
    first = run()
    assert first.written and first.reason.startswith("2 changes in") and first.count == 2
    # So that the next runs stop at the cheap check instead of loading every minute
    clock.advance(60)
    assert run().reason == "unchanged"


@pytest.fixture
def maintenance_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The maintenance function's environment, pointing at this module's table and bucket."""
    from imagesearch import resources as r

    for name, value in {
        r.ENV_BUCKET: BUCKET,
        r.ENV_TABLE: TABLE,
        r.ENV_SNAPSHOT_PREFIX: PREFIX,
        r.ENV_MODEL_ID: MODEL,
        r.ENV_EMBEDDING_DIMENSION: str(DIM),
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)


def test_maintenance_handler_builds_the_first_snapshot_then_checks_cheaply(
    aws: tuple[Any, Any], maintenance_env: None
) -> None:
    from imagesearch.handlers import maintenance

    writer = DynamoDBCatalog(TABLE, client=aws[0])
    for n in range(3):
        put(writer, n, axis(n))

    first = maintenance.handler({}, None)
    assert (first["written"], first["reason"], first["images"]) == (True, "no usable snapshot", 3)
    second = maintenance.handler({}, None)
    assert (second["written"], second["images"]) == (False, 3)
    assert second["watermark_ms"] == first["watermark_ms"]


class _ShiftedTime:
    """``time`` for the maintenance handler, ``offset`` seconds ahead of the real one."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset


def test_maintenance_handler_catches_up_retires_old_snapshots_and_cleans_up_a_failed_upload(
    aws: tuple[Any, Any], maintenance_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The handler's whole path, as the deployed function runs it: every call it makes
    here is one its role must allow (the IAM conformance check reads them)."""
    import botocore.client

    from imagesearch.handlers import maintenance
    from imagesearch.index import snapshot

    later = _ShiftedTime()
    monkeypatch.setattr(maintenance, "time", later)
    writer = DynamoDBCatalog(TABLE, client=aws[0])
    s3 = aws[1]
    for n in range(3):
        put(writer, n, axis(n))
    assert maintenance.handler({}, None)["written"]

    def snapshot_objects() -> list[str]:
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}snapshots/")
        return sorted(item["Key"] for item in listed.get("Contents", []))

    written = [snapshot_objects()]
    # When an image arrives and the change is past the maximum lag, twice
    for n in (3, 4):
        put(writer, n, axis(n))
        later.offset += SNAPSHOT_MAX_LAG_SECONDS + 1
        result = maintenance.handler({}, None)
        # Then the run loads the snapshot, catches up with the new record's vector and
        # writes a new snapshot holding it
        assert (result["written"], result["images"]) == (True, n + 1)
        assert result["reason"].startswith("1 changes in")
        written.append(snapshot_objects())
    # And the first snapshot is deleted one write after it was replaced (a reader that
    # had just read the pointer still finds the one it names)
    first = written[0][0]
    assert first in written[1] and first not in written[2]
    assert len(written[2]) == 2

    # When the next snapshot's multipart upload fails part-way
    monkeypatch.setattr(snapshot, "_UPLOAD_PART_BYTES", 1)  # even a tiny snapshot: multipart
    make_api_call = botocore.client.BaseClient._make_api_call

    def failing_parts(self: Any, operation: str, params: Any) -> Any:
        if operation == "UploadPart":
            raise ClientError(
                {"Error": {"Code": "InternalError", "Message": "injected"}}, operation
            )
        return make_api_call(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", failing_parts)
    put(writer, 5, axis(5))
    later.offset += SNAPSHOT_MAX_LAG_SECONDS + 1
    with pytest.raises(Exception, match="injected"):
        maintenance.handler({}, None)
    # Then the run fails visibly, no upload is left open (S3 bills parts until aborted),
    # and the last good snapshot stays current
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", make_api_call)
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert snapshot_objects() == written[2]


# -- memory of the snapshot write ----------------------------------------------------------


def test_metadata_is_written_in_batches_as_one_json_object(monkeypatch: pytest.MonkeyPatch) -> None:
    from imagesearch.index import snapshot

    monkeypatch.setattr(snapshot, "_META_BATCH", 2)  # several batches per field
    ids = ["a", "b", "c", "d", "e"]
    keys = ["k/ä.jpg", 'k/"quoted".png', "k/c", "k/d", "k/e"]
    types: list[str | None] = ["image/jpeg", None, "image/png", None, "image/webp"]
    revisions: list[str | None] = ["r1", None, "r3", "r4", None]
    header, chunks = snapshot.encode_snapshot(
        object_key="k",
        created_ms=1,
        model_id=MODEL,
        dimension=DIM,
        watermark_ms=1,
        ids=ids,
        keys=keys,
        content_types=types,
        revisions=revisions,
        matrix=np.stack([axis(n) for n in range(5)]),
    )
    meta = bytes(chunks[2])
    assert header.meta_bytes == len(meta)
    # The same bytes as the whole object encoded at once (format 1: readers unchanged)
    assert zlib.decompress(meta) == json.dumps(
        {"ids": ids, "keys": keys, "content_types": types, "revisions": revisions},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")
    empty = snapshot._compressed_meta([], [], [], [])
    assert json.loads(zlib.decompress(empty)) == {
        "ids": [],
        "keys": [],
        "content_types": [],
        "revisions": [],
    }


def test_export_is_a_view_of_the_live_rows_under_the_index_lock(
    catalog: DynamoDBCatalog, clock: Clock
) -> None:
    for n in range(3):
        put(catalog, n, axis(n))
    index = index_of(catalog, clock, None)
    taken: list[bool] = []

    def try_lock() -> None:  # another thread (a request, a refresh) in the meantime
        got = index._lock.acquire(blocking=False)
        taken.append(got)
        if got:
            index._lock.release()

    with index.exported() as exported:
        # No second copy of the matrix: the rows are the index's own memory
        assert index._matrix is not None
        assert np.shares_memory(exported.rows, index._matrix._matrix)
        assert sorted(exported.ids) == sorted(
            image_id_for_key(f"uploads/{n}.jpg") for n in range(3)
        )
        thread = threading.Thread(target=try_lock)
        thread.start()
        thread.join()
    thread = threading.Thread(target=try_lock)
    thread.start()
    thread.join()
    assert taken == [False, True]  # held while the snapshot is written, then released
