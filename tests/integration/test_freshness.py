"""Freshness: what ingest writes shows in search on a warm instance, deletions too.

Both real handlers on one moto account: uploads go through the S3 -> SQS -> ingest
path, searches through API Gateway events to the search handler, whose in-memory
index stays warm between calls and refreshes from the change index.
"""

from __future__ import annotations

import io
import json

from PIL import Image

from imagesearch.handlers import api
from tests.integration.api_fixtures import rest_event
from tests.support.lambda_runtime import FakeLambdaContext, drain_queue


def solid_jpeg(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(out, "JPEG", quality=90)
    return out.getvalue()


def search(text: str) -> list[str]:
    return [key for key, _ in scored(text)]


def scored(text: str) -> list[tuple[str, float]]:
    raw = api.handler(
        rest_event("POST", "/search", body={"text": text, "top_k": 10}), FakeLambdaContext()
    )
    assert raw["statusCode"] == 200, raw["body"]
    return [(r["key"], r["score"]) for r in json.loads(raw["body"])["results"]]


def test_index_search_ingest_delete_search_again(aws, ingest_handler, fake_bedrock):
    api.configure(None)  # the default service, built from this test's environment
    try:
        # Given one indexed red image and a warm search instance
        red = aws.upload("red.jpg", solid_jpeg((220, 20, 20)))
        drain_queue(aws.sqs, aws.queue_url, ingest_handler)
        assert search("red")[0] == red

        # When a blue image is ingested, the same warm instance finds it
        blue = aws.upload("blue.jpg", solid_jpeg((20, 20, 220)))
        drain_queue(aws.sqs, aws.queue_url, ingest_handler)
        assert search("blue")[0] == blue
        assert set(search("red")) == {red, blue}

        # When the red image is deleted from the bucket, it leaves the results
        aws.s3.delete_object(Bucket=aws.bucket, Key=red)
        drain_queue(aws.sqs, aws.queue_url, ingest_handler)
        assert search("red") == [blue]

        # And an overwrite with other content is searched as the new content
        [(_, green_score_before)] = scored("green")
        aws.upload("blue.jpg", solid_jpeg((20, 200, 20)))
        drain_queue(aws.sqs, aws.queue_url, ingest_handler)
        [(key, green_score_after)] = scored("green")
        assert key == blue
        assert green_score_after > green_score_before + 0.3
    finally:
        api.configure(None)
