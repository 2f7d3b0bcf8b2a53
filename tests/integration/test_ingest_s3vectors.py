"""The real ingest handler on the scale tier: moto for S3, SQS and DynamoDB, the S3
Vectors emulator for the index (reached through ``AWS_ENDPOINT_URL_S3VECTORS``, as in
local mode). Out-of-order events, deletes and concurrent writers end with the index
equal to the catalog."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from imagesearch import resources as r
from imagesearch.index.s3vectors import S3VectorsIndex
from imagesearch.local.s3vectors_emulator import S3VectorsEmulator, S3VectorsService
from imagesearch.ports import QueryFilters
from imagesearch.records import image_id_for_key
from tests.integration.test_ingest_ordering import BLUE, GREEN, QUEUE_ARN, RED, expected_vector
from tests.support.lambda_runtime import FakeLambdaContext, sqs_event
from tests.support.s3events import s3_event_body, sqs_message
from tests.support.s3vectors import FakeTime, fresh_index, waits_on

DIM = r.CONTEXT_DEFAULTS["embeddingDimension"]
# The emulator's clock, moved by the retries' waits (botocore's and the adapter's).
TIME = FakeTime()


@pytest.fixture(scope="module")
def emulator() -> Iterator[S3VectorsEmulator]:
    with S3VectorsEmulator(service=S3VectorsService(clock=TIME)) as running:
        yield running


@pytest.fixture
def index(emulator: S3VectorsEmulator, aws: Any, monkeypatch: pytest.MonkeyPatch) -> S3VectorsIndex:
    waits_on(TIME, monkeypatch)
    client, bucket, name = fresh_index(emulator, DIM)
    monkeypatch.setenv(r.ENV_VECTOR_STORE, "s3vectors")
    monkeypatch.setenv(r.ENV_VECTOR_BUCKET, bucket)
    monkeypatch.setenv(r.ENV_VECTOR_INDEX, name)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3VECTORS", emulator.endpoint_url)
    return S3VectorsIndex(client, bucket=bucket, index=name, dimension=DIM)


@pytest.fixture
def deliver(aws: Any, index: S3VectorsIndex, ingest_handler: Any) -> Any:
    aws.s3.put_bucket_notification_configuration(Bucket=aws.bucket, NotificationConfiguration={})

    def _deliver(*bodies: str) -> dict[str, Any]:
        messages = [sqs_message(body, f"m-{i}") for i, body in enumerate(bodies)]
        result: dict[str, Any] = ingest_handler(sqs_event(messages, QUEUE_ARN), FakeLambdaContext())
        return result

    return _deliver


def created(aws: Any, key: str, sequencer: str) -> str:
    return s3_event_body("created", aws.bucket, key, sequencer=sequencer)


def removed(aws: Any, key: str, sequencer: str) -> str:
    return s3_event_body("removed", aws.bucket, key, sequencer=sequencer)


def assert_index_equals_catalog(aws: Any, index: S3VectorsIndex, *keys: str) -> None:
    ids = [image_id_for_key(key) for key in keys]
    stored = index.get_vectors(ids)
    for key, image_id in zip(keys, ids, strict=True):
        record = aws.record(key)
        if record is None or record.status != "indexed":
            assert image_id not in stored, key
        else:
            assert record.vector is not None
            np.testing.assert_allclose(stored[image_id], record.vector, atol=1e-6)


def test_an_upload_is_searchable_with_its_key(aws, index, deliver, fake_bedrock):
    key = aws.upload("cats/red.jpg", RED)
    assert deliver(created(aws, key, "0055AED6DCD9028C0A"))["batchItemFailures"] == []
    image_id = image_id_for_key(key)
    np.testing.assert_allclose(
        index.get_vectors([image_id])[image_id], expected_vector(RED), atol=1e-6
    )
    (hit,) = index.query(expected_vector(RED), 5, QueryFilters(prefix="uploads/cats/"))
    assert (hit.image_id, round(hit.score, 4)) == (image_id, 1.0)
    assert index.query(expected_vector(RED), 5, QueryFilters(prefix="uploads/dogs/")) == []


def test_an_older_event_never_leaves_its_vector(aws, index, deliver, fake_bedrock):
    key = aws.upload("shoe.jpg", RED)
    aws.upload("shoe.jpg", BLUE)
    deliver(created(aws, key, "0055AED6DCD9028C0B"))
    deliver(created(aws, key, "0055AED6DCD9028C0A"))
    image_id = image_id_for_key(key)
    np.testing.assert_allclose(
        index.get_vectors([image_id])[image_id], expected_vector(BLUE), atol=1e-6
    )
    assert_index_equals_catalog(aws, index, key)


def test_a_deleted_image_never_leaves_a_vector(aws, index, deliver, fake_bedrock):
    key = aws.upload("gone.jpg", GREEN)
    deliver(created(aws, key, "0055AED6DCD9028C0A"))
    aws.s3.delete_object(Bucket=aws.bucket, Key=key)
    deliver(removed(aws, key, "0055AED6DCD9028C0B"))
    assert index.get_vectors([image_id_for_key(key)]) == {}
    # a stale create delivered after the delete stays deleted
    deliver(created(aws, key, "0055AED6DCD9028C0A"))
    assert index.get_vectors([image_id_for_key(key)]) == {}
    assert index.count() == 0


def test_one_batch_with_creates_overwrites_and_deletes(aws, index, deliver, fake_bedrock):
    keep, drop = aws.upload("a/keep.jpg", RED), aws.upload("a/drop.jpg", BLUE)
    aws.s3.delete_object(Bucket=aws.bucket, Key=drop)
    result = deliver(
        created(aws, keep, "0055AED6DCD9028C0A"),
        created(aws, drop, "0055AED6DCD9028C0A"),
        removed(aws, drop, "0055AED6DCD9028C0B"),
    )
    assert result["batchItemFailures"] == []
    assert index.count() == 1
    assert_index_equals_catalog(aws, index, keep, drop)


def test_concurrent_writers_end_with_the_catalog_state(aws, index, deliver, fake_bedrock):
    # Two "functions" deliver conflicting events for the same keys at the same time.
    keys = [aws.upload(f"race/{n}.jpg", RED if n % 2 else BLUE) for n in range(6)]
    for key in keys[:3]:
        aws.s3.delete_object(Bucket=aws.bucket, Key=key)
    first = [created(aws, key, "0055AED6DCD9028C0A") for key in keys]
    second = [removed(aws, key, "0055AED6DCD9028C0B") for key in keys[:3]] + [
        created(aws, key, "0055AED6DCD9028C0C") for key in keys[3:]
    ]
    errors: list[BaseException] = []

    def run(bodies: list[str]) -> None:
        try:
            assert deliver(*bodies)["batchItemFailures"] == []
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(bodies,)) for bodies in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert_index_equals_catalog(aws, index, *keys)
    assert index.count() == 3


def test_an_unreachable_index_fails_the_message_for_a_retry(
    aws, index, deliver, fake_bedrock, monkeypatch
):
    monkeypatch.setenv(r.ENV_VECTOR_INDEX, "no-such-index")
    key = aws.upload("later.jpg", RED)
    result = deliver(created(aws, key, "0055AED6DCD9028C0A"))
    assert result["batchItemFailures"] == [{"itemIdentifier": "m-0"}]
    assert aws.record(key).status == "indexed"  # the catalog is ahead; the retry syncs


def index_calls(emulator: S3VectorsEmulator, since: int) -> dict[str, int]:
    calls = emulator.service.calls[since:]
    return {name: calls.count(name) for name in ("PutVectors", "DeleteVectors")}


def test_a_message_batch_of_ten_images_is_one_put_vectors_call(
    aws, index, deliver, fake_bedrock, emulator
):
    # Given ten uploads, each announced by its own message of one batch
    keys = [aws.upload(f"ten/{n}.jpg", (RED, BLUE, GREEN)[n % 3]) for n in range(10)]
    before = len(emulator.service.calls)
    # When the batch is delivered
    result = deliver(*(created(aws, key, f"0055AED6DCD9028C{n:02d}") for n, key in enumerate(keys)))
    # Then every message succeeded, and one PutVectors call carried all ten vectors
    assert result["batchItemFailures"] == []
    assert index_calls(emulator, before) == {"PutVectors": 1, "DeleteVectors": 0}
    assert index.count() == 10
    assert_index_equals_catalog(aws, index, *keys)


def test_a_batch_of_creates_and_deletes_is_one_put_and_one_delete(
    aws, index, deliver, fake_bedrock, emulator
):
    # Given four indexed images that are then deleted, and six new uploads
    old = [aws.upload(f"mixed/old-{n}.jpg", RED) for n in range(4)]
    assert deliver(*(created(aws, k, "0055AED6DCD9028C0A") for k in old))["batchItemFailures"] == []
    for key in old:
        aws.s3.delete_object(Bucket=aws.bucket, Key=key)
    new = [aws.upload(f"mixed/new-{n}.jpg", BLUE) for n in range(6)]
    before = len(emulator.service.calls)
    # When one batch brings the four deletes and the six creates, interleaved
    bodies = [removed(aws, k, "0055AED6DCD9028C0B") for k in old]
    bodies += [created(aws, k, "0055AED6DCD9028C0B") for k in new]
    result = deliver(*bodies[::2], *bodies[1::2])
    # Then one PutVectors wrote the six and one DeleteVectors removed the four
    assert result["batchItemFailures"] == []
    assert index_calls(emulator, before) == {"PutVectors": 1, "DeleteVectors": 1}
    assert index.count() == 6
    assert_index_equals_catalog(aws, index, *old, *new)


def test_a_failed_vector_sync_fails_only_the_messages_it_concerns_and_the_retry_syncs(
    aws, index, deliver, fake_bedrock, emulator, monkeypatch
):
    from imagesearch.local.s3vectors_emulator import ServiceError

    # Given an image whose newer state is already applied (its old event is stale)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the SDK's own retries are not the point
    stale = aws.upload("sync/stale.jpg", GREEN)
    assert deliver(created(aws, stale, "0055AED6DCD9028C0B"))["batchItemFailures"] == []
    keys = [aws.upload(f"sync/{n}.jpg", RED) for n in range(3)]

    # and an index that throttles every PutVectors
    def throttled(params: dict[str, Any]) -> dict[str, Any]:
        raise ServiceError("TooManyRequestsException", "slow down", 429)

    bodies = [created(aws, key, "0055AED6DCD9028C0A") for key in keys]
    with monkeypatch.context() as patch:
        patch.setattr(emulator.service, "_put_vectors", throttled)
        # When one batch brings the three uploads and the stale event
        result = deliver(*bodies, created(aws, stale, "0055AED6DCD9028C0A"))
    # Then the three messages whose images could not be synced fail (SQS retries them),
    # the stale one, which wrote nothing, does not
    assert result["batchItemFailures"] == [{"itemIdentifier": f"m-{n}"} for n in range(3)]
    # And the records are kept: the catalog is ahead of the index, not lost
    assert [aws.record(key).status for key in keys] == ["indexed"] * 3
    assert index.get_vectors([image_id_for_key(k) for k in keys]) == {}
    # When the index recovers and the queue redelivers the three
    calls = fake_bedrock.calls
    assert deliver(*bodies)["batchItemFailures"] == []
    # Then they are synced from the records as they are, without another model call
    assert fake_bedrock.calls == calls
    assert_index_equals_catalog(aws, index, *keys, stale)
    assert index.count() == 4


def test_ingest_under_the_index_write_limit_loses_nothing(
    aws, index, deliver, fake_bedrock, emulator
):
    # Given an index that takes one write request a second, and one used this instant
    first = aws.upload("busy/first.jpg", RED)
    keys = [aws.upload(f"busy/{n}.jpg", (RED, BLUE, GREEN)[n % 3]) for n in range(10)]
    emulator.service.limit_writes(vectors_per_second=None, requests_per_second=1)
    refused = len(emulator.service.refused)
    waited = len(TIME.sleeps)
    try:
        assert deliver(created(aws, first, "0055AED6DCD9028C0A"))["batchItemFailures"] == []
        # When a batch of ten arrives in the same instant
        result = deliver(*(created(aws, k, f"0055AED6DCD9028C{n:02d}") for n, k in enumerate(keys)))
    finally:
        emulator.service.limit_writes(None, None)
    # Then its PutVectors was throttled, retried after waits, and every image synced
    assert emulator.service.refused[refused:]
    assert set(emulator.service.refused[refused:]) == {("PutVectors", "TooManyRequestsException")}
    assert sum(TIME.sleeps[waited:]) >= 1.0
    assert result["batchItemFailures"] == []
    assert_index_equals_catalog(aws, index, first, *keys)
    assert index.count() == 11


def test_local_modes_worker_syncs_a_received_batch_with_one_put_vectors_call(
    aws, index, deliver, ingest_handler, fake_bedrock, emulator
):
    from imagesearch.catalog.dynamodb import DynamoDBCatalog
    from imagesearch.local.moto_env import LocalResources
    from imagesearch.local.worker import IngestWorker

    # Given eight uploads whose notifications wait in the ingest queue
    keys = [aws.upload(f"worker/{n}.jpg", (RED, BLUE)[n % 2]) for n in range(8)]
    aws.sqs.purge_queue(QueueUrl=aws.queue_url)  # (S3's test event)
    for n, key in enumerate(keys):
        aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=created(aws, key, f"00A{n:02d}"))
    arn = aws.sqs.get_queue_attributes(QueueUrl=aws.queue_url, AttributeNames=["QueueArn"])
    resources = LocalResources(
        endpoint_url="",
        region="us-east-1",
        bucket=aws.bucket,
        table=aws.table,
        queue_url=aws.queue_url,
        queue_arn=arn["Attributes"]["QueueArn"],
        dlq_url=aws.dlq_url,
        upload_prefix=aws.upload_prefix,
        retry_queue_url=aws.retry_queue_url,
    )
    nudges: list[str] = []
    worker = IngestWorker(
        handler=ingest_handler,
        sqs=aws.sqs,
        catalog=DynamoDBCatalog(aws.table, client=aws.dynamodb),
        resources=resources,
        after_batch=lambda: nudges.append("batch handled"),
    )
    received = aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10)["Messages"]
    assert len(received) == 8
    before = len(emulator.service.calls)
    # When local mode's worker processes the batch it received
    assert worker.process_batch(received) == set()
    assert nudges == ["batch handled"]  # local mode: the search index refreshes now
    # Then the handler's batched path ran: one PutVectors for the eight
    assert index_calls(emulator, before) == {"PutVectors": 1, "DeleteVectors": 0}
    assert_index_equals_catalog(aws, index, *keys)
    assert aws.queue_depth(aws.queue_url) == 0
