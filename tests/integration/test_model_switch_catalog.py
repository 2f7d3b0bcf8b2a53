"""The model switch's catalog side and its orchestrator on moto DynamoDB and SQS: records
holding two models' vectors, each reader taking its own model's, the state item's
conditional writes, and the orchestrator's steps (start, re-embed messages bounded per
run, flip only when nothing lacks the target, removal after the grace period)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from imagesearch import resources as r
from imagesearch.catalog.dynamodb import DynamoDBCatalog
from imagesearch.events import parse_message_body
from imagesearch.index.embedded import EmbeddedIndex
from imagesearch.ports import QueryFilters
from imagesearch.queue import SqsReembed
from imagesearch.records import ImageRecord, image_id_for_key
from imagesearch.switch import ModelState, Space, SwitchOrchestrator
from tests.integration.catalog_support import Clock

OLD = Space(r.TITAN_MODEL_ID, 8)
NEW = Space(r.NOVA_MODEL_ID, 4)
TABLE = "switch-catalog-test"
BUCKET = "switch-bucket"


def unit(size: int, n: int) -> np.ndarray:
    vector = np.zeros(size, dtype=np.float32)
    vector[n % size] = 1.0
    return vector


def record(key: str, *, old: int | None = None, new: int | None = None) -> ImageRecord:
    """An indexed record with the old model's vector along axis ``old`` and/or the new
    one's along ``new`` (primary: the new model's when it has one, as ingest writes)."""
    primary, alt = (NEW, OLD) if new is not None else (OLD, None)
    vector = unit(NEW.dimension, new) if new is not None else unit(OLD.dimension, old or 0)
    return ImageRecord(
        image_id=image_id_for_key(key),
        key=key,
        status=r.STATUS_INDEXED,
        etag="e",
        content_type="image/png",
        model_id=primary.model_id,
        dimension=primary.dimension,
        sequencer="S1",
        vector=vector,
        alt_model_id=None if alt is None or old is None else alt.model_id,
        alt_dimension=None if alt is None or old is None else alt.dimension,
        alt_vector=None if alt is None or old is None else unit(OLD.dimension, old),
    )


@pytest.fixture
def env() -> Iterator[tuple[DynamoDBCatalog, Any, str, Clock]]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(**r.table_definition(TABLE))
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue_url = sqs.create_queue(QueueName="switch-ingest")["QueueUrl"]
        clock = Clock()
        yield DynamoDBCatalog(TABLE, client=dynamodb, clock=clock), sqs, queue_url, clock


def drain(sqs: Any, queue_url: str) -> list[tuple[str, bool]]:
    """(key, force) of every message waiting, removing them."""
    found = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        if not messages:
            return found
        for message in messages:
            (event,) = parse_message_body(message["Body"])
            assert event.backfill
            found.append((event.key, event.force))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def orchestrator(
    catalog: DynamoDBCatalog, sqs: Any, queue_url: str, clock: Clock, per_run: int = 1000
) -> SwitchOrchestrator:
    return SwitchOrchestrator(
        catalog,
        deployed=NEW,
        previous=OLD,
        reembed=SqsReembed(queue_url, BUCKET, client=sqs),
        clock=clock,
        per_run=per_run,
        grace_seconds=300,
    )


def test_a_record_with_two_vectors_is_found_by_each_models_reader(env) -> None:
    catalog, _, _, clock = env
    catalog.put(record("uploads/both.png", old=1, new=2))
    catalog.put(record("uploads/old-only.png", old=3))

    stored = catalog.get(image_id_for_key("uploads/both.png"), with_vector=True)
    assert stored is not None
    np.testing.assert_array_equal(stored.vector_for(NEW.model_id, NEW.dimension), unit(4, 2))
    np.testing.assert_array_equal(stored.vector_for(OLD.model_id, OLD.dimension), unit(8, 1))
    assert stored.vector_for(NEW.model_id, 8) is None

    old_index = EmbeddedIndex(catalog, model_id=OLD.model_id, dimension=OLD.dimension, clock=clock)
    new_index = EmbeddedIndex(catalog, model_id=NEW.model_id, dimension=NEW.dimension, clock=clock)
    assert old_index.count() == 2 and new_index.count() == 1
    [hit] = old_index.query(unit(8, 1), 1, QueryFilters())
    assert hit.image_id == image_id_for_key("uploads/both.png")
    assert hit.score == pytest.approx(1.0)
    # Reindex (S3 Vectors) reads the same way
    entries = {e.key: e.vector for e in catalog.indexed_vectors(model_id=OLD.model_id, dimension=8)}
    np.testing.assert_array_equal(entries["uploads/both.png"], unit(8, 1))


def test_an_old_model_reader_keeps_a_record_re_embedded_during_the_switch(env) -> None:
    catalog, _, _, clock = env
    catalog.put(record("uploads/a.png", old=1))
    old_index = EmbeddedIndex(catalog, model_id=OLD.model_id, dimension=OLD.dimension, clock=clock)
    assert old_index.count() == 1
    # When the switch re-embeds it (primary: the new model, alt: the old vector kept)
    clock.advance(2)
    catalog.put(record("uploads/a.png", old=5, new=2))
    clock.advance(2)
    # Then the old model's instance follows the change log and still finds it, by the
    # old model's vector
    [hit] = old_index.query(unit(8, 5), 1, QueryFilters())
    assert hit.image_id == image_id_for_key("uploads/a.png") and hit.score == pytest.approx(1.0)


def test_state_item_writes_are_conditional_on_the_version_read(env) -> None:
    catalog, _, _, clock = env
    assert catalog.model_state() is None
    first = ModelState(phase="switching", serving=OLD, target=NEW, version=1)
    assert catalog.put_model_state(first, expected_version=None)
    # A second writer that also saw no state loses
    assert not catalog.put_model_state(first, expected_version=None)
    assert catalog.model_state() == first
    second = ModelState(phase="switching", serving=OLD, target=NEW, covered=3, total=5, version=2)
    assert not catalog.put_model_state(second, expected_version=0)
    assert catalog.put_model_state(second, expected_version=1)
    assert catalog.model_state() == second
    # The state item is in no listing, count or change log
    assert catalog.counts() == {"indexed": 0, "rejected": 0, "failed": 0}
    assert list(catalog.changes(int((clock() - 60) * 1000), int((clock() + 60) * 1000))) == []


def test_a_switch_from_start_to_removal(env) -> None:
    catalog, sqs, queue_url, clock = env
    keys = [f"uploads/{n}.png" for n in range(5)]
    for n, key in enumerate(keys):
        catalog.put(record(key, old=n))
    run = orchestrator(catalog, sqs, queue_url, clock, per_run=3)

    # First run: the switch starts, search keeps the old model
    step = run.step()
    assert step.action == "switch started"
    assert (step.state.phase, step.state.serving, step.state.target) == ("switching", OLD, NEW)
    assert drain(sqs, queue_url) == []

    # Next runs: forced re-embed messages, at most per_run each, continuing where the
    # last run stopped
    step = run.step()
    assert (step.action, step.enqueued, step.state.covered, step.state.total) == (
        "re-embedding",
        3,
        0,
        5,
    )
    first = drain(sqs, queue_url)
    step = run.step()
    second = drain(sqs, queue_url)
    assert step.enqueued == 2 and step.state.cursor is None
    assert sorted(k for k, _ in first + second) == sorted(keys)
    assert all(force for _, force in first + second)

    # Ingest re-embeds all but one; the next pass sends only that one and does not flip
    for n, key in enumerate(keys[:4]):
        catalog.put(record(key, old=n, new=n))
    step = run.step()
    assert (step.action, step.state.covered, step.state.total) == ("re-embedding", 4, 5)
    assert drain(sqs, queue_url) == [(keys[4], True)]

    # When the last one is re-embedded, a clean pass flips in one conditional write
    catalog.put(record(keys[4], old=4, new=4))
    step = run.step()
    assert step.action == "flipped"
    assert (step.state.phase, step.state.serving, step.state.previous) == ("removing", NEW, OLD)
    assert (step.state.covered, step.state.total) == (5, 5)

    # The previous vectors stay for the grace period (instances change over meanwhile)
    clock.advance(60)
    assert run.step().action == "waiting for search instances to change over"
    assert catalog.get(image_id_for_key(keys[0]), with_vector=True).alt_vector is not None

    # Then they are removed, and the state says the switch is complete
    clock.advance(300)
    step = run.step()
    assert (step.action, step.removed, step.state.phase) == (
        "previous vectors removed",
        5,
        "serving",
    )
    for key in keys:
        stored = catalog.get(image_id_for_key(key), with_vector=True)
        assert stored is not None and stored.alt_vector is None and stored.alt_model_id is None
        assert stored.vector_for(NEW.model_id, NEW.dimension) is not None
    assert run.step().action == "switch complete"
    assert drain(sqs, queue_url) == []


def test_no_new_pass_while_the_queue_still_holds_a_runs_worth(env) -> None:
    catalog, sqs, queue_url, clock = env
    for n in range(4):
        catalog.put(record(f"uploads/{n}.png", old=n))
    run = orchestrator(catalog, sqs, queue_url, clock, per_run=4)
    run.step()  # started
    assert run.step().enqueued == 4  # one whole pass, nothing processed yet
    # The messages still wait: a new pass would send them all again
    step = run.step()
    assert (step.action, step.enqueued) == ("waiting for the ingest queue", 0)
    assert len(drain(sqs, queue_url)) == 4
    assert run.step().enqueued == 4  # the queue is drained: a new pass


def test_a_concurrent_run_loses_its_write_and_changes_nothing(env) -> None:
    catalog, sqs, queue_url, clock = env
    catalog.put(record("uploads/a.png", old=1, new=1))
    run = orchestrator(catalog, sqs, queue_url, clock)
    run.step()  # started
    stale = catalog.model_state()
    assert stale is not None
    # Another run flips meanwhile
    assert run.step().action == "flipped"
    # A run that read the old state writes nothing over the flip
    assert not catalog.put_model_state(stale, expected_version=stale.version)
    assert catalog.model_state().phase == "removing"


def test_an_interrupted_switch_resumes_from_its_state(env) -> None:
    catalog, sqs, queue_url, clock = env
    keys = [f"uploads/{n}.png" for n in range(4)]
    for n, key in enumerate(keys):
        catalog.put(record(key, old=n))
    orchestrator(catalog, sqs, queue_url, clock, per_run=2).step()
    assert orchestrator(catalog, sqs, queue_url, clock, per_run=2).step().enqueued == 2
    first = drain(sqs, queue_url)  # ingest takes them (without re-embedding them yet)
    # The maintenance function is replaced (a deploy, a crash): a new orchestrator
    # continues from the cursor in the state item, not from the start
    resumed = orchestrator(catalog, sqs, queue_url, clock, per_run=2).step()
    assert resumed.enqueued == 2
    assert sorted(k for k, _ in first + drain(sqs, queue_url)) == sorted(keys)


def test_a_malformed_state_item_is_an_error_not_a_guess(env) -> None:
    catalog, *_ = env
    catalog.client.put_item(
        TableName=TABLE,
        Item={"image_id": {"S": r.MODEL_STATE_ID}, "phase": {"S": "dancing"}},
    )
    with pytest.raises(ValueError, match="malformed"):
        catalog.model_state()


def test_reembed_messages_refused_by_sqs_raise(env) -> None:
    queue_url = env[2]

    class Refusing:
        def send_message_batch(self, **kwargs: Any) -> dict[str, Any]:
            return {"Failed": [{"Id": "0", "Code": "InternalError", "SenderFault": False}]}

    from imagesearch.queue import QueueSendFailed

    with pytest.raises(QueueSendFailed, match="InternalError"):
        SqsReembed(queue_url, BUCKET, client=Refusing()).send(["uploads/x.png"])


def test_every_run_reads_the_queue_depth_before_sending_more(env) -> None:
    catalog, sqs, queue_url, clock = env
    keys = [f"uploads/{n}.png" for n in range(10)]
    for n, key in enumerate(keys):
        catalog.put(record(key, old=n))
    run = orchestrator(catalog, sqs, queue_url, clock, per_run=4)
    run.step()  # started
    assert run.step().enqueued == 4  # a pass begins; its cursor is mid-way
    # Nothing processed: later runs of the same pass send nothing (3 runs: still 4)
    for _ in range(3):
        step = run.step()
        assert (step.action, step.enqueued) == ("waiting for the ingest queue", 0)
    # Messages ingest has received but not finished (in flight) count too
    received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=3)["Messages"]
    assert len(received) == 3
    assert run.step().enqueued == 0
    # Once three are done, the run tops the queue up to per_run
    for message in received:
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert run.step().enqueued == 3
    assert len(drain(sqs, queue_url)) == 4


def test_a_record_written_with_only_the_old_vector_around_the_flip_is_re_embedded(env) -> None:
    catalog, sqs, queue_url, clock = env
    catalog.put(record("uploads/a.png", old=1, new=1))
    run = orchestrator(catalog, sqs, queue_url, clock)
    run.step()  # started
    assert run.step().action == "flipped"
    # Given a record written with the old model's vector alone between the flip's check
    # (an eventually consistent index) and the flip
    late = "uploads/late.png"
    catalog.put(record(late, old=2))
    # When maintenance runs after the grace period, a sweep re-embeds it
    clock.advance(301)
    step = run.step()
    assert (step.action, step.enqueued) == ("re-embedding after the flip", 1)
    assert step.state.lacking == 1
    assert drain(sqs, queue_url) == [(late, True)]
    # and the switch does not complete while it still lacks the serving vector
    step = run.step()
    assert step.state.phase == "removing"
    drain(sqs, queue_url)
    catalog.put(record(late, new=2))  # ingest re-embedded it
    step = run.step()
    assert (step.action, step.state.phase, step.state.lacking) == (
        "previous vectors removed",
        "serving",
        0,
    )


def test_given_up_records_no_longer_hold_the_flip_and_end_failed_or_rejected(env) -> None:
    from dataclasses import replace

    from imagesearch.switch import failed_prefix, refused_prefix

    catalog, sqs, queue_url, clock = env
    catalog.put(record("uploads/ok.png", old=1, new=1))
    catalog.put(replace(record("uploads/f.png", old=2), reason=f"{failed_prefix(NEW)}boom"))
    catalog.put(replace(record("uploads/r.png", old=3), reason=f"{refused_prefix(NEW)}no"))
    run = orchestrator(catalog, sqs, queue_url, clock)
    run.step()  # started
    step = run.step()
    assert (step.action, step.state.given_up) == ("flipped", 2)
    assert drain(sqs, queue_url) == []
    clock.advance(301)
    step = run.step()
    assert step.state.settled == 2
    failed = catalog.get(image_id_for_key("uploads/f.png"))
    rejected = catalog.get(image_id_for_key("uploads/r.png"))
    assert failed is not None and (failed.status, failed.reason) == (r.STATUS_FAILED, "boom")
    assert rejected is not None and (rejected.status, rejected.reason) == (r.STATUS_REJECTED, "no")
    assert failed.model_id == NEW.model_id
    assert run.step().state.phase == "serving"


def test_too_many_given_up_records_halt_the_switch_visibly(env) -> None:
    from dataclasses import replace

    from imagesearch.switch import describe, failed_prefix, max_given_up

    catalog, sqs, queue_url, clock = env
    # More given up than a few images' own faults: the model's or the deployment's
    count = max_given_up(0) + 1
    for n in range(count):
        given_up = replace(record(f"uploads/{n}.png", old=n), reason=f"{failed_prefix(NEW)}x")
        catalog.put(given_up)
    run = orchestrator(catalog, sqs, queue_url, clock)
    run.step()  # started
    for _ in range(2):
        step = run.step()
        assert step.action == "halted: too many records given up"
        assert (step.state.phase, step.state.serving) == ("switching", OLD)
    assert "halted" in describe(step.state)
    assert drain(sqs, queue_url) == []


def test_settling_a_given_up_record_never_overwrites_a_newer_write(env) -> None:
    from dataclasses import replace

    from imagesearch.switch import refused_prefix

    catalog, *_ = env
    key = "uploads/r.png"
    catalog.put(replace(record(key, old=3), reason=f"{refused_prefix(NEW)}no"))
    image_id = image_id_for_key(key)
    read = catalog.get(image_id)
    assert read is not None
    # A forced backfill re-embeds it meanwhile (same ordering token: a backfill's)
    catalog.put(record(key, old=3, new=3))
    # The settle of what was read fails instead of overwriting the re-embedded record
    assert not catalog.settle_given_up(image_id, NEW)
    stored = catalog.get(image_id)
    assert stored is not None and (stored.status, stored.reason) == (r.STATUS_INDEXED, None)
    # A record no longer given up for this space is left alone too
    assert not catalog.settle_given_up(image_id, OLD)


def test_reasons_say_which_model_gave_a_record_up_and_what_it_becomes() -> None:
    from imagesearch.switch import (
        failed_prefix,
        max_given_up,
        reembed_failures,
        refused_prefix,
        retrying_prefix,
        settled_status,
    )

    assert settled_status(f"{refused_prefix(NEW)}too big", NEW) == (r.STATUS_REJECTED, "too big")
    assert settled_status(f"{failed_prefix(NEW)}odd", NEW) == (r.STATUS_FAILED, "odd")
    # Failures counted for another switch's target start again at zero
    assert reembed_failures(f"{retrying_prefix(NEW)}x", 4, NEW) == 4
    assert reembed_failures(f"{retrying_prefix(OLD)}x", 4, NEW) == 0
    assert reembed_failures(None, 4, NEW) == 0
    # A few images' own faults, or 1% of a large catalog
    assert max_given_up(0) == r.SWITCH_MAX_GIVEN_UP
    assert max_given_up(100_000) == 1000
