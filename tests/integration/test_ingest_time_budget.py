"""One hung model call through the real ingest handler and the fake Bedrock (issue 9.2):
the messages after it are handed back unstarted, never timed out with it, and index
on their next delivery, sent again as fresh messages (decision 43)."""

from __future__ import annotations

import io

from PIL import Image

from imagesearch.handlers import ingest
from imagesearch.local.lambda_runtime import FakeLambdaContext
from imagesearch.requeue import HAND_BACKS_ATTRIBUTE
from imagesearch.resources import ENV_BEDROCK_READ_TIMEOUT, ENV_BEDROCK_RETRY_MODE
from imagesearch.settings import IngestSettings, load_settings
from tests.support.lambda_runtime import drain_queue, sqs_event

READ_TIMEOUT_S = 4.0


def small_jpeg(shade: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (shade, 30, 30)).save(out, "JPEG")
    return out.getvalue()


def test_a_hung_model_call_hands_the_rest_of_the_batch_back_unstarted(
    aws, ingest_handler, fake_bedrock, monkeypatch
):
    # Given five uploads, and a model whose every call hangs past the read timeout
    monkeypatch.setenv(ENV_BEDROCK_READ_TIMEOUT, str(READ_TIMEOUT_S))
    monkeypatch.setenv(ENV_BEDROCK_RETRY_MODE, "standard")
    drain_queue(aws.sqs, aws.queue_url, ingest_handler)  # S3's test event
    keys = [aws.upload(f"batch/{i}.jpg", small_jpeg(40 * i)) for i in range(5)]
    fake_bedrock.timeout_seconds = READ_TIMEOUT_S + 2
    fake_bedrock.timeout_rate = 1.0
    need = ingest.seconds_per_image(load_settings(IngestSettings))
    received = aws.sqs.receive_message(
        QueueUrl=aws.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=300
    )["Messages"]
    assert len(received) == 5
    queue_arn = aws.sqs.get_queue_attributes(QueueUrl=aws.queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]

    # When one invocation gets a few seconds more than one image may need (its first
    # call alone hangs for two attempts x the read timeout, longer than that margin)
    context = FakeLambdaContext("imagesearch-ingest-test", timeout_seconds=need + 3)
    response = ingest_handler(sqs_event(received, queue_arn), context)

    # Then only the first message reached the model and is a batch item failure; the
    # other four were handed back unstarted: sent to the queue again and reported done
    failed = [item["itemIdentifier"] for item in response["batchItemFailures"]]
    assert failed == [received[0]["MessageId"]]
    assert fake_bedrock.calls == 2  # the SDK's two attempts (test setting) of one image
    assert context.get_remaining_time_in_millis() > 0
    # The attempted image is visibly `failed` with the model's cause; the others untouched
    attempted = aws.record(keys[0])
    assert attempted is not None and attempted.status == "failed"
    assert "unreachable" in (attempted.reason or "")
    assert all(aws.record(key) is None for key in keys[1:])

    # And the queue holds fresh copies of the four, not their originals: no receive counted
    copies = aws.sqs.receive_message(
        QueueUrl=aws.queue_url,
        MaxNumberOfMessages=10,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
        VisibilityTimeout=0,
    )["Messages"]
    assert sorted(copy["Body"] for copy in copies) == sorted(m["Body"] for m in received[1:])
    assert not {copy["MessageId"] for copy in copies} & {m["MessageId"] for m in received}
    assert [copy["Attributes"]["ApproximateReceiveCount"] for copy in copies] == ["1"] * 4
    assert [copy["MessageAttributes"][HAND_BACKS_ATTRIBUTE]["StringValue"] for copy in copies] == [
        "1"
    ] * 4

    # And once the model answers again, every message indexes
    fake_bedrock.timeout_rate = 0.0
    aws.sqs.change_message_visibility(
        QueueUrl=aws.queue_url, ReceiptHandle=received[0]["ReceiptHandle"], VisibilityTimeout=0
    )
    drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    assert [aws.record(key).status for key in keys] == ["indexed"] * 5
    assert aws.queue_depth(aws.dlq_url) == 0
