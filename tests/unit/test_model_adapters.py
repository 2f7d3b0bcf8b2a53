"""Nova 2 and Cohere v4 adapters without network: a real bedrock-runtime client
behind botocore's Stubber. Wire format, purposes, combination rules, batching,
response parsing and the Bedrock error translation they share with Titan."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from PIL import Image

from imagesearch.embedders import (
    CohereEmbedV4Embedder,
    EmbedInput,
    NovaMultimodalEmbedder,
    build_embedder,
    build_embedder_for,
    embed_images,
    limits_of,
    unit_vector,
)
from imagesearch.embedders.cohere import BATCH_BODY_BYTES, MAX_INPUTS_PER_CALL
from imagesearch.errors import (
    EmbedderConfigurationError,
    InvalidEmbeddingInput,
    TransientEmbeddingError,
)
from imagesearch.resources import COHERE_MODEL_ID, NOVA_MODEL_ID, TITAN_MODEL_ID
from imagesearch.settings import CommonSettings


def image(fmt: str = "PNG", color: tuple[int, int, int] = (200, 10, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, fmt)
    return buffer.getvalue()


def body_of(payload: dict[str, Any]) -> dict[str, Any]:
    raw = json.dumps(payload).encode()
    return {"body": StreamingBody(io.BytesIO(raw), len(raw)), "contentType": "application/json"}


class Stubbed:
    def __init__(self) -> None:
        self.client = boto3.client("bedrock-runtime", region_name="us-east-1")
        self.stubber = Stubber(self.client)
        self.sent: list[dict[str, Any]] = []
        self.client.meta.events.register(
            "provide-client-params.bedrock-runtime.InvokeModel",
            lambda params, **_: self.sent.append(dict(params)),
        )

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(p["body"]) for p in self.sent]


@pytest.fixture
def bedrock() -> Iterator[Stubbed]:
    stubbed = Stubbed()
    with stubbed.stubber:
        yield stubbed


def axis(dimension: int, i: int) -> list[float]:
    values = [0.0] * dimension
    values[i] = 2.0
    return values


def nova_reply(values: list[float], kind: str = "IMAGE") -> dict[str, Any]:
    return body_of({"embeddings": [{"embeddingType": kind, "embedding": values}]})


def cohere_reply(*vectors: list[float]) -> dict[str, Any]:
    return body_of({"id": "x", "embeddings": {"float": list(vectors)}, "texts": []})


# --- Nova 2 ---------------------------------------------------------------------------


def test_nova_document_image_request(bedrock: Stubbed) -> None:
    embedder = NovaMultimodalEmbedder(dimension=256, client=bedrock.client)
    bedrock.stubber.add_response("invoke_model", nova_reply(axis(256, 3)))
    data = image("WEBP")
    vector = embedder.embed(image=data, purpose="document")
    # Then a unit vector, from one SINGLE_EMBEDDING request in the documented shape
    assert vector.dtype == np.float32 and vector[3] == pytest.approx(1.0)
    [sent] = bedrock.sent
    assert sent["modelId"] == NOVA_MODEL_ID
    assert json.loads(sent["body"]) == {
        "schemaVersion": "nova-multimodal-embed-v1",
        "taskType": "SINGLE_EMBEDDING",
        "singleEmbeddingParams": {
            "embeddingPurpose": "GENERIC_INDEX",
            "embeddingDimension": 256,
            "image": {
                "detailLevel": "STANDARD_IMAGE",
                "format": "webp",
                "source": {"bytes": base64.b64encode(data).decode()},
            },
        },
    }


def test_nova_text_query_uses_image_retrieval_and_truncates_at_the_end(bedrock: Stubbed) -> None:
    embedder = NovaMultimodalEmbedder(dimension=384, client=bedrock.client)
    bedrock.stubber.add_response("invoke_model", nova_reply(axis(384, 0), "TEXT"))
    embedder.embed(text="red shoe", purpose="query")
    params = bedrock.bodies()[0]["singleEmbeddingParams"]
    assert params["embeddingPurpose"] == "IMAGE_RETRIEVAL"
    assert params["text"] == {"truncationMode": "END", "value": "red shoe"}


@pytest.mark.parametrize(
    ("caption_mode", "purpose"), [("none", "IMAGE_RETRIEVAL"), ("joint", "GENERIC_RETRIEVAL")]
)
def test_nova_queries_an_index_of_captioned_images_with_generic_retrieval(
    bedrock: Stubbed, caption_mode: str, purpose: str
) -> None:
    # The Nova docs pick a query's purpose by what the index holds: image embeddings only,
    # or (joint captions) text + image embeddings too; stored images are GENERIC_INDEX alike.
    settings = CommonSettings(
        bucket="bkt", table="tbl", model_id=NOVA_MODEL_ID, dimension=384, caption_mode=caption_mode
    )
    embedder = build_embedder_for(settings, client=bedrock.client)
    for _ in range(3):
        bedrock.stubber.add_response("invoke_model", nova_reply(axis(384, 0), "TEXT"))
    embedder.embed(text="red shoe", purpose="query")
    embedder.embed(image=image(), purpose="query")
    embedder.embed(text="red shoe", purpose="document")
    purposes = [body["singleEmbeddingParams"]["embeddingPurpose"] for body in bedrock.bodies()]
    assert purposes == [purpose, purpose, "GENERIC_INDEX"]


def test_nova_refuses_a_query_purpose_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="query_purpose"):
        NovaMultimodalEmbedder(dimension=384, query_purpose="TEXT_RETRIEVAL")


def test_nova_text_and_image_is_two_calls_averaged(bedrock: Stubbed) -> None:
    embedder = NovaMultimodalEmbedder(dimension=256, client=bedrock.client)
    bedrock.stubber.add_response("invoke_model", nova_reply(axis(256, 0), "TEXT"))
    bedrock.stubber.add_response("invoke_model", nova_reply(axis(256, 1)))
    vector = embedder.embed(text="red", image=image(), purpose="query")
    # Then the renormalised average of the two unit vectors
    expected = unit_vector(np.array(axis(256, 0)) / 2 + np.array(axis(256, 1)) / 2)
    assert vector == pytest.approx(expected)
    kinds = sorted(
        "text" if "text" in b["singleEmbeddingParams"] else "image" for b in bedrock.bodies()
    )
    assert kinds == ["image", "text"]


def test_nova_refuses_formats_it_does_not_read_before_calling(bedrock: Stubbed) -> None:
    embedder = NovaMultimodalEmbedder(client=bedrock.client)
    with pytest.raises(InvalidEmbeddingInput, match="PNG, JPEG, GIF or WebP"):
        embedder.embed(image=image("BMP"))
    with pytest.raises(InvalidEmbeddingInput, match="empty"):
        embedder.embed(image=b"")
    with pytest.raises(InvalidEmbeddingInput, match="empty"):
        embedder.embed(text="  ", image=image())
    assert bedrock.sent == []


@pytest.mark.parametrize(
    "payload",
    [{"embeddings": []}, {"embeddings": [{"embedding": [1.0] * 10}]}, {"embedding": [1.0] * 256}],
)
def test_nova_unexpected_response_is_a_configuration_error(
    bedrock: Stubbed, payload: dict[str, Any]
) -> None:
    bedrock.stubber.add_response("invoke_model", body_of(payload))
    with pytest.raises(EmbedderConfigurationError):
        NovaMultimodalEmbedder(dimension=256, client=bedrock.client).embed(text="red")


# --- Cohere v4 ------------------------------------------------------------------------


def test_cohere_image_document_request(bedrock: Stubbed) -> None:
    embedder = CohereEmbedV4Embedder(dimension=512, client=bedrock.client)
    bedrock.stubber.add_response("invoke_model", cohere_reply(axis(512, 5)))
    data = image("JPEG")
    assert embedder.embed(image=data)[5] == pytest.approx(1.0)
    assert bedrock.bodies() == [
        {
            "input_type": "search_document",
            "embedding_types": ["float"],
            "output_dimension": 512,
            "images": [f"data:image/jpeg;base64,{base64.b64encode(data).decode()}"],
        }
    ]


def test_cohere_query_text_and_fused_text_image(bedrock: Stubbed) -> None:
    embedder = CohereEmbedV4Embedder(dimension=256, client=bedrock.client)
    bedrock.stubber.add_response("invoke_model", cohere_reply(axis(256, 1)))
    bedrock.stubber.add_response("invoke_model", cohere_reply(axis(256, 2)))
    embedder.embed(text="red shoe", purpose="query")
    data = image()
    embedder.embed(text="red", image=data, purpose="query")
    text_body, fused_body = bedrock.bodies()
    assert text_body["input_type"] == "search_query" and text_body["texts"] == ["red shoe"]
    # Text + image is one fused input, not two embeddings averaged
    assert fused_body["inputs"] == [
        {
            "content": [
                {"type": "text", "text": "red"},
                {
                    "type": "image_url",
                    "image_url": f"data:image/png;base64,{base64.b64encode(data).decode()}",
                },
            ]
        }
    ]


def test_cohere_batch_is_one_call_per_kind_with_results_in_order(bedrock: Stubbed) -> None:
    embedder = CohereEmbedV4Embedder(dimension=256, client=bedrock.client)
    items = [
        EmbedInput(image(color=(1, 1, 1))),
        EmbedInput(image(color=(2, 2, 2)), text="caption"),
        EmbedInput(image(color=(3, 3, 3))),
    ]
    # images-only call answers items 0 and 2, the fused call item 1
    bedrock.stubber.add_response("invoke_model", cohere_reply(axis(256, 0), axis(256, 2)))
    bedrock.stubber.add_response("invoke_model", cohere_reply(axis(256, 1)))
    vectors = embed_images(embedder, items)
    assert [int(np.argmax(v)) for v in vectors] == [0, 1, 2]
    plain, fused = bedrock.bodies()
    assert len(plain["images"]) == 2 and len(fused["inputs"]) == 1


def test_cohere_batch_splits_at_96_inputs_and_at_the_body_budget(bedrock: Stubbed) -> None:
    from imagesearch.embedders.cohere import _chunks

    small = [EmbedInput(b"x" * 10) for _ in range(MAX_INPUTS_PER_CALL + 4)]
    assert [len(c) for c in _chunks(list(range(len(small))), small)] == [96, 4]
    big = [EmbedInput(b"x" * (BATCH_BODY_BYTES // 3)) for _ in range(4)]
    assert [len(c) for c in _chunks(list(range(4)), big)] == [2, 2]


def test_cohere_wrong_number_of_embeddings_is_a_configuration_error(bedrock: Stubbed) -> None:
    embedder = CohereEmbedV4Embedder(dimension=256, client=bedrock.client)
    bedrock.stubber.add_response("invoke_model", cohere_reply(axis(256, 0)))
    with pytest.raises(EmbedderConfigurationError, match="1 float embeddings; expected 2"):
        embedder.embed_images([EmbedInput(image()), EmbedInput(image())])


def test_cohere_refuses_webp_and_empty_input_before_calling(bedrock: Stubbed) -> None:
    embedder = CohereEmbedV4Embedder(client=bedrock.client)
    with pytest.raises(InvalidEmbeddingInput, match="PNG or JPEG"):
        embedder.embed(image=image("WEBP"))
    with pytest.raises(InvalidEmbeddingInput, match="empty"):
        embedder.embed(text="")
    assert bedrock.sent == []


# --- Shared: construction, limits, error translation, batch fallback -----------------


@pytest.mark.parametrize(
    ("model_id", "dimension", "adapter"),
    [
        (NOVA_MODEL_ID, 3072, NovaMultimodalEmbedder),
        (COHERE_MODEL_ID, 1536, CohereEmbedV4Embedder),
        (f"us.{COHERE_MODEL_ID}", 256, CohereEmbedV4Embedder),
        (f"global.{COHERE_MODEL_ID}", 1024, CohereEmbedV4Embedder),
    ],
)
def test_factory_builds_the_adapter_of_each_model_and_profile(
    model_id: str, dimension: int, adapter: type
) -> None:
    embedder = build_embedder(model_id, dimension)
    assert isinstance(embedder, adapter)
    assert (embedder.model_id, embedder.dimension) == (model_id, dimension)


@pytest.mark.parametrize(
    ("model_id", "dimension"),
    [
        (NOVA_MODEL_ID, 512),
        (COHERE_MODEL_ID, 384),
        (TITAN_MODEL_ID, 3072),
        ("cohere.embed-v3", 1024),
    ],
)
def test_factory_refuses_dimensions_and_models_it_lacks(model_id: str, dimension: int) -> None:
    with pytest.raises(ValueError):
        build_embedder(model_id, dimension)


def test_each_adapter_states_its_own_limits() -> None:
    nova = limits_of(build_embedder(NOVA_MODEL_ID, 1024))
    cohere = limits_of(build_embedder(COHERE_MODEL_ID, 1024))
    titan = limits_of(build_embedder(TITAN_MODEL_ID, 1024))
    assert nova.native_formats == {"jpeg", "png", "gif", "webp"}
    assert cohere.native_formats == titan.native_formats == {"jpeg", "png"}
    assert (cohere.max_area, cohere.max_bytes, cohere.max_batch) == (2_458_624, 5 * 1024**2, 96)
    assert (titan.max_side, titan.max_bytes) == (2048, 5_000_000)


@pytest.mark.parametrize("adapter", [NovaMultimodalEmbedder, CohereEmbedV4Embedder])
@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("ThrottlingException", 429, TransientEmbeddingError),
        ("ServiceUnavailableException", 503, TransientEmbeddingError),
        ("ValidationException", 400, EmbedderConfigurationError),  # "no": not about the input
        ("AccessDeniedException", 403, EmbedderConfigurationError),
    ],
)
def test_bedrock_errors_are_translated_alike_for_every_model(
    bedrock: Stubbed, adapter: type, code: str, status: int, error: type
) -> None:
    bedrock.stubber.add_client_error(
        "invoke_model", service_error_code=code, service_message="no", http_status_code=status
    )
    with pytest.raises(error):
        adapter(dimension=256, client=bedrock.client, max_attempts=1).embed(text="red")


def test_embed_images_falls_back_to_one_call_per_item_without_a_batch_method() -> None:
    class Single:
        model_id, dimension = "m", 2
        calls: list[tuple[str | None, str]] = []

        def embed(self, *, text=None, image=None, purpose="document"):  # type: ignore[no-untyped-def]
            self.calls.append((text, purpose))
            return unit_vector([1.0, 0.0])

    single = Single()
    vectors = embed_images(single, [EmbedInput(b"a"), EmbedInput(b"b", text="t")])  # type: ignore[arg-type]
    assert len(vectors) == 2 and single.calls == [(None, "document"), ("t", "document")]
    assert embed_images(single, []) == []  # type: ignore[arg-type]
