"""TitanMultimodalEmbedder without network: a real bedrock-runtime client behind
botocore's Stubber, or a tiny client raising the SDK's own exceptions."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.response import StreamingBody
from botocore.stub import Stubber
from PIL import Image

from imagesearch.embedders import Embedder, build_embedder, unit_vector
from imagesearch.embedders.titan import TitanMultimodalEmbedder
from imagesearch.errors import (
    EmbedderConfigurationError,
    InvalidEmbeddingInput,
    TransientEmbeddingError,
)
from imagesearch.resources import CLIP_MODEL_ID, SUPPORTED_MODELS

MODEL = "amazon.titan-embed-image-v1"


def png_bytes(color: tuple[int, int, int] = (200, 10, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, "PNG")
    return buffer.getvalue()


def titan_response(embedding: list[float]) -> dict[str, Any]:
    payload = json.dumps(
        {"embedding": embedding, "inputTextTokenCount": 1, "message": None}
    ).encode()
    return {
        "body": StreamingBody(io.BytesIO(payload), len(payload)),
        "contentType": "application/json",
    }


class StubbedBedrock:
    """A real bedrock-runtime client whose calls are answered by a Stubber."""

    def __init__(self) -> None:
        self.client = boto3.client("bedrock-runtime", region_name="eu-west-1")
        self.stubber = Stubber(self.client)
        self.sent: list[dict[str, Any]] = []
        self.client.meta.events.register(
            "provide-client-params.bedrock-runtime.InvokeModel", self._capture
        )

    def _capture(self, params: dict[str, Any], **_: Any) -> None:
        self.sent.append(dict(params))

    def respond(self, embedding: list[float]) -> None:
        self.stubber.add_response("invoke_model", titan_response(embedding))

    def fail(self, code: str, status: int, message: str = "model says no") -> None:
        self.stubber.add_client_error(
            "invoke_model",
            service_error_code=code,
            service_message=message,
            http_status_code=status,
        )


@pytest.fixture
def bedrock() -> Iterator[StubbedBedrock]:
    stub = StubbedBedrock()
    with stub.stubber:
        yield stub
    stub.stubber.assert_no_pending_responses()


def embedder_for(stub: StubbedBedrock, dimension: int = 1024) -> TitanMultimodalEmbedder:
    return TitanMultimodalEmbedder(MODEL, dimension, client=stub.client)


def ramp(dimension: int) -> list[float]:
    return [float(i % 7) - 3.0 for i in range(dimension)]


# --- Requests ------------------------------------------------------------------------


@pytest.mark.parametrize("dimension", SUPPORTED_MODELS[MODEL])
def test_text_request_body_matches_titan_format(bedrock: StubbedBedrock, dimension: int) -> None:
    # Given a Titan embedder of this dimension
    embedder = embedder_for(bedrock, dimension)
    bedrock.respond(ramp(dimension))
    # When it embeds a text
    embedder.embed(text="red suede sneaker")
    # Then one InvokeModel call carried exactly the Titan G1 body, as JSON
    (params,) = bedrock.sent
    assert params["modelId"] == MODEL
    assert params["contentType"] == "application/json"
    assert params["accept"] == "application/json"
    assert json.loads(params["body"]) == {
        "inputText": "red suede sneaker",
        "embeddingConfig": {"outputEmbeddingLength": dimension},
    }


def test_image_request_body_is_plain_base64(bedrock: StubbedBedrock) -> None:
    image = png_bytes()
    bedrock.respond(ramp(256))
    embedder_for(bedrock, 256).embed(image=image)
    body = json.loads(bedrock.sent[0]["body"])
    assert set(body) == {"inputImage", "embeddingConfig"}
    assert not body["inputImage"].startswith("data:")
    assert base64.b64decode(body["inputImage"], validate=True) == image
    assert body["embeddingConfig"] == {"outputEmbeddingLength": 256}


def test_text_and_image_go_in_one_request(bedrock: StubbedBedrock) -> None:
    image = png_bytes()
    bedrock.respond(ramp(384))
    embedder_for(bedrock, 384).embed(text="a red square", image=image)
    (params,) = bedrock.sent
    body = json.loads(params["body"])
    assert body["inputText"] == "a red square"
    assert base64.b64decode(body["inputImage"]) == image
    assert body["embeddingConfig"] == {"outputEmbeddingLength": 384}


@pytest.mark.parametrize("dimension", SUPPORTED_MODELS[MODEL])
def test_returns_unit_norm_float32_of_the_model_direction(
    bedrock: StubbedBedrock, dimension: int
) -> None:
    raw = ramp(dimension)
    bedrock.respond(raw)
    vector = embedder_for(bedrock, dimension).embed(text="x")
    assert vector.dtype == np.float32
    assert vector.shape == (dimension,)
    assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)
    expected = np.asarray(raw) / np.linalg.norm(raw)
    np.testing.assert_allclose(vector, expected, atol=1e-6)


def test_embed_needs_text_or_image(bedrock: StubbedBedrock) -> None:
    with pytest.raises(ValueError, match="text, image"):
        embedder_for(bedrock).embed()
    assert bedrock.sent == []


@pytest.mark.parametrize(("text", "image"), [("  ", None), (None, b"")])
def test_empty_input_is_invalid_without_a_call(
    bedrock: StubbedBedrock, text: str | None, image: bytes | None
) -> None:
    with pytest.raises(InvalidEmbeddingInput, match="empty"):
        embedder_for(bedrock).embed(text=text, image=image)
    assert bedrock.sent == []


# --- Responses -----------------------------------------------------------------------


@pytest.mark.parametrize("length", [255, 1023, 1025])
def test_wrong_length_response_is_rejected(bedrock: StubbedBedrock, length: int) -> None:
    bedrock.respond(ramp(length))
    with pytest.raises(EmbedderConfigurationError, match=f"returned {length} values"):
        embedder_for(bedrock, 1024).embed(text="x")


@pytest.mark.parametrize(
    "payload",
    [b"not json", b'{"message": "no embedding"}', b'{"embedding": "nope"}', b"[1, 2]"],
)
def test_response_without_an_embedding_is_rejected(bedrock: StubbedBedrock, payload: bytes) -> None:
    bedrock.stubber.add_response(
        "invoke_model",
        {
            "body": StreamingBody(io.BytesIO(payload), len(payload)),
            "contentType": "application/json",
        },
    )
    with pytest.raises(EmbedderConfigurationError, match=MODEL):
        embedder_for(bedrock, 256).embed(text="x")


def test_zero_vector_response_is_rejected(bedrock: StubbedBedrock) -> None:
    bedrock.respond([0.0] * 256)
    with pytest.raises(EmbedderConfigurationError, match="unusable"):
        embedder_for(bedrock, 256).embed(text="x")


# --- Error classification ----------------------------------------------------------

CLASSIFICATION = [
    # code, HTTP status, expected error, throttled
    ("ThrottlingException", 429, TransientEmbeddingError, True),
    ("ModelNotReadyException", 429, TransientEmbeddingError, True),
    ("ServiceQuotaExceededException", 400, TransientEmbeddingError, True),
    ("ModelTimeoutException", 408, TransientEmbeddingError, False),
    ("InternalServerException", 500, TransientEmbeddingError, False),
    ("ServiceUnavailableException", 503, TransientEmbeddingError, False),
    ("ModelErrorException", 424, TransientEmbeddingError, False),
    ("SomethingNewException", 502, TransientEmbeddingError, False),
    # A ValidationException whose message is not clearly about the input: never a
    # rejection (tests/unit/test_bedrock_errors.py has the messages that are).
    ("ValidationException", 400, EmbedderConfigurationError, None),
    ("AccessDeniedException", 403, EmbedderConfigurationError, None),
    ("ResourceNotFoundException", 404, EmbedderConfigurationError, None),
    ("UnrecognizedClientException", 403, EmbedderConfigurationError, None),
    ("ExpiredTokenException", 403, EmbedderConfigurationError, None),
    ("InvalidSignatureException", 403, EmbedderConfigurationError, None),
    ("SomethingNewException", 400, EmbedderConfigurationError, None),
]


@pytest.mark.parametrize(("code", "status", "expected", "throttled"), CLASSIFICATION)
def test_client_errors_are_classified(
    bedrock: StubbedBedrock,
    code: str,
    status: int,
    expected: type[Exception],
    throttled: bool | None,
) -> None:
    # Given Bedrock answers with this error code
    bedrock.fail(code, status, message="the model's own words")
    # When embedding, then exactly one domain error comes out, keeping the message
    with pytest.raises(expected) as caught:
        embedder_for(bedrock).embed(text="x")
    assert "the model's own words" in str(caught.value)
    if throttled is not None:
        assert caught.value.throttled is throttled


def test_validation_error_is_exactly_the_models_message(bedrock: StubbedBedrock) -> None:
    bedrock.fail("ValidationException", 400, "Image exceeds max pixels allowed.")
    with pytest.raises(InvalidEmbeddingInput) as caught:
        embedder_for(bedrock).embed(image=png_bytes())
    assert str(caught.value) == "Image exceeds max pixels allowed."


def test_invalid_model_identifier_is_a_configuration_error(bedrock: StubbedBedrock) -> None:
    # Bedrock answers a model not offered in the region with a ValidationException;
    # no image is at fault, so it must not become a permanent rejection.
    bedrock.fail("ValidationException", 400, "The provided model identifier is invalid.")
    with pytest.raises(EmbedderConfigurationError, match="eu-west-1"):
        embedder_for(bedrock).embed(text="x")


def test_access_denied_says_what_to_do(bedrock: StubbedBedrock) -> None:
    bedrock.fail("AccessDeniedException", 403, "You don't have access to the model.")
    with pytest.raises(EmbedderConfigurationError) as caught:
        embedder_for(bedrock).embed(text="x")
    message = str(caught.value)
    assert "enable model access" in message.lower()
    assert MODEL in message
    assert "eu-west-1" in message


class RaisingClient:
    """Stands in for a client whose HTTP layer fails before any response."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.meta = type("Meta", (), {"region_name": "us-west-2"})()

    def invoke_model(self, **_: Any) -> Any:
        raise self.error


