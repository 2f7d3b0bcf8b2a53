"""Ingest and search with each Bedrock model, through the real handlers.

Both handlers on one moto account and the fake Bedrock speaking each model's own
protocol: the function environment names the model (and dimension) as the stack
would. What each test checks: ranking works in that model's space, each call carried
the purpose the model documents for it, and each model got its input prepared from
its own limits (formats passed through untouched, pixels, bytes).
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fakes.bedrock import FakeBedrock, fake_embedding
from imagesearch import resources as r
from imagesearch.handlers import api
from tests.integration.api_fixtures import rest_event
from tests.support.lambda_runtime import FakeLambdaContext, drain_queue

MODELS = [
    (r.TITAN_MODEL_ID, 384),
    (r.NOVA_MODEL_ID, 1024),
    (r.NOVA_MODEL_ID, 256),
    (r.COHERE_MODEL_ID, 1024),
    (r.COHERE_MODEL_ID, 512),
    # A cross-region inference profile: the functions call the profile id (the IAM
    # conformance check needs a profile deployment's calls too).
    (f"us.{r.COHERE_MODEL_ID}", 1024),
]
SPACE = {r.TITAN_MODEL_ID: "titan", r.NOVA_MODEL_ID: "nova", r.COHERE_MODEL_ID: "cohere"}
DOCUMENT_PURPOSE = {r.NOVA_MODEL_ID: "GENERIC_INDEX", r.COHERE_MODEL_ID: "search_document"}
SENT_FORMATS = {
    r.NOVA_MODEL_ID: ["jpeg", "png", "webp"],
    r.COHERE_MODEL_ID: ["jpeg", "jpeg", "png"],
}
QUERY_PURPOSE = {r.NOVA_MODEL_ID: "IMAGE_RETRIEVAL", r.COHERE_MODEL_ID: "search_query"}


def encoded(color: tuple[int, int, int], fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt)
    return out.getvalue()


def search(body: dict[str, Any]) -> dict[str, Any]:
    raw = api.handler(rest_event("POST", "/search", body=body), FakeLambdaContext())
    assert raw["statusCode"] == 200, raw["body"]
    result: dict[str, Any] = json.loads(raw["body"])
    return result


@pytest.fixture
def model_env(request: pytest.FixtureRequest, aws, monkeypatch: pytest.MonkeyPatch):
    model_id, dimension = request.param
    monkeypatch.setenv(r.ENV_MODEL_ID, model_id)
    monkeypatch.setenv(r.ENV_EMBEDDING_DIMENSION, str(dimension))
    return model_id, dimension


@pytest.mark.parametrize("model_env", MODELS, indirect=True, ids=lambda m: f"{m[0]}-{m[1]}")
def test_ingest_and_search_with_each_model(
    model_env: tuple[str, int], aws, ingest_handler, fake_bedrock: FakeBedrock
) -> None:
    model_id, dimension = model_env
    base = r.split_model_id(model_id)[1]  # the fake logs a profile's calls as its model's
    api.configure(None)  # the default service, built from this environment
    try:
        # Given a red JPEG, a blue WebP and a green PNG uploaded and ingested
        red = aws.upload("red.jpg", encoded((220, 20, 20), "JPEG"))
        blue = aws.upload("blue.webp", encoded((20, 20, 220), "WEBP"))
        green = aws.upload("green.png", encoded((20, 200, 20), "PNG"))
        drain_queue(aws.sqs, aws.queue_url, ingest_handler)
        ingest_calls = fake_bedrock.call_log
        assert {c.model_id for c in ingest_calls} == {base}
        assert all(c.status == 200 and c.dimension == dimension for c in ingest_calls)
        if base in DOCUMENT_PURPOSE:
            assert {c.purpose for c in ingest_calls} == {DOCUMENT_PURPOSE[base]}
            # WebP goes to Nova untouched (a format it reads); Cohere gets it as a JPEG
            sent = sorted(f for c in ingest_calls for f in c.image_formats)
            assert sent == SENT_FORMATS[base]
        fake_bedrock.reset()

        # When searching by text, each colour finds its image first
        for word, key in (("red", red), ("blue", blue), ("green", green)):
            found = search({"text": word, "top_k": 3})
            assert found["results"][0]["key"] == key
            assert (found["model_id"], found["dimension"]) == (model_id, dimension)
        # And the stored vector is the model's own embedding of what it was sent
        record = aws.record(red)
        assert record is not None and record.vector is not None
        stored = np.asarray(record.vector)
        raw = np.asarray(
            fake_embedding(None, encoded((220, 20, 20), "JPEG"), dimension, SPACE[base])
        )
        assert stored == pytest.approx(raw / np.linalg.norm(raw), abs=1e-5)

        # When searching by image, and by text + image
        query = base64.b64encode(encoded((210, 30, 30), "PNG")).decode()
        assert search({"image": query, "top_k": 1})["results"][0]["key"] == red
        both = search({"text": "blue", "image": query, "top_k": 3})
        assert {res["key"] for res in both["results"][:2]} == {red, blue}

        queries = fake_bedrock.call_log
        if base in QUERY_PURPOSE:
            assert {c.purpose for c in queries} == {QUERY_PURPOSE[base]}
        # Nova takes one modality per request: text + image is two calls; the others one
        expected_calls = 3 + 1 + (2 if base == r.NOVA_MODEL_ID else 1)
        assert len(queries) == expected_calls
    finally:
        api.configure(None)


@pytest.mark.parametrize("model_env", [(r.COHERE_MODEL_ID, 256)], indirect=True, ids=lambda m: m[0])
def test_cohere_gets_images_within_its_pixel_area(
    model_env: tuple[str, int], aws, ingest_handler, fake_bedrock: FakeBedrock
) -> None:
    # Given a 3000x2000 photo (6 MP; Cohere downsamples anything over 2,458,624 px)
    aws.upload("big.jpg", encoded((200, 120, 40), "JPEG", size=(3000, 2000)))
    drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    # Then we sent it already within that area, keeping its aspect ratio
    [call] = fake_bedrock.call_log
    assert call.status == 200
    assert call.image_pixels is not None
    assert 2_300_000 < call.image_pixels <= 2_458_624


@pytest.mark.parametrize("model_env", [(r.NOVA_MODEL_ID, 384)], indirect=True, ids=lambda m: m[0])
def test_nova_reads_a_still_gif_untouched_and_a_transparent_png_converted(
    model_env: tuple[str, int], aws, ingest_handler, fake_bedrock: FakeBedrock
) -> None:
    gif = io.BytesIO()
    Image.new("P", (40, 30), 3).save(gif, "GIF")
    rgba = io.BytesIO()
    Image.new("RGBA", (40, 30), (10, 10, 200, 128)).save(rgba, "PNG")
    aws.upload("still.gif", gif.getvalue())
    aws.upload("alpha.png", rgba.getvalue())
    drain_queue(aws.sqs, aws.queue_url, ingest_handler)
    assert sorted(f for c in fake_bedrock.call_log for f in c.image_formats) == ["gif", "jpeg"]
