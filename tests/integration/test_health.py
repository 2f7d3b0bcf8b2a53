"""GET /health at constant cost on both tiers (docs/decisions.md entry 39): the real API
and maintenance handlers over moto, with every DynamoDB call they make counted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import botocore.client
import pytest

from fakes import bedrock as fake
from imagesearch import resources as r
from imagesearch.catalog.dynamodb import DynamoDBCatalog
from imagesearch.health import ImageCount, publish_indexed_count
from imagesearch.records import iso_from_ms
from tests.integration.api_fixtures import MODEL_ID, Api, text_vector
from tests.integration.api_fixtures import api_fixture as api_fixture
from tests.integration.catalog_support import START, Clock
from tests.support.aws import AwsResources


@pytest.fixture
def dynamodb_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every DynamoDB call any boto3 client makes from here on: (operation, params)."""
    calls: list[tuple[str, dict[str, Any]]] = []
    make_api_call = botocore.client.BaseClient._make_api_call

    def counting(self: Any, operation: str, params: Any) -> Any:
        if self.meta.service_model.service_name == "dynamodb":
            calls.append((operation, params))
        return make_api_call(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", counting)
    yield calls


def use_tier(monkeypatch: pytest.MonkeyPatch, tier: str) -> None:
    monkeypatch.setenv(r.ENV_VECTOR_STORE, tier)
    if tier == "s3vectors":
        # /health never touches the vector index: no S3 Vectors call is made at all.
        monkeypatch.setenv(r.ENV_VECTOR_BUCKET, "images-vectors")
    else:
        monkeypatch.setenv(r.ENV_SNAPSHOT_PREFIX, r.SNAPSHOT_PREFIX)


@pytest.mark.parametrize("tier", ["dynamodb", "s3vectors"])
def test_health_costs_one_get_item_a_minute_and_no_query_or_scan(
    api: Api,
    tier: str,
    dynamodb_calls: list[tuple[str, dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from imagesearch.handlers import maintenance

    use_tier(monkeypatch, tier)
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        api.seed(name, text_vector(fake, name))
    api.seed("bad.jpg", None, status=r.STATUS_REJECTED, reason="corrupt")
    # The maintenance function (the one publisher) counts and publishes
    assert maintenance.handler({}, None)["images"] == 3
    dynamodb_calls.clear()

    # When anonymous callers poll /health, a cold instance included
    answers = [api.get("/health", headers={"Authorization": ""}) for _ in range(20)]

    # Then every answer has the published count, and all of them together cost one
    # GetItem of the published count's item: no Query, no Scan, nothing else
    assert {answer.status for answer in answers} == {200}
    assert {answer.body["images"] for answer in answers} == {3}
    assert answers[0].body["images_as_of"].endswith("Z")
    assert [operation for operation, _ in dynamodb_calls] == ["GetItem"]
    assert dynamodb_calls[0][1]["Key"] == {"image_id": {"S": r.IMAGE_COUNT_ID}}
    assert answers[0].body["model_id"] == MODEL_ID


def test_the_scale_tier_publishes_with_a_count_query_only_when_due(
    aws: AwsResources, dynamodb_calls: list[tuple[str, dict[str, Any]]]
) -> None:
    catalog = DynamoDBCatalog(aws.table, client=aws.dynamodb)
    clock = Clock(START)
    for name in ("a.jpg", "b.jpg"):
        catalog.put(indexed_record(aws, name))
    catalog.put(indexed_record(aws, "bad.jpg", status=r.STATUS_REJECTED))
    dynamodb_calls.clear()

    # The first run counts the indexed records (a COUNT query on by_status) and
    # publishes that, as of when it began
    first = publish_indexed_count(catalog, clock=clock, interval=600)
    assert first == ImageCount(2, int(START * 1000))
    assert [operation for operation, _ in dynamodb_calls] == ["GetItem", "Query", "PutItem"]
    query = dynamodb_calls[1][1]
    assert (query["IndexName"], query["Select"]) == (r.INDEX_BY_STATUS, "COUNT")
    assert catalog.published_count() == first

    # A run before the interval is over reads the item and stops there
    catalog.put(indexed_record(aws, "c.jpg"))
    dynamodb_calls.clear()
    clock.advance(599)
    assert publish_indexed_count(catalog, clock=clock, interval=600) is None
    assert [operation for operation, _ in dynamodb_calls] == ["GetItem"]

    # Once it is over, the next run recounts
    clock.advance(1)
    again = publish_indexed_count(catalog, clock=clock, interval=600)
    assert again == ImageCount(3, int((START + 600) * 1000))


def test_the_scale_tier_maintenance_runs_without_a_model_switch(
    aws: AwsResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imagesearch.handlers import maintenance

    use_tier(monkeypatch, "s3vectors")
    aws.catalog.put(indexed_record(aws, "a.jpg"))
    assert maintenance.handler({}, None) == {"images": 1}
    # Within the interval the next run publishes nothing (the count stays)
    aws.catalog.put(indexed_record(aws, "b.jpg"))
    assert maintenance.handler({}, None) == {}
    published = aws.catalog.published_count()
    assert published is not None and published.images == 1 and published.model_id is None


def test_the_embedded_tier_publishes_every_run_as_of_when_it_was_true(
    aws: AwsResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imagesearch.handlers import maintenance

    later = _ShiftedTime()
    monkeypatch.setattr(maintenance, "time", later)
    use_tier(monkeypatch, "dynamodb")
    aws.catalog.put(indexed_record(aws, "a.jpg"))
    first = maintenance.handler({}, None)
    published = aws.catalog.published_count()
    assert published == ImageCount(
        1, first["watermark_ms"], MODEL_ID, int(r.CONTEXT_DEFAULTS["embeddingDimension"])
    )

    # A run a minute later that finds nothing changed: the same count, as of that run
    later.offset += 60
    second = maintenance.handler({}, None)
    assert second["reason"] == "unchanged"
    republished = aws.catalog.published_count()
    assert republished is not None and republished.images == 1
    assert republished.as_of_ms >= published.as_of_ms + 60_000
    assert iso_from_ms(republished.as_of_ms).endswith("Z")


class _ShiftedTime:
    """``time`` for the maintenance handler, ``offset`` seconds ahead of the real one."""

    def __init__(self) -> None:
        self.offset = 0.0

    def time(self) -> float:
        return time.time() + self.offset


def indexed_record(aws: AwsResources, name: str, status: str = r.STATUS_INDEXED) -> Any:
    from imagesearch.embedders.base import unit_vector
    from imagesearch.records import ImageRecord, image_id_for_key

    key = aws.upload_prefix + name
    indexed = status == r.STATUS_INDEXED
    return ImageRecord(
        image_id=image_id_for_key(key),
        key=key,
        status=status,
        etag="etag",
        size=1,
        content_type="image/jpeg",
        width=1,
        height=1,
        uploaded_at="2025-01-01T00:00:00Z",
        indexed_at="2025-01-01T00:00:01Z" if indexed else None,
        model_id=MODEL_ID,
        dimension=int(r.CONTEXT_DEFAULTS["embeddingDimension"]) if indexed else None,
        sequencer="S" + "0" * 31 + "1",
        vector=unit_vector(text_vector(fake, name)) if indexed else None,
        reason=None if indexed else "corrupt",
    )
