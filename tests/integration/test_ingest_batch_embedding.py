"""Multi-image model calls in ingest (issue 10 item 1): a message batch of Cohere
Embed v4 images is embedded in one call per 96 images (and per ~20 MB of request),
with the vectors single calls give; a refused image, throttling and the time gate
affect only what they must. Real ingest handler on moto, the fake Bedrock speaking
Cohere's protocol."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fakes.bedrock import FakeBedrock
from imagesearch import resources as r
from imagesearch.embedders import cohere
from imagesearch.embedders.cohere import CohereEmbedV4Embedder
from imagesearch.handlers import ingest as handler
from tests.support.lambda_runtime import FakeLambdaContext, sqs_event
from tests.support.s3events import s3_event_body, sqs_message

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:ingest"
DIMENSION = 512


@pytest.fixture
def cohere_env(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(r.ENV_MODEL_ID, r.COHERE_MODEL_ID)
    monkeypatch.setenv(r.ENV_EMBEDDING_DIMENSION, str(DIMENSION))
    monkeypatch.setenv(r.ENV_BEDROCK_MAX_ATTEMPTS, "1")  # queue retries are the point here
    aws.s3.put_bucket_notification_configuration(Bucket=aws.bucket, NotificationConfiguration={})


def jpeg(n: int, size: tuple[int, int] = (48, 32)) -> bytes:
    """A distinct small JPEG per ``n`` (sent to Cohere untouched: within its limits)."""
    image = Image.new("RGB", size, ((n * 37) % 256, (n * 91) % 256, (n * 53) % 256))
    image.paste((255 - n % 256, 0, 0), (n % size[0], 0, n % size[0] + 1, size[1]))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def created(aws: Any, key: str, n: int = 0) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(
        s3_event_body("created", aws.bucket, key, sequencer=f"0055AED6DCD9{n:06X}")
    )["Records"][0]
    return record


def deliver(messages: list[list[dict[str, Any]]], context: Any = None) -> list[str]:
    """One SQS batch, each message carrying the given S3 records; the failed ids."""
    event = sqs_event(
        [
            sqs_message(json.dumps({"Records": records}), f"m-{n}")
            for n, records in enumerate(messages)
        ],
        QUEUE_ARN,
    )
    response = handler.handler(event, context or FakeLambdaContext())
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def single_call_vectors(fake: FakeBedrock, images: list[bytes]) -> list[np.ndarray]:
    embedder = CohereEmbedV4Embedder(dimension=DIMENSION, client=fake.client())
    return [embedder.embed(image=image, purpose="document") for image in images]


def assert_stored(aws: Any, keys: list[str], expected: list[np.ndarray]) -> None:
    for key, vector in zip(keys, expected, strict=True):
        record = aws.record(key)
        assert record is not None and record.status == "indexed", key
        np.testing.assert_allclose(record.vector, vector, atol=1e-6)


def test_ten_images_in_one_batch_are_one_call_with_the_vectors_of_single_calls(
    aws, cohere_env, ingest_handler, fake_bedrock: FakeBedrock
) -> None:
    # Given ten uploads, each announced by its own message of one batch
    images = [jpeg(n) for n in range(10)]
    keys = [aws.upload(f"ten/{n}.jpg", image) for n, image in enumerate(images)]
    # When the batch is delivered
    assert deliver([[created(aws, key, n)] for n, key in enumerate(keys)]) == []
    # Then one Cohere call embedded all ten as stored documents
    [call] = fake_bedrock.call_log
    assert (call.status, call.items, call.purpose) == (200, 10, "search_document")
    # And each record holds the vector a call of its own gives
    fake_bedrock.reset()
    assert_stored(aws, keys, single_call_vectors(fake_bedrock, images))


def test_a_hundred_images_take_two_calls_of_at_most_96(
    aws, cohere_env, ingest_handler, fake_bedrock: FakeBedrock
) -> None:
    # Given ten messages of ten S3 records each
    images = [jpeg(n, (24, 16)) for n in range(100)]
    keys = [aws.upload(f"hundred/{n:03d}.jpg", image) for n, image in enumerate(images)]
    messages = [[created(aws, keys[m * 10 + i], m * 10 + i) for i in range(10)] for m in range(10)]
    # When they arrive as one batch
    assert deliver(messages) == []
    # Then ceil(100 / 96) = 2 calls embedded them
    calls = fake_bedrock.call_log
    assert len(calls) == math.ceil(100 / 96)
    assert sorted(call.items for call in calls) == [4, 96]
    fake_bedrock.reset()
    assert_stored(aws, keys, single_call_vectors(fake_bedrock, images))


def test_a_throttled_call_of_a_large_batch_fails_only_the_messages_it_carried(
    aws, cohere_env, ingest_handler, fake_bedrock: FakeBedrock
) -> None:
    # Given a hundred images in ten messages, and a model that throttles the second call
    images = [jpeg(n, (24, 16)) for n in range(100)]
    keys = [aws.upload(f"second/{n:03d}.jpg", image) for n, image in enumerate(images)]
    messages = [[created(aws, keys[m * 10 + i], m * 10 + i) for i in range(10)] for m in range(10)]
    real_handle = fake_bedrock.handle
    answered = []

    def throttle_the_second(*args: Any) -> Any:
        answered.append(1)
        if len(answered) == 2:
            fake_bedrock.fail_next(1, "ThrottlingException")
        return real_handle(*args)

    fake_bedrock.handle = throttle_the_second  # type: ignore[method-assign]
    # When they arrive as one batch
    failed = deliver(messages)
    # Then the first call's 96 images are indexed; the last four (message 9's) failed
    assert [(c.status, c.items) for c in fake_bedrock.call_log] == [(200, 96), (429, 1)]
    assert failed == ["m-9"]
    statuses = [aws.record(k).status for k in keys]  # type: ignore[union-attr]
    assert statuses == ["indexed"] * 96 + ["failed"] * 4


def test_a_batch_over_the_request_size_is_split_by_bytes(
    aws, cohere_env, ingest_handler, fake_bedrock: FakeBedrock, monkeypatch
) -> None:
    # Given a request size limit that three of these images fill
    images = [jpeg(n, (160, 120)) for n in range(8)]
    per_image = max(len(i) for i in images) * 4 // 3 + 200
    monkeypatch.setattr(cohere, "BATCH_BODY_BYTES", 3 * per_image)
    keys = [aws.upload(f"bytes/{n}.jpg", image) for n, image in enumerate(images)]
    # When eight of them arrive in one batch
    assert deliver([[created(aws, key, n)] for n, key in enumerate(keys)]) == []
    # Then they went in calls of at most three, every image once
    calls = fake_bedrock.call_log
    assert [call.items for call in calls] == [3, 3, 2]
    fake_bedrock.reset()
    assert_stored(aws, keys, single_call_vectors(fake_bedrock, images))


def test_one_refused_image_ends_rejected_alone(
    aws, cohere_env, ingest_handler, fake_bedrock: FakeBedrock
) -> None:
    # Given five uploads, one of which the model refuses
    images = [jpeg(n) for n in range(5)]
    keys = [aws.upload(f"refused/{n}.jpg", image) for n, image in enumerate(images)]
    fake_bedrock.refuse_image(images[2])
    # When they arrive in one batch
    failed = deliver([[created(aws, key, n)] for n, key in enumerate(keys)])
    # Then no message fails: the refused image is rejected with the model's message,
    # the others are indexed with their own vectors
    assert failed == []
    bad = aws.record(keys[2])
    assert bad is not None and bad.status == "rejected"
    assert bad.reason is not None and "Unable to process the provided image" in bad.reason
    # (the whole-batch call was refused, then each image was sent on its own)
    calls = [(c.status, c.items) for c in fake_bedrock.call_log]
    assert calls == [(400, 5), (200, 1), (200, 1), (400, 1), (200, 1), (200, 1)]
    good = [k for n, k in enumerate(keys) if n != 2]
    fake_bedrock.reset()
    assert_stored(
        aws, good, single_call_vectors(fake_bedrock, [i for n, i in enumerate(images) if n != 2])
    )


def test_a_throttled_batch_fails_its_messages_and_the_retry_indexes_them(
    aws, cohere_env, ingest_handler, fake_bedrock: FakeBedrock
) -> None:
    # Given four uploads and a model that throttles the next call
    images = [jpeg(n) for n in range(4)]
    keys = [aws.upload(f"throttled/{n}.jpg", image) for n, image in enumerate(images)]
    fake_bedrock.fail_next(1, "ThrottlingException")
    messages = [[created(aws, key, n)] for n, key in enumerate(keys)]
    # When they arrive in one batch
    failed = deliver(messages)
    # Then every message whose image was in the call fails (SQS retries them), and each
    # record shows failed with the model's cause
    assert failed == [f"m-{n}" for n in range(4)]
    for key in keys:
        record = aws.record(key)
        assert record is not None and record.status == "failed"
        assert record.reason is not None and "thrott" in record.reason.lower()
    # When the queue redelivers them
    assert deliver(messages) == []
    # Then one more call indexed all four
    assert [c.status for c in fake_bedrock.call_log] == [429, 200]
    fake_bedrock.reset()
    assert_stored(aws, keys, single_call_vectors(fake_bedrock, images))


class ScriptedClock:
    """A Lambda context whose remaining time follows a script, then stays at the last."""

    def __init__(self, *seconds: float) -> None:
        self._script = list(seconds)

    def get_remaining_time_in_millis(self) -> int:
        seconds = self._script.pop(0) if len(self._script) > 1 else self._script[0]
        return int(seconds * 1000)


def test_messages_handed_back_by_the_time_gate_are_not_embedded(
    aws, cohere_env, ingest_handler, fake_bedrock: FakeBedrock
) -> None:
    # Given five uploads, and an invocation where only two messages still fit
    images = [jpeg(n) for n in range(5)]
    keys = [aws.upload(f"gate/{n}.jpg", image) for n, image in enumerate(images)]
    event = sqs_event(
        [
            sqs_message(json.dumps({"Records": [created(aws, key, n)]}), f"m-{n}")
            for n, key in enumerate(keys)
        ],
        QUEUE_ARN,
    )
    clock = ScriptedClock(290.0, 200.0, 50.0)
    # When the batch is handled with a need of 92 s per image
    response = handler.handle_batch(event, clock, handler.current_service(), seconds_per_image=92.0)
    # Then the last three were handed back, unread and unembedded
    assert [i["itemIdentifier"] for i in response["batchItemFailures"]] == ["m-2", "m-3", "m-4"]
    [call] = fake_bedrock.call_log
    assert call.items == 2
    assert [aws.record(k) is not None for k in keys] == [True, True, False, False, False]


def test_a_refused_batch_retries_one_by_one_only_while_time_is_left(
    aws, cohere_env, ingest_handler, fake_bedrock: FakeBedrock
) -> None:
    # Given three uploads, one refused, and an invocation that runs short after the
    # batched call
    images = [jpeg(n) for n in range(3)]
    keys = [aws.upload(f"short/{n}.jpg", image) for n, image in enumerate(images)]
    fake_bedrock.refuse_image(images[0])
    event = sqs_event(
        [
            sqs_message(json.dumps({"Records": [created(aws, key, n)]}), f"m-{n}")
            for n, key in enumerate(keys)
        ],
        QUEUE_ARN,
    )
    clock = ScriptedClock(290.0, 280.0, 270.0, 150.0, 50.0)
    response = handler.handle_batch(event, clock, handler.current_service(), seconds_per_image=92.0)
    # Then the first single call still fitted (150 s left), the others did not: their
    # messages go back to the queue without a record written, nothing timed out
    assert [i["itemIdentifier"] for i in response["batchItemFailures"]] == ["m-1", "m-2"]
    assert [(c.status, c.items) for c in fake_bedrock.call_log] == [(400, 3), (400, 1)]
    first = aws.record(keys[0])
    assert first is not None and first.status == "rejected"
    assert [aws.record(k) for k in keys[1:]] == [None, None]


def test_joint_captions_go_in_one_call_of_fused_inputs(
    aws, cohere_env, ingest_handler, fake_bedrock: FakeBedrock, monkeypatch
) -> None:
    # Given caption mode joint, two captioned uploads and two without a caption
    monkeypatch.setenv(r.ENV_CAPTION_MODE, "joint")
    images = [jpeg(n) for n in range(4)]
    captions = ["a red shoe", None, "a blue boot", None]
    keys = [
        aws.upload(f"joint/{n}.jpg", image, **({"Metadata": {"caption": c}} if c else {}))
        for n, (image, c) in enumerate(zip(images, captions, strict=True))
    ]
    # When they arrive in one batch
    assert deliver([[created(aws, key, n)] for n, key in enumerate(keys)]) == []
    # Then the plain images went in one call and the captioned ones (each its own
    # caption with its own image, Cohere's fused ``inputs``) in another
    calls = sorted((c.has_text, c.items) for c in fake_bedrock.call_log)
    assert calls == [(False, 2), (True, 2)]
    # And every vector equals the single call's
    fake_bedrock.reset()
    embedder = CohereEmbedV4Embedder(dimension=DIMENSION, client=fake_bedrock.client())
    expected = [
        embedder.embed(text=c, image=i, purpose="document")
        for i, c in zip(images, captions, strict=True)
    ]
    assert_stored(aws, keys, expected)


def test_the_same_image_twice_in_a_batch_applies_in_order(
    aws, cohere_env, ingest_handler, fake_bedrock: FakeBedrock
) -> None:
    # Given a key announced twice in one batch (an older and a newer event) beside
    # two other uploads
    images = [jpeg(n) for n in range(3)]
    keys = [aws.upload(f"twice/{n}.jpg", image) for n, image in enumerate(images)]
    messages = [[created(aws, keys[0], 1)], [created(aws, keys[1], 1)]]
    messages += [[created(aws, keys[0], 2)], [created(aws, keys[2], 1)]]
    # When the batch is delivered
    assert deliver(messages) == []
    # Then the repeated key was embedded (with the upload beside it) before its second
    # event was read, which found it unchanged: no second model call for it
    assert [c.items for c in fake_bedrock.call_log] == [2, 1]
    fake_bedrock.reset()
    assert_stored(aws, keys, single_call_vectors(fake_bedrock, images))


def test_an_error_reading_one_image_fails_only_its_message(
    aws, cohere_env, ingest_handler, fake_bedrock: FakeBedrock, monkeypatch
) -> None:
    from botocore.exceptions import ClientError

    from imagesearch.objectstore import S3ObjectStore

    # Given three uploads, and S3 failing to serve the second
    images = [jpeg(n) for n in range(3)]
    keys = [aws.upload(f"s3error/{n}.jpg", image) for n, image in enumerate(images)]
    real_get = S3ObjectStore.get

    def flaky_get(self: S3ObjectStore, key: str, *, max_bytes: int) -> Any:
        if key == keys[1]:
            error = {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}
            raise ClientError(error, "GetObject")
        return real_get(self, key, max_bytes=max_bytes)

    monkeypatch.setattr(S3ObjectStore, "get", flaky_get)
    # When they arrive in one batch, and a malformed message beside them
    event = sqs_event(
        [
            *(
                sqs_message(json.dumps({"Records": [created(aws, key, n)]}), f"m-{n}")
                for n, key in enumerate(keys)
            ),
            sqs_message("not json", "m-bad"),
        ],
        QUEUE_ARN,
    )
    response = handler.handler(event, FakeLambdaContext())
    # Then only that image's message and the malformed one fail; the other two were
    # embedded together and indexed
    assert [i["itemIdentifier"] for i in response["batchItemFailures"]] == ["m-1", "m-bad"]
    assert [c.items for c in fake_bedrock.call_log] == [2]
    assert aws.record(keys[1]) is None
    fake_bedrock.reset()
    assert_stored(
        aws, [keys[0], keys[2]], single_call_vectors(fake_bedrock, [images[0], images[2]])
    )


def test_an_error_writing_one_record_fails_only_its_message(
    aws, cohere_env, ingest_handler, fake_bedrock: FakeBedrock, monkeypatch
) -> None:
    from botocore.exceptions import ClientError

    from imagesearch.catalog.dynamodb import DynamoDBCatalog

    # Given three uploads, and the catalog throttling the write of the third's record
    images = [jpeg(n) for n in range(3)]
    keys = [aws.upload(f"puterror/{n}.jpg", image) for n, image in enumerate(images)]
    real_put = DynamoDBCatalog.put

    def throttled_put(self: DynamoDBCatalog, record: Any) -> bool:
        if record.key == keys[2]:
            error = {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
            raise ClientError(error, "PutItem")
        return real_put(self, record)

    messages = [[created(aws, key, n)] for n, key in enumerate(keys)]
    with monkeypatch.context() as patch:
        patch.setattr(DynamoDBCatalog, "put", throttled_put)
        # When they arrive in one batch (one model call for the three)
        assert deliver(messages) == ["m-2"]
    # Then only its message fails; the others' records are written
    assert [aws.record(k) is not None for k in keys] == [True, True, False]
    # When the queue redelivers the batch, only the third image is embedded again
    assert deliver(messages) == []
    assert [c.items for c in fake_bedrock.call_log] == [3, 1]
    fake_bedrock.reset()
    assert_stored(aws, keys, single_call_vectors(fake_bedrock, images))
