"""A versioned images bucket (finding 9.19): deletes leave delete markers, old versions
can be made current again, and ingest keeps exactly the state S3 shows.

Events are shaped like a versioned bucket's real notifications: ``versionId`` on every
record, ``ObjectRemoved:DeleteMarkerCreated`` for a plain delete, ``ObjectRemoved:Delete``
for the removal of one version, and a ``sequencer`` ordering them per key.
"""

from __future__ import annotations

import json

import numpy as np

from imagesearch import resources as r
from imagesearch.records import image_id_for_key
from tests.integration import test_ingest_ordering as ordering
from tests.integration.test_ingest_ordering import BLUE, RED, expected_vector, stored_vector
from tests.support.lambda_runtime import drain_queue
from tests.support.s3events import s3_event_body

DELETE_MARKER = "ObjectRemoved:DeleteMarkerCreated"
deliver = ordering.deliver  # the fixture: one SQS batch of chosen events


def _put(aws, name: str, body: bytes) -> tuple[str, str]:
    key = aws.upload_prefix + name
    response = aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=body)
    return key, response["VersionId"]


def test_the_bucket_is_versioned_with_the_stacks_lifecycle_rules(aws) -> None:
    versioning = aws.s3.get_bucket_versioning(Bucket=aws.bucket)
    rules = aws.s3.get_bucket_lifecycle_configuration(Bucket=aws.bucket)["Rules"]

    assert versioning["Status"] == "Enabled"
    expected = r.images_bucket_lifecycle_rules(r.CONTEXT_DEFAULTS["noncurrentVersionDays"])
    assert {rule["ID"]: rule.get("NoncurrentVersionExpiration") for rule in rules} == {
        rule["ID"]: rule.get("NoncurrentVersionExpiration") for rule in expected
    }


def test_a_delete_sends_delete_marker_created_and_the_image_leaves_the_index(
    aws, ingest_handler
) -> None:
    # Given an indexed image in the versioned bucket (through the bucket's own events)
    key, _ = _put(aws, "marked.jpg", RED)
    assert drain_queue(aws.sqs, aws.queue_url, ingest_handler).failures == 0
    assert aws.record(key).status == "indexed"

    # When it is deleted the ordinary way (a delete marker; the data stays as a version)
    aws.s3.delete_object(Bucket=aws.bucket, Key=key)

    # Then S3 announces the marker and ingest records the delete
    message = aws.sqs.receive_message(QueueUrl=aws.queue_url, VisibilityTimeout=0)["Messages"][0]
    assert json.loads(message["Body"])["Records"][0]["eventName"] == DELETE_MARKER
    assert drain_queue(aws.sqs, aws.queue_url, ingest_handler).failures == 0
    assert aws.record(key).status == "deleted"
    # and the original is still recoverable from its version
    versions = aws.s3.list_object_versions(Bucket=aws.bucket, Prefix=key)
    assert len(versions["Versions"]) == 1 and len(versions["DeleteMarkers"]) == 1


def test_versioned_events_out_of_order_end_in_the_newest_state(aws, deliver, fake_bedrock) -> None:
    # Given v1, v2, then a delete marker on one key
    key, v1 = _put(aws, "shuffled.jpg", RED)
    _, v2 = _put(aws, "shuffled.jpg", BLUE)
    marker = aws.s3.delete_object(Bucket=aws.bucket, Key=key)["VersionId"]
    events = [
        s3_event_body("created", aws.bucket, key, sequencer="0060A1", version_id=v1),
        s3_event_body("created", aws.bucket, key, sequencer="0060A2", version_id=v2),
        s3_event_body(
            "removed",
            aws.bucket,
            key,
            sequencer="0060A3",
            version_id=marker,
            event_name=DELETE_MARKER,
        ),
    ]

    # When the queue delivers them newest first
    for body in reversed(events):
        assert deliver(body)["batchItemFailures"] == []

    # Then the key is deleted and the stale creates cost no model call
    assert aws.record(key).status == "deleted"
    assert aws.record(key).sequencer.endswith("0060A3")
    assert fake_bedrock.calls == 0


def test_removing_the_current_version_brings_the_previous_one_back(aws, deliver) -> None:
    # Given v1 (red) overwritten by v2 (blue), indexed as blue
    key, _ = _put(aws, "undo.jpg", RED)
    _, v2 = _put(aws, "undo.jpg", BLUE)
    deliver(s3_event_body("created", aws.bucket, key, sequencer="0070B2", version_id=v2))
    np.testing.assert_allclose(stored_vector(aws, key), expected_vector(BLUE), atol=1e-6)

    # When v2 itself is removed (the overwrite undone): v1 is current again
    aws.s3.delete_object(Bucket=aws.bucket, Key=key, VersionId=v2)
    deliver(s3_event_body("removed", aws.bucket, key, sequencer="0070B3", version_id=v2))

    # Then the index holds v1 again, not the removed version and not a delete
    np.testing.assert_allclose(stored_vector(aws, key), expected_vector(RED), atol=1e-6)
    head = aws.s3.head_object(Bucket=aws.bucket, Key=key)
    assert aws.record(key).etag == head["ETag"].strip('"')


def test_removing_an_old_version_leaves_the_current_one_alone(aws, deliver, fake_bedrock) -> None:
    key, v1 = _put(aws, "history.jpg", RED)
    _, v2 = _put(aws, "history.jpg", BLUE)
    deliver(s3_event_body("created", aws.bucket, key, sequencer="0080C2", version_id=v2))
    before = aws.record(key)

    # When the noncurrent v1 is removed for good
    aws.s3.delete_object(Bucket=aws.bucket, Key=key, VersionId=v1)
    deliver(s3_event_body("removed", aws.bucket, key, sequencer="0080C3", version_id=v1))

    # Then v2 stays indexed, unchanged, without another model call
    after = aws.record(key)
    assert after.status == "indexed"
    assert after.etag == before.etag
    assert fake_bedrock.calls == 1
    assert aws.object_exists(r.thumbnail_key(image_id_for_key(key)))
