"""The fake Bedrock's Nova 2 and Cohere v4 protocols: requests the docs allow are
answered in each model's response shape, the rest are refused as Bedrock would
(ValidationException, 400), and the real adapters talk to it over HTTP."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError
from PIL import Image

from fakes.bedrock import FakeBedrock, fake_embedding
from imagesearch.embedders import CohereEmbedV4Embedder, EmbedInput, NovaMultimodalEmbedder
from imagesearch.resources import COHERE_MODEL_ID, NOVA_MODEL_ID


def png(color: tuple[int, int, int] = (220, 20, 20), fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 12), color).save(out, fmt)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def invoke(fake: FakeBedrock, model_id: str, body: Any) -> dict[str, Any]:
    response = fake.client().invoke_model(
        modelId=model_id,
        body=json.dumps(body).encode(),
        contentType="application/json",
        accept="application/json",
    )
    result: dict[str, Any] = json.loads(response["body"].read())
    return result


def refused(fake: FakeBedrock, model_id: str, body: Any) -> str:
    with pytest.raises(ClientError) as caught:
        invoke(fake, model_id, body)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return str(caught.value.response["Error"]["Message"])


def nova(**params: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"embeddingPurpose": "GENERIC_INDEX", "embeddingDimension": 256}
    base.update(params)
    return {
        "schemaVersion": "nova-multimodal-embed-v1",
        "taskType": "SINGLE_EMBEDDING",
        "singleEmbeddingParams": {k: v for k, v in base.items() if v is not None},
    }


NOVA_IMAGE = {"format": "png", "source": {"bytes": b64(png())}}


def test_nova_answers_in_its_shape_with_its_own_space(fake_bedrock: FakeBedrock) -> None:
    answer = invoke(fake_bedrock, NOVA_MODEL_ID, nova(image=NOVA_IMAGE))
    [entry] = answer["embeddings"]
    assert entry["embeddingType"] == "IMAGE"
    assert entry["embedding"] == pytest.approx(fake_embedding(None, png(), 256, "nova"))
    # Another model's space is unrelated: the same image is far from itself across models
    titan = np.asarray(fake_embedding(None, png(), 256, "titan"))
    own = np.asarray(entry["embedding"])
    assert abs(own @ titan / np.linalg.norm(own) / np.linalg.norm(titan)) < 0.5


def test_nova_text_is_truncated_at_the_end_or_refused_with_none(fake_bedrock: FakeBedrock) -> None:
    long = "red " * 9000
    cut = invoke(fake_bedrock, NOVA_MODEL_ID, nova(text={"truncationMode": "END", "value": long}))
    assert cut["embeddings"][0]["truncatedCharLength"] == 8192 * 4
    message = refused(
        fake_bedrock, NOVA_MODEL_ID, nova(text={"truncationMode": "NONE", "value": long})
    )
    assert "8192 tokens" in message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (nova(embeddingPurpose=None, image=NOVA_IMAGE), "embeddingPurpose"),
        (nova(embeddingPurpose="SEARCH", image=NOVA_IMAGE), "embeddingPurpose"),
        (nova(embeddingDimension=512, image=NOVA_IMAGE), "embeddingDimension"),
        (nova(image=NOVA_IMAGE, text={"truncationMode": "END", "value": "x"}), "Exactly one"),
        (nova(), "Exactly one"),
        (nova(image={**NOVA_IMAGE, "format": "jpeg"}), "format says jpeg"),
        (nova(image={**NOVA_IMAGE, "format": "bmp"}), "format"),
        (nova(image={"format": "png", "source": {"bytes": "@@"}}), "base64"),
        (nova(text={"value": "red"}), "truncationMode"),
        (nova(text={"truncationMode": "END", "value": ""}), "non-empty"),
        ({**nova(image=NOVA_IMAGE), "taskType": "SEGMENTED_EMBEDDING"}, "StartAsyncInvoke"),
        ({**nova(image=NOVA_IMAGE), "extra": 1}, "extraneous key"),
    ],
)
def test_nova_refuses_what_its_schema_does_not_allow(
    fake_bedrock: FakeBedrock, body: dict[str, Any], message: str
) -> None:
    assert message in refused(fake_bedrock, NOVA_MODEL_ID, body)


def cohere(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "input_type": "search_document",
        "embedding_types": ["float"],
        "output_dimension": 256,
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{b64(data)}"


def test_cohere_answers_one_embedding_per_input_in_order(fake_bedrock: FakeBedrock) -> None:
    red, blue = png((220, 20, 20)), png((20, 20, 220))
    answer = invoke(fake_bedrock, COHERE_MODEL_ID, cohere(images=[uri(red), uri(blue)]))
    assert answer["response_type"] == "embeddings_by_type"
    first, second = answer["embeddings"]["float"]
    assert first == pytest.approx(fake_embedding(None, red, 256, "cohere"))
    assert second == pytest.approx(fake_embedding(None, blue, 256, "cohere"))
    assert fake_bedrock.call_log[-1].items == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (cohere(input_type=None, texts=["a"]), "input_type"),
        (cohere(input_type="search", texts=["a"]), "input_type"),
        (cohere(output_dimension=384, texts=["a"]), "output_dimension"),
        (cohere(texts=["a"], images=[uri(png())]), "Exactly one"),
        (cohere(texts=[]), "non-empty"),
        (cohere(texts=["a"] * 97), "maximum is 96"),
        (cohere(images=[b64(png())]), "data URIs"),
        (cohere(images=[uri(png(), "image/jpeg")]), "the bytes are png"),
        (cohere(images=[uri(png(fmt="WEBP"), "image/webp")]), "Unsupported image format"),
        (cohere(inputs=[{"content": [{"type": "video", "video": "x"}]}]), "text or image_url"),
        (cohere(embedding_types=["float", "int4"], texts=["a"]), "embedding_types"),
        ({**cohere(texts=["a"]), "extra": 1}, "extraneous key"),
    ],
)
def test_cohere_refuses_what_its_docs_do_not_allow(
    fake_bedrock: FakeBedrock, body: dict[str, Any], message: str
) -> None:
    assert message in refused(fake_bedrock, COHERE_MODEL_ID, body)


def test_cohere_image_over_5_mib_is_refused(fake_bedrock: FakeBedrock) -> None:
    noise = np.random.default_rng(1).integers(0, 255, (1400, 1400, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise).save(out, "PNG")
    assert len(out.getvalue()) > 5 * 1024 * 1024
    assert "exceeds the maximum" in refused(
        fake_bedrock, COHERE_MODEL_ID, cohere(images=[uri(out.getvalue())])
    )


def test_adapters_through_profiles_and_arns(fake_bedrock: FakeBedrock) -> None:
    # A cross-region profile id and an inference-profile ARN reach the model they name
    client = fake_bedrock.client()
    us = CohereEmbedV4Embedder(f"us.{COHERE_MODEL_ID}", 256, client=client)
    us.embed(text="red")
    arn = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/global.{COHERE_MODEL_ID}"
    via_arn = invoke(fake_bedrock, arn, cohere(texts=["red"]))
    assert len(via_arn["embeddings"]["float"][0]) == 256
    assert [(c.model_id, c.profile) for c in fake_bedrock.call_log] == [
        (COHERE_MODEL_ID, "us"),
        (COHERE_MODEL_ID, "global"),
    ]


def test_cohere_batch_equals_single_calls_in_fewer_calls(fake_bedrock: FakeBedrock) -> None:
    embedder = CohereEmbedV4Embedder(dimension=512, client=fake_bedrock.client())
    items = [
        EmbedInput(png((c, 40, 200 - c)), text="a caption" if c % 2 else None)
        for c in range(0, 200, 25)
    ]
    batch = embedder.embed_images(items)
    calls = len(fake_bedrock.call_log)
    singles = [embedder.embed(text=i.text, image=i.image) for i in items]
    assert calls == 2 and len(fake_bedrock.call_log) == 2 + len(items)
    for one, many in zip(singles, batch, strict=True):
        assert one == pytest.approx(many, abs=1e-6)


def test_nova_joint_query_is_two_calls_of_one_modality(fake_bedrock: FakeBedrock) -> None:
    embedder = NovaMultimodalEmbedder(dimension=1024, client=fake_bedrock.client())
    vector = embedder.embed(text="red", image=png(), purpose="query")
    log = fake_bedrock.call_log
    assert sorted((c.has_text, c.has_image) for c in log) == [(False, True), (True, False)]
    assert {c.purpose for c in log} == {"IMAGE_RETRIEVAL"}
    text = np.asarray(fake_embedding("red", None, 1024, "nova"))
    image = np.asarray(fake_embedding(None, png(), 1024, "nova"))
    expected = text / np.linalg.norm(text) + image / np.linalg.norm(image)
    assert vector == pytest.approx(expected / np.linalg.norm(expected), abs=1e-5)


def test_a_refused_image_fails_every_request_that_carries_it(fake_bedrock: FakeBedrock) -> None:
    bad, good = png((1, 2, 3)), png((200, 100, 50))
    fake_bedrock.refuse_image(bad)
    uri = "data:image/png;base64,"
    # A multi-image request is refused whole, as the model refuses it
    message = refused(
        fake_bedrock, COHERE_MODEL_ID, cohere(images=[uri + b64(good), uri + b64(bad)])
    )
    assert "Unable to process the provided image" in message
    # with what it carried logged
    assert [(c.status, c.items) for c in fake_bedrock.call_log] == [(400, 2)]
    # Other images, and Titan requests without it, are answered; Titan's with it are not
    assert (
        len(
            invoke(fake_bedrock, COHERE_MODEL_ID, cohere(images=[uri + b64(good)]))["embeddings"][
                "float"
            ]
        )
        == 1
    )
    refused(fake_bedrock, "amazon.titan-embed-image-v1", {"inputImage": b64(bad)})
    # reset forgets it
    fake_bedrock.reset()
    invoke(fake_bedrock, COHERE_MODEL_ID, cohere(images=[uri + b64(bad)]))
