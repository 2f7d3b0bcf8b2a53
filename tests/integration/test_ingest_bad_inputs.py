"""The ingest bad-input table: every input ends in its one visible state.

All cases (the image table of fakes/imagefactory.py plus awkward key names) are
uploaded to the moto bucket at once; the real S3 -> SQS notifications are fed to
the real handler like Lambda does; then each case is checked on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from moto import mock_aws

from fakes.bedrock import FakeBedrock, fake_titan_embedding
from fakes.imagefactory import BAD_INPUT_CASES, ImageCase, compliant_jpeg
from imagesearch.images import prepare_image
from imagesearch.records import image_id_for_key
from imagesearch.resources import ENV_BEDROCK_READ_TIMEOUT, thumbnail_key
from tests.support.aws import AwsResources, create_resources
from tests.support.lambda_runtime import DrainStats, drain_queue

# Keys that real S3 URL-encodes in notifications (and moto encodes differently).
KEY_CASES = [
    ImageCase(
        id=f"key-{name}",
        key=key,
        factory=compliant_jpeg,
        outcome="indexed",
        content_type="image/jpeg",
        width=1920,
        height=1080,
    )
    for name, key in [
        ("spaces", "my holiday/beach day 1.jpg"),
        ("plus", "red+shoe+sale.jpg"),
        ("percent", "100% cotton %20 tee.jpg"),
        ("non-ascii", "naïve café/日本の写真.jpg"),
        ("mixed", "a b+c%d/ü+ñ %2B.jpg"),
    ]
]
CASES = BAD_INPUT_CASES + KEY_CASES


@dataclass
class Ingested:
    aws: AwsResources
    stats: DrainStats
    fake: FakeBedrock


@pytest.fixture(scope="module")
def ingested() -> Iterator[Ingested]:
    with pytest.MonkeyPatch.context() as patch, mock_aws(), FakeBedrock() as fake:
        # Module scope runs before the function-scoped autouse environment fixture.
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        patch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake.endpoint_url)
        aws = create_resources()
        for name, value in aws.env(**{ENV_BEDROCK_READ_TIMEOUT: "10"}).items():
            patch.setenv(name, value)
        from imagesearch.handlers import ingest

        ingest.configure(None)
        for case in CASES:
            aws.upload(case.key, case.data())
        stats = drain_queue(aws.sqs, aws.queue_url, ingest.handler)
        yield Ingested(aws, stats, fake)
        ingest.configure(None)


def test_every_message_succeeded_and_nothing_reached_the_dlq(ingested: Ingested) -> None:
    assert ingested.stats.failures == 0
    assert ingested.aws.queue_depth(ingested.aws.dlq_url) == 0
    keys = {item.key for item in ingested.aws.records()}
    assert keys == {ingested.aws.upload_prefix + case.key for case in CASES}


def test_table_has_at_least_twenty_distinct_inputs() -> None:
    assert len({case.id for case in CASES}) >= 20


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_outcome(ingested: Ingested, case: ImageCase) -> None:
    aws = ingested.aws
    key = aws.upload_prefix + case.key
    item = aws.record(key)
    assert item is not None, f"no record for {key}"
    assert item.key == key
    assert item.status == case.outcome
    thumb_exists = aws.object_exists(thumbnail_key(image_id_for_key(key)))
    if case.outcome == "rejected":
        assert case.reason is not None
        assert case.reason.lower() in item.reason.lower()
        assert item.vector is None
        assert not thumb_exists
        return
    assert item.reason is None
    assert item.content_type == case.content_type
    assert (item.width, item.height) == (case.width, case.height)
    assert item.model_id == "amazon.titan-embed-image-v1"
    assert item.dimension == 1024
    assert thumb_exists
    # The stored vector is the model's embedding of exactly what the pipeline prepared
    prepared = prepare_image(case.data())
    expected = np.asarray(fake_titan_embedding(None, prepared.model_bytes, 1024), np.float32)
    np.testing.assert_allclose(item.vector, expected / np.linalg.norm(expected), atol=1e-6)
