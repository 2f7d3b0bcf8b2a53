"""S3 notification parsing: encodings, test events, malformed bodies, backfill."""

from __future__ import annotations

import json

import pytest

from imagesearch.events import MalformedEvent, make_backfill_message, parse_message_body
from tests.support.s3events import s3_event_body


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        ("uploads/red+shoe+%2B+sale.jpg", "uploads/red shoe + sale.jpg"),  # real S3
        ("uploads%2Fnested%2Fa+b.jpg", "uploads/nested/a b.jpg"),  # moto encodes "/"
        ("uploads/100%25+cotton.png", "uploads/100% cotton.png"),
        ("uploads/na%C3%AFve+caf%C3%A9.jpg", "uploads/naïve café.jpg"),
        ("uploads/plain.jpg", "uploads/plain.jpg"),
    ],
)
def test_keys_are_url_decoded(encoded: str, decoded: str) -> None:
    body = json.loads(s3_event_body("created", "bkt", "placeholder", sequencer="01"))
    body["Records"][0]["s3"]["object"]["key"] = encoded
    [event] = parse_message_body(json.dumps(body))
    assert event.key == decoded


def test_builder_round_trips_awkward_keys() -> None:
    key = "uploads/a+b c%d/ü ñ.jpg"
    [event] = parse_message_body(s3_event_body("removed", "bkt", key, sequencer="0A"))
    assert (event.kind, event.key, event.sequencer) == ("removed", key, "0A")


def test_test_event_yields_nothing() -> None:
    assert parse_message_body('{"Service":"Amazon S3","Event":"s3:TestEvent"}') == []


def test_non_object_events_are_skipped() -> None:
    body = json.loads(s3_event_body("created", "bkt", "uploads/x.jpg"))
    body["Records"][0]["eventName"] = "ObjectRestore:Completed"
    assert parse_message_body(json.dumps(body)) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"foo": 1}', "no S3 'Records'"),
        ('{"Records": [{"eventSource": "aws:sqs"}]}', "not an aws:s3 event"),
        ('{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]}', "lacks"),
    ],
)
def test_malformed_bodies_raise(body: str, message: str) -> None:
    with pytest.raises(MalformedEvent, match=message):
        parse_message_body(body)


@pytest.mark.parametrize("force", [False, True])
def test_backfill_message_is_an_s3_event_with_a_marker(force: bool) -> None:
    key = "uploads/dir/a b+c.jpg"
    [event] = parse_message_body(make_backfill_message("bkt", key, force=force))
    assert (event.kind, event.bucket, event.key) == ("created", "bkt", key)
    assert event.sequencer is None
    assert event.backfill is True
    assert event.force is force