URL = "https://bedrock-runtime.us-west-2.amazonaws.com/model/x/invoke"


@pytest.mark.parametrize(
    "error",
    [
        ReadTimeoutError(endpoint_url=URL),
        ConnectTimeoutError(endpoint_url=URL),
        EndpointConnectionError(endpoint_url=URL),
        ConnectionClosedError(endpoint_url=URL),
    ],
    ids=lambda error: type(error).__name__,
)
def test_network_failures_are_transient(error: Exception) -> None:
    embedder = TitanMultimodalEmbedder(MODEL, 1024, client=RaisingClient(error))
    with pytest.raises(TransientEmbeddingError) as caught:
        embedder.embed(text="x")
    assert caught.value.throttled is False
    assert caught.value.__cause__ is error


def test_missing_credentials_is_a_configuration_error() -> None:
    embedder = TitanMultimodalEmbedder(MODEL, 1024, client=RaisingClient(NoCredentialsError()))
    with pytest.raises(EmbedderConfigurationError, match="credentials"):
        embedder.embed(text="x")


def test_missing_region_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    embedder = TitanMultimodalEmbedder(MODEL, 1024)
    with pytest.raises(EmbedderConfigurationError, match="region"):
        embedder.embed(text="x")


def test_errors_never_echo_the_query_text(bedrock: StubbedBedrock) -> None:
    secret = "my private query words"
    bedrock.fail("ThrottlingException", 429, "Too many requests")
    with pytest.raises(TransientEmbeddingError) as caught:
        embedder_for(bedrock).embed(text=secret)
    assert secret not in str(caught.value)


