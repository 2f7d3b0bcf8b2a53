"""Local mode's saved state (issue 11.1): change tracking in front of moto, atomic
snapshot files, one local mode per state folder, unreadable snapshots set aside."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from imagesearch import resources as r
from imagesearch.local.state import (
    ACCOUNT_ID,
    SNAPSHOT_NAME,
    StateError,
    StateStore,
    WriteGate,
)


def fake_moto(body: bytes = b"{}") -> Any:
    calls: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        calls.append(environ["REQUEST_METHOD"])
        start_response("200 OK", [])
        return [body]

    app.calls = calls  # type: ignore[attr-defined]
    return app


def request(gate: WriteGate, method: str, target: str = "") -> bytes:
    environ = {"REQUEST_METHOD": method}
    if target:
        environ["HTTP_X_AMZ_TARGET"] = target
    return b"".join(gate(environ, lambda status, headers: None))


@pytest.mark.parametrize(
    ("method", "target", "changes"),
    [
        ("GET", "", False),  # S3 reads
        ("HEAD", "", False),
        ("PUT", "", True),  # S3 writes
        ("DELETE", "", True),
        ("POST", "DynamoDB_20120810.Query", False),
        ("POST", "DynamoDB_20120810.GetItem", False),
        ("POST", "DynamoDB_20120810.PutItem", True),
        ("POST", "DynamoDB_20120810.UpdateItem", True),
        ("POST", "AmazonSQS.GetQueueAttributes", False),
        ("POST", "AmazonSQS.SendMessageBatch", True),
        ("POST", "AmazonSQS.DeleteMessageBatch", True),
    ],
)
def test_writes_mark_the_state_changed_and_reads_do_not(
    method: str, target: str, changes: bool
) -> None:
    gate = WriteGate(fake_moto())

    request(gate, method, target)

    assert gate.take_changed() is changes
    assert gate.take_changed() is False  # taken once


def test_a_receive_changes_the_state_only_when_it_hands_out_messages() -> None:
    empty = WriteGate(fake_moto(b"{}"))
    some = WriteGate(fake_moto(b'{"Messages": [{"MessageId": "m"}]}'))

    assert request(empty, "POST", "AmazonSQS.ReceiveMessage") == b"{}"
    assert request(some, "POST", "AmazonSQS.ReceiveMessage").startswith(b'{"Messages"')

    assert empty.take_changed() is False
    assert some.take_changed() is True


def test_a_snapshot_waits_for_requests_inside_moto_and_holds_new_ones() -> None:
    # Given a request inside moto that waits until told to finish
    inside, release, finished = threading.Event(), threading.Event(), []

    def slow_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        inside.set()
        release.wait(10)
        finished.append(environ["REQUEST_METHOD"])
        return [b""]

    gate = WriteGate(slow_app)
    worker = threading.Thread(target=request, args=(gate, "PUT"))
    worker.start()
    assert inside.wait(10)
    seen: list[list[str]] = []

    # When a snapshot asks for moto to itself
    def snapshot() -> None:
        with gate.lock.exclusive():
            seen.append(list(finished))

    taker = threading.Thread(target=snapshot)
    taker.start()
    taker.join(0.2)
    assert taker.is_alive()  # still waiting for the request
    release.set()
    worker.join(10)
    taker.join(10)

    # Then it ran only after the request had finished
    assert seen == [["PUT"]]


def test_snapshots_replace_the_file_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StateStore(tmp_path / "state").open()
    try:
        store.write(b"first")

        # A write that fails half-way (disk full) leaves the previous file as it was
        def failing_fsync(fd: int) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fsync", failing_fsync)
        with pytest.raises(OSError, match="No space left"):
            store.write(b"second, never complete")
        monkeypatch.undo()

        assert (tmp_path / "state" / SNAPSHOT_NAME).read_bytes() == b"first"
        assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["lock", SNAPSHOT_NAME]
    finally:
        store.close()


def test_one_local_mode_per_state_folder(tmp_path: Path) -> None:
    first = StateStore(tmp_path).open()
    try:
        with pytest.raises(StateError, match="in use by another imagesearch local"):
            StateStore(tmp_path).open()
    finally:
        first.close()
    StateStore(tmp_path).open().close()  # free again once the first one closed


def test_a_state_folder_that_cannot_be_made_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")

    with pytest.raises(StateError, match=r"cannot use .* as the state folder.*--state-dir"):
        StateStore(blocker / "state").open()


def test_an_unreadable_snapshot_is_set_aside_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / SNAPSHOT_NAME).write_bytes(b"not a pickle at all")
    store = StateStore(tmp_path)

    assert store.load() is None

    assert (tmp_path / f"{SNAPSHOT_NAME}.unreadable").read_bytes() == b"not a pickle at all"
    assert not (tmp_path / SNAPSHOT_NAME).exists()
    assert "could not read the saved state" in caplog.text


def test_a_save_cut_short_by_a_kill_is_cleaned_up_at_the_next_start(tmp_path: Path) -> None:
    (tmp_path / f".{SNAPSHOT_NAME}.4242.tmp").write_bytes(b"half a snap")
    (tmp_path / SNAPSHOT_NAME).write_bytes(b"the last complete one")

    store = StateStore(tmp_path).open()
    store.close()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["lock", SNAPSHOT_NAME]
    assert (tmp_path / SNAPSHOT_NAME).read_bytes() == b"the last complete one"


def test_a_saved_table_comes_back_whole_and_keeps_moto_s_item_size_limit(
    tmp_path: Path,
) -> None:
    from moto.backends import get_backend
    from moto.dynamodb.models.dynamo_type import LimitedSizeDict

    region = "us-east-1"
    item = {
        r.ATTR_IMAGE_ID: {"S": "i1"},
        r.ATTR_KEY: {"S": "uploads/a.jpg"},
        r.ATTR_VECTOR: {"B": bytes(range(256)) * 4},
        "dimension": {"N": "256"},
        "tags": {"L": [{"S": "x"}, {"M": {"n": {"N": "1"}}}]},
    }
    with mock_aws():
        client = boto3.client("dynamodb", region_name=region)
        client.create_table(**r.table_definition("t"))
        client.put_item(TableName="t", Item=item)
        store = StateStore(tmp_path).open()
        try:
            store.write(store.capture(region=region, shape="s", extra={}))
            # Given the item gone from moto after the save
            client.delete_item(TableName="t", Key={r.ATTR_IMAGE_ID: {"S": "i1"}})

            # When the saved state is put back
            snapshot = store.load()
            assert snapshot is not None
            StateStore.install(snapshot, tables_and_queues=True)
        finally:
            store.close()

        # Then the item reads back as it was written
        assert client.get_item(TableName="t", Key={r.ATTR_IMAGE_ID: {"S": "i1"}})["Item"] == item
        # ... held as moto holds items, so its 400 KB limit still applies to updates
        table = get_backend("dynamodb")[ACCOUNT_ID][region].get_table("t")
        (stored,) = table.items.values()
        assert type(stored.attrs) is LimitedSizeDict
        with pytest.raises(ClientError, match="Item size"):
            client.update_item(
                TableName="t",
                Key={r.ATTR_IMAGE_ID: {"S": "i1"}},
                UpdateExpression="SET big = :big",
                ExpressionAttributeValues={":big": {"B": b"x" * 420_000}},
            )
