"""S3 event notifications as they arrive in SQS message bodies.

Real S3 URL-encodes keys (spaces as ``+``, ``+`` as ``%2B``); moto also encodes
``/`` as ``%2F``. ``unquote_plus`` decodes both. The configuration-time
``s3:TestEvent`` carries no records and is acknowledged without work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote_plus, unquote_plus

BACKFILL_FIELD = "imagesearch"


class MalformedEvent(ValueError):
    """A message that is not an S3 notification we understand (it goes to the DLQ)."""


@dataclass(frozen=True)
class ObjectEvent:
    kind: Literal["created", "removed"]
    bucket: str
    key: str
    event_time: str | None
    sequencer: str | None
    etag: str | None = None
    size: int | None = None
    backfill: bool = False
    force: bool = False


def parse_message_body(body: str) -> list[ObjectEvent]:
    """Object events of one SQS message body; [] for test events and other
    non-object notifications."""
    try:
        payload = json.loads(body)
    except (TypeError, ValueError) as error:
        raise MalformedEvent(f"message body is not JSON: {error}") from error
    if not isinstance(payload, dict):
        raise MalformedEvent("message body is not a JSON object")
    if payload.get("Event") == "s3:TestEvent":
        return []
    records = payload.get("Records")
    if not isinstance(records, list):
        raise MalformedEvent("message body has no S3 'Records' list")
    return [event for event in map(_parse_record, records) if event is not None]


def _parse_record(record: Any) -> ObjectEvent | None:
    if not isinstance(record, dict) or record.get("eventSource") != "aws:s3":
        raise MalformedEvent("record is not an aws:s3 event")
    name = str(record.get("eventName", ""))
    if name.startswith("ObjectCreated:"):
        kind: Literal["created", "removed"] = "created"
    elif name.startswith("ObjectRemoved:"):
        kind = "removed"
    else:
        return None  # e.g. restore or lifecycle events: nothing to index
    try:
        s3 = record["s3"]
        bucket = s3["bucket"]["name"]
        obj = s3["object"]
        key = unquote_plus(obj["key"])
    except (KeyError, TypeError) as error:
        raise MalformedEvent(f"S3 record lacks {error}") from error
    if not key:
        raise MalformedEvent("S3 record has an empty key")
    marker = record.get(BACKFILL_FIELD) or {}
    size = obj.get("size")
    return ObjectEvent(
        kind=kind,
        bucket=bucket,
        key=key,
        event_time=record.get("eventTime"),
        sequencer=obj.get("sequencer") or None,
        etag=obj.get("eTag") or obj.get("etag") or None,
        size=int(size) if size is not None else None,
        backfill=bool(marker.get("backfill")),
        force=bool(marker.get("force")),
    )


def make_backfill_message(
    bucket: str, key: str, *, force: bool = False, region: str = "us-east-1"
) -> str:
    """SQS body that asks ingest to (re)process ``key`` as if it had just been uploaded.

    Shaped like a real S3 notification so the one ingest path handles it; the
    ``imagesearch`` marker tells ingest it carries no S3 sequencer of its own and
    whether to re-embed records made with another model or dimension and to ask the model
    again about images it refused (``force``).
    """
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": now,
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": quote_plus(key, safe="/")},
        },
        BACKFILL_FIELD: {"backfill": True, "force": force},
    }
    return json.dumps({"Records": [record]})
