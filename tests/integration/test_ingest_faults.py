"""Fault tolerance: a throttling, timing-out model must not lose or duplicate images."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from fakes.bedrock import fake_titan_embedding
from imagesearch.ingest import IngestService
from tests.support.lambda_runtime import drain_queue

UPLOADS = 200


def distinct_jpeg(i: int) -> bytes:
    # Every image differs (colour and a stripe position), so vectors identify them.
    image = Image.new("RGB", (40, 30), ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256))
    image.paste((255 - (i % 256), 0, 0), (i % 40, 0, i % 40 + 1, 30))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def test_200_uploads_with_throttling_and_timeouts_each_indexed_exactly_once(
    aws, ingest_handler, fake_bedrock, monkeypatch: pytest.MonkeyPatch
):
    # Given a model that throttles 30% of calls and times out some others
    fake_bedrock.throttle_rate = 0.30
    fake_bedrock.timeout_rate = 0.03
    fake_bedrock.timeout_seconds = 1.5
    monkeypatch.setenv("BEDROCK_READ_TIMEOUT_S", "0.5")
    # Standard retries: adaptive mode's client-side rate limiter would only add sleeps
    # here (minutes at a 30% throttle rate); the queue-level retry path is what is tested.
    monkeypatch.setenv("BEDROCK_RETRY_MODE", "standard")
    # and a spy on the outcomes the real service produces
    outcomes: Counter[tuple[str, str]] = Counter()
    real_handle_batch = IngestService.handle_batch

    def spy(self, messages, gate=None):
        results = real_handle_batch(self, messages, gate)
        for result in results:
            for outcome in result.outcomes:
                outcomes[(outcome.key, outcome.action)] += 1
        return results

    monkeypatch.setattr(IngestService, "handle_batch", spy)

    # When 200 images are uploaded and the queue is fed to the handler like Lambda does
    images = {
        aws.upload(f"batch/img-{i:03d}.jpg", distinct_jpeg(i)): distinct_jpeg(i)
        for i in range(UPLOADS)
    }
    stats = drain_queue(aws.sqs, aws.queue_url, ingest_handler)

    # Then failures happened and were retried through the queue...
    assert stats.failures > 0
    # ...every image is indexed exactly once, with its own vector, and nothing is lost
    items = [i for i in aws.records() if i.key.startswith("uploads/batch/")]
    assert sorted(i.key for i in items) == sorted(images)
    assert {i.status for i in items} == {"indexed"}
    for item in items:
        expected = np.asarray(fake_titan_embedding(None, images[item.key], 1024), np.float32)
        stored = aws.record(item.key)
        assert stored is not None and stored.vector is not None
        np.testing.assert_allclose(stored.vector, expected / np.linalg.norm(expected), atol=1e-6)
    indexed = Counter(
        key for (key, action), n in outcomes.items() if action == "indexed" for _ in range(n)
    )
    assert set(indexed) == set(images)
    assert max(indexed.values()) == 1
    assert aws.queue_depth(aws.dlq_url) == 0
    assert aws.queue_depth(aws.queue_url) == 0
