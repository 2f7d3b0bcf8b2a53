"""Model failures through the real ingest handler: each ends in its documented state."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from imagesearch.resources import ENV_CAPTION_MODE, ENV_MAX_UPLOAD_BYTES
from tests.support.lambda_runtime import drain_queue


def small_jpeg(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(out, "JPEG")
    return out.getvalue()


def test_validation_exception_is_a_permanent_rejection_with_the_models_message(
    aws, ingest_handler, fake_bedrock
):
    fake_bedrock.fail_next(1, "ValidationException")
    key = aws.upload("refused.jpg", small_jpeg())
    stats = drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    item = aws.record(key)
    assert stats.failures == 0  # not retried
    assert item.status == "rejected"
    assert "the model refused the image" in item.reason
    assert fake_bedrock.calls == 1


@pytest.mark.parametrize(
    "code", ["ThrottlingException", "ServiceUnavailableException", "ModelNotReadyException"]
)
def test_transient_errors_are_retried_through_the_queue(aws, ingest_handler, fake_bedrock, code):
    # More failures in a row than the SDK's own attempts (2 in tests): the message retries
    fake_bedrock.fail_next(3, code)
    key = aws.upload("later.jpg", small_jpeg())
    stats = drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    assert stats.failures >= 1
    # a later success replaces the failed state
    record = aws.record(key)
    assert (record.status, record.reason) == ("indexed", None)
    assert aws.queue_depth(aws.dlq_url) == 0


def test_a_failed_image_is_listed_and_counted_then_retried_when_the_model_is_back(
    aws, ingest_handler, fake_bedrock
):
    # Given an image that failed while the model denied access
    fake_bedrock.fail_next(100, "AccessDeniedException")
    key = aws.upload("retry-me.jpg", small_jpeg())
    drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    catalog = aws.catalog
    page = catalog.list(prefix=None, status="failed", limit=10, cursor=None)
    assert [record.key for record in page.items] == [key]
    assert catalog.counts()["failed"] == 1

    # When the model is back and the dead letter is sent back to the queue
    fake_bedrock.reset()
    moved = aws.sqs.receive_message(QueueUrl=aws.dlq_url, MaxNumberOfMessages=10)["Messages"]
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=moved[0]["Body"])
    drain_queue(aws.sqs, aws.queue_url, ingest_handler)

    # Then the same event indexes it (same ordering token: it replaces the failed state)
    assert aws.record(key).status == "indexed"
    assert catalog.counts()["failed"] == 0


def test_access_denied_retries_then_parks_the_message_in_the_dlq(
    aws, ingest_handler, fake_bedrock, capsys, caplog
):
    fake_bedrock.fail_next(100, "AccessDeniedException")
    key = aws.upload("denied.jpg", small_jpeg())
    stats = drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    # Never a silent drop and never a rejection: the image is fine, the setup is not
    assert stats.failures == 5
    assert aws.queue_depth(aws.dlq_url) == 1
    # visible as failed, with the model's own cause and fix (SPEC section 5)
    failed = aws.record(key)
    assert failed.status == "failed"
    assert "Bedrock denied access to amazon.titan-embed-image-v1" in failed.reason
    assert "Enable model access" in failed.reason
    assert failed.vector is None
    # said loudly, with the fix, and counted for the alarm
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert any(r.getMessage() == "embedding model misconfigured" for r in errors)
    assert any("Enable model access" in str(getattr(r, "error", "")) for r in errors)
    stdout = capsys.readouterr().out.splitlines()
    logged = [json.loads(line) for line in stdout if line.startswith("{")]
    metrics = [entry for entry in logged if "_aws" in entry]
    assert any(entry.get("EmbedderConfigurationErrors") for entry in metrics)


def test_objects_over_the_size_cap_are_rejected_unread(
    aws, ingest_handler, fake_bedrock, monkeypatch
):
    monkeypatch.setenv(ENV_MAX_UPLOAD_BYTES, "1000")
    key = aws.upload("large.jpg", small_jpeg() + b"\0" * 2000)
    drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    item = aws.record(key)
    assert item.status == "rejected"
    assert "the limit is 1000 bytes" in item.reason
    assert fake_bedrock.calls == 0


def test_caption_metadata_is_stored(aws, ingest_handler, fake_bedrock):
    key = aws.upload("captioned.jpg", small_jpeg(), Metadata={"caption": "a red suede sneaker"})
    drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    assert aws.record(key).caption == "a red suede sneaker"
    # captionMode none: the image alone is embedded
    assert [(call.has_text, call.has_image) for call in fake_bedrock.call_log] == [(False, True)]


def test_joint_caption_mode_embeds_caption_with_image(
    aws, ingest_handler, fake_bedrock, monkeypatch
):
    monkeypatch.setenv(ENV_CAPTION_MODE, "joint")
    key = aws.upload("joint.jpg", small_jpeg(), Metadata={"caption": "a red suede sneaker"})
    drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    assert aws.record(key).status == "indexed"
    assert [(call.has_text, call.has_image) for call in fake_bedrock.call_log] == [(True, True)]
