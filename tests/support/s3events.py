"""S3 notification bodies as real S3 sends them (URL-encoded keys, sequencers)."""

from __future__ import annotations

import json
from urllib.parse import quote_plus


def s3_event_body(
    kind: str,
    bucket: str,
    key: str,
    *,
    sequencer: str | None = None,
    event_time: str = "2026-11-22T10:00:00.000Z",
    etag: str | None = None,
    size: int | None = None,
    version_id: str | None = None,
    event_name: str | None = None,
) -> str:
    """``version_id`` as a versioned bucket sends it; ``event_name`` overrides the
    kind's default (e.g. ``ObjectRemoved:DeleteMarkerCreated``)."""
    default = {"created": "ObjectCreated:Put", "removed": "ObjectRemoved:Delete"}[kind]
    event_name = event_name or default
    obj: dict[str, object] = {"key": quote_plus(key, safe="/")}
    if version_id is not None:
        obj["versionId"] = version_id
    if sequencer is not None:
        obj["sequencer"] = sequencer
    if etag is not None:
        obj["eTag"] = etag
    if size is not None:
        obj["size"] = size
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": event_time,
        "eventName": event_name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "ingest",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": obj,
        },
    }
    return json.dumps({"Records": [record]})


def sqs_message(body: str, message_id: str = "m-1") -> dict[str, str]:
    """A received SQS message (the shape `receive_message` returns)."""
    return {"MessageId": message_id, "ReceiptHandle": f"rh-{message_id}", "Body": body}