# --- Construction ------------------------------------------------------------------


@pytest.mark.parametrize("dimension", [0, 128, 512, 1536, 3072, True])
def test_unsupported_dimension_is_refused(dimension: int) -> None:
    with pytest.raises(ValueError, match="256, 384, 1024"):
        TitanMultimodalEmbedder(MODEL, dimension)


@pytest.mark.parametrize(
    "model_id", ["amazon.titan-embed-text-v2:0", "amazon.titan-embed-image-v9", "cohere.embed-v4:0"]
)
def test_unsupported_model_is_refused(model_id: str) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        TitanMultimodalEmbedder(model_id, 1024)


@pytest.mark.parametrize(
    "kwargs", [{"connect_timeout": 0}, {"read_timeout": -1.0}, {"max_attempts": 0}]
)
def test_bad_client_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TitanMultimodalEmbedder(MODEL, 1024, **kwargs)


def test_client_is_built_lazily_with_timeouts_and_adaptive_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the standard AWS configuration names a custom endpoint
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "http://127.0.0.1:9")
    embedder = TitanMultimodalEmbedder(
        MODEL, 1024, connect_timeout=1.5, read_timeout=12.0, max_attempts=3
    )
    # When the client is first needed
    client = embedder.client
    # Then it is a bedrock-runtime client honouring the env var and our settings
    assert client.meta.service_model.service_name == "bedrock-runtime"
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert client.meta.region_name == "us-east-1"
    config = client.meta.config
    assert config.connect_timeout == 1.5
    assert config.read_timeout == 12.0
    assert config.retries["mode"] == "adaptive"
    assert config.retries["total_max_attempts"] == 3
    assert embedder.client is client


