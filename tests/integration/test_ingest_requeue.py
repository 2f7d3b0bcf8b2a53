"""Retries that do not burn receives (issue 17.7, decision 43), on moto's queues with
their redrive policies: a message that kills its invocation ends in the DLQ alone,
handed-back messages are sent again, and a move that fails falls back to a failure."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from PIL import Image

from imagesearch import resources as r
from imagesearch.events import ObjectEvent, make_backfill_message, parse_message_body
from imagesearch.handlers import ingest
from imagesearch.ingest import IngestService, MessageResult, TimeGate
from imagesearch.local.lambda_runtime import FakeLambdaContext
from imagesearch.requeue import HAND_BACKS_ATTRIBUTE, SqsMessageMover
from imagesearch.resources import INGEST_MAX_HAND_BACKS, INGEST_MAX_RECEIVE_COUNT
from tests.support.lambda_runtime import drain_queue, sqs_event


class ProcessDied(Exception):
    """The invocation ends with its whole batch (out of memory, a native crash)."""


class DiesOnKey:
    """The ingest service, except that a batch holding ``key`` kills the invocation
    before any result: outside per-message handling, as the Lambda runtime sees it."""

    def __init__(self, service: IngestService, key: str) -> None:
        self._service = service
        self._key = key
        self.batches_with_key = 0

    def handle_batch(
        self, messages: Sequence[Sequence[ObjectEvent]], gate: TimeGate | None = None
    ) -> list[MessageResult]:
        if any(event.key == self._key for events in messages for event in events):
            self.batches_with_key += 1
            raise ProcessDied(f"killed while processing {self._key}")
        return self._service.handle_batch(messages, gate)


class ScriptedClock:
    """A Lambda context whose remaining time is told, one answer per question."""

    def __init__(self, *seconds: float) -> None:
        self._seconds = list(seconds)

    def get_remaining_time_in_millis(self) -> int:
        return int(self._seconds.pop(0) * 1000)


def small_jpeg(shade: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (24, 24), (shade, 60, 90)).save(out, "JPEG")
    return out.getvalue()


def receive_all(aws: Any, url: str) -> list[dict[str, Any]]:
    return aws.sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
        VisibilityTimeout=30,
    ).get("Messages", [])


def queue_arn(aws: Any, url: str) -> str:
    attributes = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attributes["Attributes"]["QueueArn"])


def requeuing(aws: Any, *, queue_url: str | None = None, retry_url: str | None = None) -> Any:
    return ingest.Requeuing(
        queue_url or aws.queue_url, retry_url or aws.retry_queue_url, SqsMessageMover(aws.sqs)
    )


def test_a_message_that_kills_its_invocation_ends_in_the_dlq_and_its_batch_mates_index(
    aws, ingest_handler
):
    # Given nine healthy uploads and one whose processing kills the invocation, all
    # in one batch of the ingest queue
    drain_queue(aws.sqs, aws.queue_url, ingest_handler)  # S3's test event
    healthy = [aws.upload(f"mates/{n}.jpg", small_jpeg(20 * n)) for n in range(9)]
    killer = aws.upload("mates/killer.jpg", small_jpeg(250))
    dies = DiesOnKey(ingest.current_service(), killer)
    ingest.configure(dies)  # type: ignore[arg-type]

    # When the queues are drained the way the event source mappings do, with the
    # queues' redrive policies counting receives
    stats = drain_queue(aws.sqs, aws.queue_url, ingest_handler, crashes=(ProcessDied,))

    # Then the batch-mates are indexed, and only the killer is in the DLQ
    assert [aws.record(key).status for key in healthy] == ["indexed"] * 9
    assert aws.record(killer) is None
    parked = receive_all(aws, aws.dlq_url)
    assert [event.key for m in parked for event in parse_message_body(m["Body"])] == [killer]
    # after five receives in all, as any failing message: one in the batch it killed,
    # four alone from the retry queue (the mates shared just the first)
    assert stats.crashes == dies.batches_with_key == INGEST_MAX_RECEIVE_COUNT
    assert aws.queue_depth(aws.queue_url) == aws.queue_depth(aws.retry_queue_url) == 0


def test_a_message_back_from_a_failed_receive_is_moved_before_the_batch_starts(aws, ingest_handler):
    # Given a batch whose first message failed a receive before (count 2)
    drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    keys = [aws.upload(f"again/{n}.jpg", small_jpeg(30 * n)) for n in range(2)]
    first = receive_all(aws, aws.queue_url)
    assert len(first) == 2
    retried = first[0]
    aws.sqs.change_message_visibility(
        QueueUrl=aws.queue_url, ReceiptHandle=retried["ReceiptHandle"], VisibilityTimeout=0
    )
    again = receive_all(aws, aws.queue_url)
    assert [m["Attributes"]["ApproximateReceiveCount"] for m in again] == ["2"]
    dies = DiesOnKey(ingest.current_service(), keys[1])
    ingest.configure(dies)  # type: ignore[arg-type]

    # When it is invoked together with a message that kills the invocation
    event = sqs_event(again + first[1:], queue_arn(aws, aws.queue_url))
    try:
        ingest_handler(event, FakeLambdaContext("imagesearch-test-ingest", timeout_seconds=300))
    except ProcessDied:
        pass
    else:
        raise AssertionError("the killer did not kill the invocation")

    # Then the retried message had already moved: a copy waits in the retry queue and
    # the original is gone from the ingest queue, so the crash cannot count against it
    moved = receive_all(aws, aws.retry_queue_url)
    assert [m["Body"] for m in moved] == [retried["Body"]]
    assert moved[0]["Attributes"]["ApproximateReceiveCount"] == "1"
    aws.sqs.change_message_visibility(
        QueueUrl=aws.queue_url, ReceiptHandle=first[1]["ReceiptHandle"], VisibilityTimeout=0
    )
    left = receive_all(aws, aws.queue_url)
    assert [m["MessageId"] for m in left] == [first[1]["MessageId"]]


def test_a_message_handed_back_too_often_starts_alone_from_the_retry_queue(aws):
    # Given a batch of two whose second message was handed back three times already
    first = make_backfill_message(aws.bucket, aws.upload_prefix + "missing/a.jpg")
    second = make_backfill_message(aws.bucket, aws.upload_prefix + "missing/b.jpg")
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=first)
    aws.sqs.send_message(
        QueueUrl=aws.queue_url,
        MessageBody=second,
        MessageAttributes={
            HAND_BACKS_ATTRIBUTE: {
                "DataType": "Number",
                "StringValue": str(INGEST_MAX_HAND_BACKS),
            }
        },
    )
    received = [m for m in receive_all(aws, aws.queue_url) if m["Body"] in (first, second)]
    received.sort(key=lambda m: m["Body"] != first)

    # When the invocation has time for the first message only (20 s left, 30 s needed)
    response = ingest.handle_batch(
        sqs_event(received, queue_arn(aws, aws.queue_url)),
        ScriptedClock(100.0, 20.0),
        ingest.current_service(),
        seconds_per_image=30.0,
        requeuing=requeuing(aws),
    )

    # Then both are done for the event source mapping, and the handed-back one waits
    # in the retry queue (where it is alone, so it starts) with its count carried
    assert response == {"batchItemFailures": []}
    moved = receive_all(aws, aws.retry_queue_url)
    assert [m["Body"] for m in moved] == [second]
    count = moved[0]["MessageAttributes"][HAND_BACKS_ATTRIBUTE]["StringValue"]
    assert count == str(INGEST_MAX_HAND_BACKS + 1)
    assert receive_all(aws, aws.queue_url) == []


def test_a_handed_back_message_that_cannot_be_sent_again_fails_as_before(aws, monkeypatch):
    # Given a batch of two whose second message is due for the retry queue, and a retry
    # queue the handler cannot send to
    bodies = [
        make_backfill_message(aws.bucket, aws.upload_prefix + f"missing/{n}.jpg") for n in "ab"
    ]
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=bodies[0])
    aws.sqs.send_message(
        QueueUrl=aws.queue_url,
        MessageBody=bodies[1],
        MessageAttributes={
            HAND_BACKS_ATTRIBUTE: {"DataType": "Number", "StringValue": str(INGEST_MAX_HAND_BACKS)}
        },
    )
    received = [m for m in receive_all(aws, aws.queue_url) if m["Body"] in bodies]
    received.sort(key=lambda m: m["Body"] != bodies[0])
    missing = aws.retry_queue_url.rsplit("/", 1)[0] + "/no-such-retry-queue"
    monkeypatch.setenv(r.ENV_INGEST_RETRY_QUEUE_URL, missing)  # the deployment's, gone

    # When the second is handed back
    response = ingest.handle_batch(
        sqs_event(received, queue_arn(aws, aws.queue_url)),
        ScriptedClock(100.0, 20.0),
        ingest.current_service(),
        seconds_per_image=30.0,
        requeuing=requeuing(aws, retry_url=missing),
    )

    # Then it is a batch item failure, its original still in the queue (SQS retries it)
    assert response == {"batchItemFailures": [{"itemIdentifier": received[1]["MessageId"]}]}
    aws.sqs.change_message_visibility(
        QueueUrl=aws.queue_url, ReceiptHandle=received[1]["ReceiptHandle"], VisibilityTimeout=0
    )
    assert [m["MessageId"] for m in receive_all(aws, aws.queue_url)] == [received[1]["MessageId"]]


def test_a_retried_message_that_cannot_be_moved_is_processed_with_its_batch(
    aws, ingest_handler, monkeypatch
):
    # Given an upload whose message failed a receive before, and no retry queue to send to
    drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    key = aws.upload("stuck/one.jpg", small_jpeg(77))
    [message] = receive_all(aws, aws.queue_url)
    aws.sqs.change_message_visibility(
        QueueUrl=aws.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    [again] = receive_all(aws, aws.queue_url)
    missing = aws.retry_queue_url.rsplit("/", 1)[0] + "/no-such-retry-queue"
    monkeypatch.setenv(r.ENV_INGEST_RETRY_QUEUE_URL, missing)  # the deployment's, gone

    # When it is invoked
    response = ingest.handle_batch(
        sqs_event([again], queue_arn(aws, aws.queue_url)),
        ScriptedClock(1000.0),
        ingest.current_service(),
        seconds_per_image=30.0,
        requeuing=requeuing(aws, retry_url=missing),
    )

    # Then it is processed in this batch, as before the retry queue
    assert response == {"batchItemFailures": []}
    assert aws.record(key).status == "indexed"
