"""Model failures through the real ingest handler: each ends in its documented state."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from imagesearch.events import make_backfill_message
from imagesearch.resources import ENV_CAPTION_MODE, ENV_MAX_UPLOAD_BYTES
from tests.support.lambda_runtime import drain_queue


def small_jpeg(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(out, "JPEG")
    return out.getvalue()


def test_a_validation_exception_about_the_image_is_a_permanent_rejection_with_its_message(
    aws, ingest_handler, fake_bedrock
):
    fake_bedrock.fail_next(1, "ValidationException", "Image exceeds max pixels allowed.")
    key = aws.upload("refused.jpg", small_jpeg())
    stats = drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    item = aws.record(key)
    assert stats.failures == 0  # not retried
    assert item.status == "rejected"
    assert item.reason == "the model refused the image: Image exceeds max pixels allowed."
    assert fake_bedrock.calls == 1
    assert aws.queue_depth(aws.dlq_url) == 0


ON_DEMAND = (
    "Invocation of model ID amazon.titan-embed-image-v1 with on-demand throughput isn't "
    "supported. Retry your request with the ID or ARN of an inference profile that contains "
    "this model."
)


@pytest.mark.parametrize(
    ("message", "says"),
    [
        (ON_DEMAND, "inference profile"),
        ("The provided model identifier is invalid.", "does not offer"),
        ("Operation not allowed", "does not allow this account"),
        # A message nobody has classified: a rejection would be final and silent
        ("Malformed input request, please reformat your input and try again.", "schema"),
        ("The request could not be completed.", "Not rejected"),
    ],
)
def test_a_configuration_fault_reported_as_validation_exception_fails_and_is_retried(
    aws, ingest_handler, fake_bedrock, message, says
):
    # Given Bedrock answers every call with a ValidationException that is not the image's
    fake_bedrock.fail_next(100, "ValidationException", message)
    key = aws.upload("config.jpg", small_jpeg())
    # When the queue is drained
    stats = drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    # Then the image is never rejected: failed with the cause, retried, then in the DLQ
    record = aws.record(key)
    assert record.status == "failed"
    assert says in record.reason and message in record.reason
    assert stats.failures == 5
    assert aws.queue_depth(aws.dlq_url) == 1


DENIED = (
    "User: arn:aws:sts::123456789012:assumed-role/ImageSearchIngestRole/image-search-ingest "
    "is not authorized to perform: bedrock:InvokeModel on resource: "
    "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-image-v1 because no "
    "identity-based policy allows the bedrock:InvokeModel action"
)


def test_access_denied_keeps_the_account_role_and_arns_out_of_the_record(
    aws, ingest_handler, fake_bedrock, caplog
):
    fake_bedrock.fail_next(100, "AccessDeniedException", DENIED)
    key = aws.upload("denied-arn.jpg", small_jpeg())
    drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    record = aws.record(key)
    assert record.status == "failed"
    assert "no identity-based policy allows" in record.reason
    for secret in ("123456789012", "ImageSearchIngestRole", "image-search-ingest", "arn:"):
        assert secret not in record.reason
    # The log has what the operator needs: the ARN to allow
    logged = " ".join(str(getattr(r, "error", "")) for r in caplog.records)
    assert "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-image-v1" in logged


def backfill(aws, key: str, *, force: bool) -> None:
    body = make_backfill_message(aws.bucket, key, force=force)
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=body)


def test_backfill_force_asks_the_model_again_about_an_image_it_refused(
    aws, ingest_handler, fake_bedrock
):
    # Given an image the model refused
    data = small_jpeg((10, 10, 200))
    fake_bedrock.refuse_image(data)
    key = aws.upload("refused-once.jpg", data)
    drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    assert aws.record(key).status == "rejected"
    # And the model that takes it now (a fixed deployment, a new model version)
    fake_bedrock.reset()
    # When a plain backfill runs, the record is left as it is (unchanged, no model call)
    backfill(aws, key, force=False)
    drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    assert aws.record(key).status == "rejected"
    assert fake_bedrock.calls == 0
    # When backfill --force runs, the model is asked again and the image is indexed
    backfill(aws, key, force=True)
    drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    record = aws.record(key)
    assert (record.status, record.reason) == ("indexed", None)
    assert fake_bedrock.calls == 1


def test_backfill_force_leaves_images_our_own_checks_rejected(aws, ingest_handler, fake_bedrock):
    # Given a file that is not an image: rejected without asking the model
    key = aws.upload("not-an-image.jpg", b"this is text, not a JPEG")
    drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    before = aws.record(key)
    assert before.status == "rejected" and before.model_id is None
    # When backfill --force runs, it stays as it is: the same bytes fail the same checks
    backfill(aws, key, force=True)
    drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    after = aws.record(key)
    assert (after.status, after.reason, after.indexed_at) == (
        "rejected",
        before.reason,
        before.indexed_at,
    )
    assert fake_bedrock.calls == 0


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