def test_injected_client_is_used_as_is(bedrock: StubbedBedrock) -> None:
    embedder = embedder_for(bedrock)
    assert embedder.client is bedrock.client


# --- Factory -----------------------------------------------------------------------


def test_factory_builds_titan_for_titan_ids(bedrock: StubbedBedrock) -> None:
    embedder = build_embedder(MODEL, 384, client=bedrock.client, max_attempts=2)
    assert isinstance(embedder, TitanMultimodalEmbedder)
    assert isinstance(embedder, Embedder)
    assert (embedder.model_id, embedder.dimension) == (MODEL, 384)
    assert embedder.client is bedrock.client


def test_factory_refuses_unknown_models() -> None:
    with pytest.raises(ValueError, match="unknown embedding model"):
        build_embedder("openai.clip", 512)


def test_factory_checks_titan_dimension() -> None:
    with pytest.raises(ValueError, match="256, 384, 1024"):
        build_embedder(MODEL, 512)


def test_factory_loads_clip_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLIP module is optional; stand in for it to check the factory's wiring.
    import sys
    import types

    class FakeClip:
        def __init__(self, model_name_or_path: str, *, model_id: str | None = None) -> None:
            self.path = model_name_or_path
            self.model_id = model_id or model_name_or_path
            self.dimension = 512

        def embed(self, *, text: str | None = None, image: bytes | None = None) -> Any:
            return unit_vector(np.ones(512))

    module = types.ModuleType("imagesearch.embedders.clip")
    module.ClipEmbedder = FakeClip  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "imagesearch.embedders.clip", module)

    embedder = build_embedder(CLIP_MODEL_ID, 512)
    assert isinstance(embedder, FakeClip)
    assert embedder.model_id == CLIP_MODEL_ID
    # A local copy of the weights keeps the model id of the hub model
    local_copy = build_embedder(CLIP_MODEL_ID, 512, clip_model="/models/clip-ViT-B-32")
    assert (local_copy.path, local_copy.model_id) == ("/models/clip-ViT-B-32", CLIP_MODEL_ID)
    with pytest.raises(ValueError, match="512-dimensional"):
        build_embedder(CLIP_MODEL_ID, 1024)


def test_package_exports_port_and_helpers() -> None:
    import imagesearch.embedders as embedders

    assert {"Embedder", "build_embedder", "unit_vector"} <= set(embedders.__all__)
