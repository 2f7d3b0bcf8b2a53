"""A bound on invisibility (issue 17.3, docs/decisions.md entry 41), on moto: a write
acknowledged to its writer is re-read by the change-log window (its client cannot take
longer than the window to commit it); one committed later than that after its stamp is
found by the maintenance function's hourly reconciliation, re-announced in the change
log (warm instances apply it) and built into a new snapshot (cold instances load it)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from imagesearch.catalog.dynamodb import DynamoDBCatalog
from imagesearch.index.embedded import EmbeddedIndex
from imagesearch.index.maintenance import MaintenanceResult, refresh_snapshot
from imagesearch.index.reconcile import reconcile
from imagesearch.index.snapshot import SnapshotStore
from imagesearch.records import ImageRecord, image_id_for_key
from imagesearch.resources import (
    ATTR_REVISION,
    CATALOG_CONNECT_TIMEOUT_SECONDS,
    CATALOG_MAX_ATTEMPTS,
    CATALOG_READ_TIMEOUT_SECONDS,
    INDEX_REFRESH_OVERLAP_SECONDS,
    RECONCILE_INTERVAL_SECONDS,
    catalog_write_lead_seconds,
)
from tests.integration.catalog_support import Clock
from tests.integration.test_index_snapshot import (
    BUCKET,
    DIM,
    MODEL,
    PREFIX,
    TABLE,
    Spy,
    axis,
    build_first,
    delete,
    index_of,
    put,
    store_of,
    top,
)
from tests.integration.test_index_snapshot import aws as _aws
from tests.integration.test_index_snapshot import catalog as _catalog
from tests.integration.test_index_snapshot import clock as _clock
from tests.integration.test_index_snapshot import maintenance_env as _maintenance_env

# This module's moto table and bucket, clock and environment: test_index_snapshot's.
aws, catalog, clock, maintenance_env = _aws, _catalog, _clock, _maintenance_env

# The maintenance schedule: one run a minute.
RUN_EVERY = 60.0


def maintain(catalog: DynamoDBCatalog, s3: Any, clock: Clock, **options: Any) -> MaintenanceResult:
    """One maintenance run as the handler makes it (cheap check, reconciliation)."""
    store = store_of(s3, clock)
    return refresh_snapshot(
        index_of(catalog, clock, store),
        store,
        clock=clock,
        count_changes=catalog.count_changes,
        reconcile_with=catalog,
        reconcile_every=RECONCILE_INTERVAL_SECONDS,
        **options,
    )


def pointer(s3: Any) -> dict[str, Any]:
    body = s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}current.json")["Body"].read()
    result: dict[str, Any] = json.loads(body)
    return result


def snapshot_objects(s3: Any) -> list[str]:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}snapshots/")
    return sorted(item["Key"] for item in listed.get("Contents", []))


def vector_of(index: EmbeddedIndex, image_id: str) -> np.ndarray | None:
    return index.get_vectors([image_id]).get(image_id)


# -- the bound ----------------------------------------------------------------------


def test_the_catalog_client_commits_an_acknowledged_write_within_the_re_read_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    config = DynamoDBCatalog(TABLE).client.meta.config
    assert config.connect_timeout == CATALOG_CONNECT_TIMEOUT_SECONDS
    assert config.read_timeout == CATALOG_READ_TIMEOUT_SECONDS
    assert config.retries == {"mode": "standard", "total_max_attempts": CATALOG_MAX_ATTEMPTS}
    # 3 x (1 + 4) s of attempts, backoffs of at most 1 and 2 s, each raised by at most
    # 5 s by a retry-after header: 28 s, inside the 30 s every refresh re-reads.
    assert catalog_write_lead_seconds() == 28.0
    assert catalog_write_lead_seconds() < INDEX_REFRESH_OVERLAP_SECONDS


def test_a_write_committed_at_the_client_bound_after_its_stamp_is_re_read_by_the_window(
    aws: tuple[Any, Any], catalog: DynamoDBCatalog, clock: Clock
) -> None:
    put(catalog, 0, axis(0))
    build_first(catalog, aws[1], clock)
    warm = index_of(catalog, clock, store_of(aws[1], clock))
    assert warm.count() == 1
    # Given a write stamped now whose PutItem its client commits as late as it may
    stamped = Clock(clock.now + 5)
    writer = DynamoDBCatalog(TABLE, client=aws[0], clock=stamped)
    # (the warm instance refreshes every second until just before the commit)
    for _ in range(int(5 + catalog_write_lead_seconds())):
        clock.advance(1)
        assert warm.count() == 1
    late = put(writer, 1, axis(1))
    # Then the next refresh finds it: the window still covers its stamp
    clock.advance(1)
    assert top(warm, 1) == late


def test_a_write_committed_five_minutes_after_its_stamp_is_found_within_the_bound(
    aws: tuple[Any, Any], catalog: DynamoDBCatalog, clock: Clock
) -> None:
    s3 = aws[1]
    ids = [put(catalog, n, axis(n)) for n in range(4)]
    build_first(catalog, s3, clock)
    warm = index_of(catalog, clock, store_of(s3, clock))
    assert warm.count() == 4

    # Given three writes stamped now (an add, an overwrite along axis 6, a delete) whose
    # PutItems DynamoDB applies five minutes later (their writers' attempts timed out)
    stamped = Clock(clock.now)
    writer = DynamoDBCatalog(TABLE, client=aws[0], clock=stamped)
    # Meanwhile the instance refreshes, another image arrives and maintenance writes a
    # snapshot holding it (its watermark passes their stamp)
    other = put(catalog, 7, axis(7))
    for _ in range(5):
        clock.advance(RUN_EVERY)
        assert top(warm, 7) == other
        maintain(catalog, s3, clock, max_lag=RUN_EVERY)
    assert pointer(s3)["header"]["watermark_ms"] > (stamped.now + 30) * 1000
    added = put(writer, 5, axis(5))
    put(writer, 1, axis(6), sequencer="S2")
    delete(writer, 2)
    committed = clock.now

    # Then neither the warm instance nor a cold one sees them through the change log
    clock.advance(RUN_EVERY)
    maintain(catalog, s3, clock)
    cold = index_of(catalog, clock, store_of(s3, clock))
    for index in (warm, cold):
        assert added not in index.get_vectors([added])
        assert top(index, 6) != ids[1]
        assert ids[2] in index.get_vectors([ids[2]])

    # When maintenance runs every minute, until the reconciliation is due
    found_at = None
    while clock.now - committed <= RECONCILE_INTERVAL_SECONDS + 2 * RUN_EVERY:
        clock.advance(RUN_EVERY)
        result = maintain(catalog, s3, clock)
        if result.reconciliation is not None:
            assert sorted(result.reconciliation.reannounced) == sorted([added, ids[1], ids[2]])
            assert result.written and result.reason.startswith("reconciled: 3 rows differed")
            found_at = clock.now
            break
    # Then it comes within the bound: an interval plus one run after the commit
    assert found_at is not None
    assert found_at - committed <= RECONCILE_INTERVAL_SECONDS + RUN_EVERY
    # And the warm instance applies the three at its next refresh (re-announced)
    clock.advance(1)
    assert top(warm, 5) == added
    assert top(warm, 6) == ids[1]
    assert ids[2] not in warm.get_vectors([ids[2]])
    # And a cold instance loads them from the rebuilt snapshot
    cold = index_of(catalog, clock, store_of(s3, clock))
    assert cold.count() == 5  # 0, 1 (overwritten), 3, 5 and 7 (2 is deleted)
    assert top(cold, 5) == added and top(cold, 6) == ids[1] and cold.source == "snapshot"
    # And the next runs find nothing to repair
    clock.advance(RECONCILE_INTERVAL_SECONDS + 1)
    again = maintain(catalog, s3, clock)
    assert again.reconciliation is not None and again.reconciliation.differences == 0


# -- the reconciliation's cost and its care ---------------------------------------------


def test_a_reconciliation_without_differences_reads_no_vector_and_writes_no_snapshot(
    aws: tuple[Any, Any], clock: Clock
) -> None:
    s3 = aws[1]
    writer = DynamoDBCatalog(TABLE, client=aws[0], clock=clock)
    for n in range(3):
        put(writer, n, axis(n))
    delete(writer, 0)
    build_first(writer, s3, clock)
    first = pointer(s3)
    assert first["reconciled_ms"] == first["header"]["watermark_ms"]  # built by a Scan

    spy = Spy(aws[0])
    spied = DynamoDBCatalog(TABLE, client=spy, clock=clock)
    # Not due within the interval: no scan at all (this run writes a snapshot on the
    # previous one, which keeps its reconciliation time)
    clock.advance(RECONCILE_INTERVAL_SECONDS - 60)
    assert maintain(spied, s3, clock).reconciliation is None
    assert "scan" not in spy.calls
    first = pointer(s3)
    assert first["reconciled_ms"] < first["header"]["watermark_ms"]
    objects = snapshot_objects(s3)

    clock.advance(60)
    result = maintain(spied, s3, clock)
    assert result.reconciliation is not None
    assert (result.reconciliation.differences, result.reconciliation.scanned) == (0, 3)
    assert (result.reconciliation.snapshot_rows, result.reconciliation.catalog_rows) == (2, 2)
    assert not result.written and snapshot_objects(s3) == objects
    # The change log's GSI is scanned (no vector); nothing is read by key or written
    scans = [kw for call, kw in zip(spy.calls, spy.kwargs, strict=True) if call == "scan"]
    assert [kw.get("IndexName") for kw in scans] == ["changes_by_shard"]
    assert "vector" not in json.dumps(scans[0]["ExpressionAttributeNames"])
    assert not {"batch_get_item", "update_item", "put_item"} & set(spy.calls)
    # And the pointer records it, so the next one waits a whole interval
    assert pointer(s3)["reconciled_ms"] == int(clock.now * 1000)
    assert pointer(s3)["header"] == first["header"]
    clock.advance(RECONCILE_INTERVAL_SECONDS - 60)
    assert maintain(spied, s3, clock).reconciliation is None


def test_a_snapshot_row_whose_record_is_gone_is_dropped_by_the_rebuild(
    aws: tuple[Any, Any], catalog: DynamoDBCatalog, clock: Clock
) -> None:
    s3 = aws[1]
    ids = [put(catalog, n, axis(n)) for n in range(3)]
    build_first(catalog, s3, clock)
    # Given a record removed without a tombstone the change log showed
    aws[0].delete_item(TableName=TABLE, Key={"image_id": {"S": ids[0]}})
    clock.advance(RECONCILE_INTERVAL_SECONDS)
    result = maintain(catalog, s3, clock)
    assert result.reconciliation is not None
    assert (result.reconciliation.gone, result.reconciliation.reannounced) == ([ids[0]], [])
    assert result.written and result.count == 2
    cold = index_of(catalog, clock, store_of(s3, clock))
    assert ids[0] not in cold.get_vectors(ids) and cold.count() == 2


class _StaleView:
    """The catalog, with the change log's GSI answering an older revision of one record
    (an eventually consistent Scan), or failing."""

    def __init__(self, catalog: DynamoDBCatalog, stale: dict[str, str] | None = None) -> None:
        self._catalog = catalog
        self._stale = stale or {}
        self.fail = False

    def change_states(self) -> Iterator[Mapping[str, Mapping[str, Any]]]:
        if self.fail:
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "x"}}, "Scan")
        for item in self._catalog.change_states():
            image_id = item["image_id"]["S"]
            if image_id in self._stale:
                item = {**item, ATTR_REVISION: {"S": self._stale[image_id]}}
            yield item

    def record_states(self, image_ids: Iterable[str]) -> Mapping[str, Any]:
        return self._catalog.record_states(image_ids)

    def reannounce(self, image_id: str, revision: str | None) -> bool:
        return self._catalog.reannounce(image_id, revision)


def test_a_stale_view_of_the_change_log_repairs_nothing(
    aws: tuple[Any, Any], catalog: DynamoDBCatalog, clock: Clock
) -> None:
    ids = [put(catalog, n, axis(n)) for n in range(2)]
    revisions = {i: catalog.record_states([i])[i][ATTR_REVISION]["S"] for i in ids}
    clock.advance(600)
    result = reconcile(
        _StaleView(catalog, {ids[0]: "an-older-revision"}),
        revisions,
        model_id=MODEL,
        dimension=DIM,
        cutoff_ms=int(clock.now * 1000),
    )
    # The disagreement is read again by key, agrees, and is left alone
    assert (result.checked, result.differences) == (1, 0)
    assert catalog.record_states([ids[0]])[ids[0]]["changed_at"]["N"] != str(int(clock.now * 1000))


def test_a_record_rewritten_meanwhile_is_not_reannounced(
    aws: tuple[Any, Any], catalog: DynamoDBCatalog, clock: Clock
) -> None:
    image_id = put(catalog, 0, axis(0))
    old = catalog.record_states([image_id])[image_id][ATTR_REVISION]["S"]
    put(catalog, 0, axis(1), sequencer="S2")
    assert catalog.reannounce(image_id, old) is False  # its new write is in the log
    current = catalog.record_states([image_id])[image_id][ATTR_REVISION]["S"]
    clock.advance(10)
    assert catalog.reannounce(image_id, current) is True
    state = catalog.record_states([image_id])[image_id]
    assert state[ATTR_REVISION]["S"] == current  # same revision: readers fetch nothing
    assert state["changed_at"]["N"] == str(int(clock.now * 1000))
    stored = catalog.get(image_id, with_vector=True)
    assert stored is not None and stored.vector is not None
    assert stored.vector.tolist() == axis(1).tolist()


def test_a_failed_reconciliation_fails_the_run_and_leaves_the_snapshot(
    aws: tuple[Any, Any], catalog: DynamoDBCatalog, clock: Clock
) -> None:
    s3 = aws[1]
    put(catalog, 0, axis(0))
    build_first(catalog, s3, clock)
    before = pointer(s3)
    clock.advance(RECONCILE_INTERVAL_SECONDS)
    failing = _StaleView(catalog)
    failing.fail = True
    store = store_of(s3, clock)
    with pytest.raises(ClientError, match="InternalServerError"):
        refresh_snapshot(
            index_of(catalog, clock, store),
            store,
            clock=clock,
            count_changes=catalog.count_changes,
            reconcile_with=failing,
            reconcile_every=RECONCILE_INTERVAL_SECONDS,
        )
    assert pointer(s3) == before  # due again at the next run


# -- writes whose outcome was unknown ------------------------------------------------------


def test_an_attempt_landing_after_its_retry_cannot_put_its_older_stamp_back(
    aws: tuple[Any, Any], clock: Clock
) -> None:
    # Given the retry of an event (same ordering token) stamped at t + 40 s committed
    retry = DynamoDBCatalog(TABLE, client=aws[0], clock=Clock(clock.now + 40))
    image_id = put(retry, 0, axis(0))
    kept = retry.record_states([image_id])[image_id]
    # When its first attempt, stamped at t, reaches DynamoDB only now
    first = DynamoDBCatalog(TABLE, client=aws[0], clock=clock)
    key = "uploads/0.jpg"
    assert image_id == image_id_for_key(key)
    record = ImageRecord(
        image_id=image_id,
        key=key,
        status="indexed",
        content_type="image/jpeg",
        model_id=MODEL,
        dimension=DIM,
        sequencer="S1",
        vector=axis(0),
    )
    assert first.put(record) is False
    # Then the stored stamp stays the later one (the change log's readers saw that)
    assert first.record_states([image_id])[image_id] == kept
    # While a newer ordering token still wins whatever its stamp
    newer = dataclasses.replace(record, sequencer="S2", vector=axis(3))
    assert first.put(newer) is True


# -- the maintenance function ----------------------------------------------------------


def test_the_maintenance_handler_reconciles_hourly_and_reports_the_repair(
    aws: tuple[Any, Any], maintenance_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deployed path: every call it makes is one its role must allow (the IAM
    conformance check reads them), the GSI Scan and the UpdateItem included."""
    from imagesearch.handlers import maintenance
    from tests.integration.test_index_snapshot import _ShiftedTime

    later = _ShiftedTime()
    monkeypatch.setattr(maintenance, "time", later)
    writer = DynamoDBCatalog(TABLE, client=aws[0])
    ids = [put(writer, n, axis(n)) for n in range(3)]
    assert maintenance.handler({}, None)["written"]
    # Given an overwrite that DynamoDB applied, unseen, long before the snapshot was made
    # (its stamp is a day old), so no change-log reader after the snapshot looks for it
    header = SnapshotStore(BUCKET, PREFIX, client=aws[1]).read_header()
    assert header is not None
    stamped = Clock(header.watermark_ms / 1000 - 24 * 3600)
    put(DynamoDBCatalog(TABLE, client=aws[0], clock=stamped), 1, axis(5), sequencer="S2")

    quiet = maintenance.handler({}, None)  # not due yet
    assert "reconciled" not in quiet and not quiet["written"]
    later.offset += RECONCILE_INTERVAL_SECONDS + 1
    repaired = maintenance.handler({}, None)
    assert repaired["reconciled"] == {"differences": 1, "reannounced": 1, "scanned": 3}
    assert repaired["written"] and repaired["images"] == 3
    cold = EmbeddedIndex(
        writer,
        model_id=MODEL,
        dimension=DIM,
        snapshots=SnapshotStore(BUCKET, PREFIX, client=aws[1]),
    )
    assert top(cold, 5) == ids[1] and cold.source == "snapshot"
