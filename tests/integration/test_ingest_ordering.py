"""Out-of-order and duplicate events, overwrites and deletes, through the real handler.

Events are built like real S3 sends them (with a ``sequencer``) and delivered in
the order each test chooses; S3 and DynamoDB are moto, Bedrock is the fake.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fakes.bedrock import fake_titan_embedding
from imagesearch.records import image_id_for_key
from imagesearch.resources import thumbnail_key
from tests.integration.api_fixtures import api_fixture  # noqa: F401  (fixture)
from tests.support.lambda_runtime import FakeLambdaContext, sqs_event
from tests.support.s3events import s3_event_body, sqs_message

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:images-test-ingest"


def solid_jpeg(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(out, "JPEG", quality=90)
    return out.getvalue()


RED, BLUE, GREEN = solid_jpeg((220, 20, 20)), solid_jpeg((20, 20, 220)), solid_jpeg((20, 200, 20))


def expected_vector(image: bytes) -> np.ndarray:
    vector = np.asarray(fake_titan_embedding(None, image, 1024), dtype=np.float32)
    return vector / np.linalg.norm(vector)


@pytest.fixture
def deliver(aws, ingest_handler):
    """Deliver S3 notification bodies to the handler as one SQS batch. The bucket's own
    notifications are switched off so that only the events the test chose are processed."""
    aws.s3.put_bucket_notification_configuration(Bucket=aws.bucket, NotificationConfiguration={})

    def _deliver(*bodies: str) -> dict:
        messages = [sqs_message(body, f"m-{i}") for i, body in enumerate(bodies)]
        return ingest_handler(sqs_event(messages, QUEUE_ARN), FakeLambdaContext())

    return _deliver


def stored_vector(aws, key: str) -> np.ndarray:
    item = aws.record(key)
    assert item is not None and item.status == "indexed"
    return item.vector


def test_older_event_delivered_after_newer_never_overwrites(aws, deliver, fake_bedrock):
    # Given v1 (red, sequencer ...0A) then v2 (blue, ...0B) uploaded to one key
    key = aws.upload("shoe.jpg", RED)
    aws.upload("shoe.jpg", BLUE)
    # When the newer event arrives first, then the older one
    assert (
        deliver(s3_event_body("created", aws.bucket, key, sequencer="0055AED6DCD9028C0B"))[
            "batchItemFailures"
        ]
        == []
    )
    assert (
        deliver(s3_event_body("created", aws.bucket, key, sequencer="0055AED6DCD9028C0A"))[
            "batchItemFailures"
        ]
        == []
    )
    # Then the record holds v2 with v2's sequencer, and the stale event cost no model call
    np.testing.assert_allclose(stored_vector(aws, key), expected_vector(BLUE), atol=1e-6)
    assert aws.record(key).sequencer.endswith("0055AED6DCD9028C0B")
    assert fake_bedrock.calls == 1


def test_sequencers_of_different_lengths_compare_as_numbers(aws, deliver, fake_bedrock):
    # S3 sequencers vary in length: "FF" (255) is older than "0100" (256).
    key = aws.upload("a.jpg", GREEN)
    deliver(s3_event_body("created", aws.bucket, key, sequencer="0100"))
    deliver(s3_event_body("removed", aws.bucket, key, sequencer="FF"))
    assert aws.record(key).status == "indexed"


def test_duplicate_delivery_indexes_once(aws, deliver, fake_bedrock):
    key = aws.upload("dup.jpg", RED)
    body = s3_event_body("created", aws.bucket, key, sequencer="00AA")
    # Given the same notification delivered twice in one batch and once more later
    assert deliver(body, body)["batchItemFailures"] == []
    assert deliver(body)["batchItemFailures"] == []
    # Then one record, one model call, one thumbnail
    assert len([i for i in aws.records() if i.key == key]) == 1
    assert fake_bedrock.calls == 1
    assert aws.object_exists(thumbnail_key(image_id_for_key(key)))


def test_overwrite_re_embeds(aws, deliver, fake_bedrock):
    key = aws.upload("photo.jpg", RED)
    deliver(s3_event_body("created", aws.bucket, key, sequencer="0001"))
    first = aws.record(key)
    # When the object is overwritten with other content
    aws.upload("photo.jpg", BLUE)
    deliver(s3_event_body("created", aws.bucket, key, sequencer="0002"))
    # Then the record has the new etag and the new content's vector
    second = aws.record(key)
    assert second.etag != first.etag
    np.testing.assert_allclose(stored_vector(aws, key), expected_vector(BLUE), atol=1e-6)
    assert fake_bedrock.calls == 2


def test_delete_removes_vector_record_and_thumbnail(aws, deliver):
    key = aws.upload("gone.jpg", RED)
    deliver(s3_event_body("created", aws.bucket, key, sequencer="0001"))
    thumb = thumbnail_key(image_id_for_key(key))
    assert aws.object_exists(thumb)
    aws.s3.delete_object(Bucket=aws.bucket, Key=key)
    deliver(s3_event_body("removed", aws.bucket, key, sequencer="0002"))
    item = aws.record(key)
    # A tombstone (so warm search instances see the removal) without the vector, expiring
    assert item.status == "deleted"
    assert item.vector is None
    assert not aws.object_exists(thumb)


def test_stale_create_after_delete_stays_deleted(aws, deliver, fake_bedrock):
    key = aws.upload("x.jpg", RED)
    aws.s3.delete_object(Bucket=aws.bucket, Key=key)
    # The delete (newer) arrives before the create (older)
    deliver(s3_event_body("removed", aws.bucket, key, sequencer="0002"))
    deliver(s3_event_body("created", aws.bucket, key, sequencer="0001"))
    assert aws.record(key).status == "deleted"
    assert fake_bedrock.calls == 0


def test_delete_event_for_a_key_uploaded_again_is_ignored(aws, deliver):
    # put (1), delete (2), put again (3): the delete arrives last, when the object exists
    key = aws.upload("again.jpg", RED)
    deliver(s3_event_body("created", aws.bucket, key, sequencer="0003"))
    deliver(s3_event_body("removed", aws.bucket, key, sequencer="0002"))
    assert aws.record(key).status == "indexed"


def test_create_event_for_an_object_already_deleted_records_the_delete(aws, deliver, fake_bedrock):
    key = aws.upload("brief.jpg", RED)
    deliver(s3_event_body("created", aws.bucket, key, sequencer="0001"))
    aws.s3.delete_object(Bucket=aws.bucket, Key=key)
    # A re-delivered create for a key that no longer exists: S3 is the truth
    deliver(s3_event_body("created", aws.bucket, key, sequencer="0001"))
    assert aws.record(key).status == "deleted"


def test_reupload_after_delete_is_indexed_again(aws, deliver):
    key = aws.upload("phoenix.jpg", RED)
    deliver(s3_event_body("created", aws.bucket, key, sequencer="0001"))
    aws.s3.delete_object(Bucket=aws.bucket, Key=key)
    deliver(s3_event_body("removed", aws.bucket, key, sequencer="0002"))
    aws.upload("phoenix.jpg", GREEN)
    deliver(s3_event_body("created", aws.bucket, key, sequencer="0003"))
    np.testing.assert_allclose(stored_vector(aws, key), expected_vector(GREEN), atol=1e-6)


def test_events_after_an_api_delete_bring_nothing_back(aws, deliver, api, fake_bedrock):
    # Indexed, then deleted through the API while its events still wait in the queue
    key = aws.upload("undead.jpg", RED)
    deliver(s3_event_body("created", aws.bucket, key, sequencer="0001"))
    image_id = image_id_for_key(key)
    assert api.call("DELETE", f"/images/{image_id}").status == 202
    calls = fake_bedrock.calls

    # A retried create of the deleted version finds nothing to index
    deliver(s3_event_body("created", aws.bucket, key, sequencer="0001"))
    assert aws.record(key).status == "deleted"
    # The delete's own event finds it done
    deliver(s3_event_body("removed", aws.bucket, key, sequencer="0002"))
    assert aws.record(key).status == "deleted"
    assert not aws.object_exists(thumbnail_key(image_id))
    # Uploaded again: a late retry of the deleted version's create is stale (its token is
    # older than the API's delete), the new version's own event indexes it
    aws.upload("undead.jpg", GREEN)
    deliver(s3_event_body("created", aws.bucket, key, sequencer="0001"))
    assert aws.record(key).status == "deleted"
    assert fake_bedrock.calls == calls
    deliver(s3_event_body("created", aws.bucket, key, sequencer="0003"))
    np.testing.assert_allclose(stored_vector(aws, key), expected_vector(GREEN), atol=1e-6)


def test_a_newer_version_waiting_in_the_queue_is_deleted_with_the_api_delete(
    aws, deliver, api, fake_bedrock
):
    key = aws.upload("replaced.jpg", RED)
    deliver(s3_event_body("created", aws.bucket, key, sequencer="0001"))
    aws.upload("replaced.jpg", BLUE)  # its event (0002) is still in the backlog
    assert api.call("DELETE", f"/images/{image_id_for_key(key)}").status == 202
    deliver(s3_event_body("created", aws.bucket, key, sequencer="0002"))
    assert aws.record(key).status == "deleted"


def test_moto_notifications_without_sequencer_end_in_the_right_state(
    aws, ingest_handler, fake_bedrock
):
    # moto sends no sequencer and encodes "/" as %2F: the real queue flow still converges
    from tests.support.lambda_runtime import drain_queue

    key = aws.upload("nested/dir/put-delete-put.jpg", RED)
    aws.s3.delete_object(Bucket=aws.bucket, Key=key)
    aws.upload("nested/dir/put-delete-put.jpg", BLUE)
    other = aws.upload("nested/dir/put-delete.jpg", GREEN)
    aws.s3.delete_object(Bucket=aws.bucket, Key=other)
    stats = drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    assert stats.failures == 0
    np.testing.assert_allclose(stored_vector(aws, key), expected_vector(BLUE), atol=1e-6)
    assert aws.record(other).status == "deleted"


def test_s3_test_event_is_acknowledged(aws, deliver, fake_bedrock):
    response = deliver('{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}')
    assert response["batchItemFailures"] == []
    assert aws.records() == []
    assert aws.catalog.counts() == {"indexed": 0, "rejected": 0, "failed": 0}
    assert fake_bedrock.calls == 0


def test_malformed_message_fails_until_it_reaches_the_dlq(aws, ingest_handler):
    from tests.support.lambda_runtime import drain_queue

    drain_queue(aws.sqs, aws.queue_url, ingest_handler)  # the s3:TestEvent
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody="this is not an S3 event")
    stats = drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    # Nothing is dropped: five failed receives, then the redrive policy parks it
    assert stats.failures == 5
    assert aws.queue_depth(aws.dlq_url) == 1
