"""Captioned images with Cohere Embed v4 whichever shape of ``image_url`` Bedrock takes
(decision 33): the fake Bedrock takes only one, and ingest indexes captioned images with
either; a refusal rejects an image only when it is the image's. Real ingest handler on
moto, joint captions, the fake speaking Cohere's protocol."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from fakes.bedrock import FakeBedrock
from imagesearch import resources as r
from tests.support.lambda_runtime import drain_queue


@pytest.fixture
def cohere_joint(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(r.ENV_MODEL_ID, r.COHERE_MODEL_ID)
    monkeypatch.setenv(r.ENV_EMBEDDING_DIMENSION, "256")
    monkeypatch.setenv(r.ENV_CAPTION_MODE, "joint")
    monkeypatch.setenv(r.ENV_BEDROCK_MAX_ATTEMPTS, "1")


def jpeg(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(out, "JPEG")
    return out.getvalue()


def upload_captioned(aws: Any, name: str, data: bytes) -> str:
    return str(aws.upload(name, data, Metadata={"caption": f"a photo called {name}"}))


@pytest.mark.parametrize(
    ("taken", "statuses"),
    [
        ({"string"}, [200]),  # the English Bedrock page's shape: one call
        ({"object"}, [400, 200]),  # {"url": ...}: refused once, then sent that way
    ],
)
def test_captioned_images_are_indexed_whichever_shape_the_model_takes(
    aws, cohere_joint, ingest_handler, fake_bedrock: FakeBedrock, taken, statuses
) -> None:
    # Given a Cohere model that takes only one shape of image_url
    fake_bedrock.cohere_image_url_shapes = taken
    # When a captioned image is ingested, and then a second one
    first = upload_captioned(aws, "first.jpg", jpeg((200, 20, 20)))
    stats = drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    second = upload_captioned(aws, "second.jpg", jpeg((20, 20, 200)))
    stats2 = drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    # Then both are indexed from text + image, with no message retried
    assert (stats.failures, stats2.failures) == (0, 0)
    assert [aws.record(k).status for k in (first, second)] == ["indexed", "indexed"]
    # And only the first image paid for learning the shape
    calls = fake_bedrock.call_log
    assert [c.status for c in calls] == [*statuses, 200]
    assert all(c.has_text and c.has_image for c in calls if c.status == 200)


def test_a_refused_captioned_image_is_rejected_once_the_shape_is_known(
    aws, cohere_joint, ingest_handler, fake_bedrock: FakeBedrock
) -> None:
    fake_bedrock.cohere_image_url_shapes = {"object"}
    good = upload_captioned(aws, "good.jpg", jpeg((20, 200, 20)))
    drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    # Given the model refuses this image (its shape now learnt)
    bad_image = jpeg((90, 90, 90))
    fake_bedrock.refuse_image(bad_image)
    bad = upload_captioned(aws, "bad.jpg", bad_image)
    stats = drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    # Then it is rejected with the model's message, in one call, not retried
    assert aws.record(good).status == "indexed"
    record = aws.record(bad)
    assert record.status == "rejected"
    assert "Unable to process the provided image." in record.reason
    assert stats.failures == 0
    assert fake_bedrock.call_log[-1].status == 400 and len(fake_bedrock.call_log) == 3


def test_a_captioned_image_refused_in_an_unknown_shape_is_failed_not_rejected(
    aws, cohere_joint, ingest_handler, fake_bedrock: FakeBedrock
) -> None:
    # Given a model whose shape is not learnt yet (no captioned image has gone through),
    # that refuses this image in the shape it takes and the other shape as a schema error
    fake_bedrock.cohere_image_url_shapes = {"object"}
    image = jpeg((90, 90, 90))
    fake_bedrock.refuse_image(image)
    key = upload_captioned(aws, "unsure.jpg", image)
    # When it is ingested
    stats = drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    # Then the doubt does not reject it: failed with both messages, retried, in the DLQ
    record = aws.record(key)
    assert record.status == "failed"
    assert "both documented shapes of image_url" in record.reason
    assert stats.failures == 5
    assert aws.queue_depth(aws.dlq_url) == 1
