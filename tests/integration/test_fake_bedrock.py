"""The real TitanMultimodalEmbedder and boto3 against the fake Bedrock over HTTP.

Checks both sides of the contract: the fake speaks bedrock-runtime's wire protocol
the way botocore reads it, and the embedder turns each answer into the right domain
result (vector or error) after the SDK's own retries.
"""

from __future__ import annotations

import base64
import io
import json
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import numpy as np
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws
from PIL import Image

from fakes.bedrock import (
    ERROR_STATUS,
    MAX_TEXT_TOKENS,
    CallRecord,
    FakeBedrock,
    approx_token_count,
    fake_titan_embedding,
)
from imagesearch.embedders import build_embedder, unit_vector
from imagesearch.embedders.titan import TitanMultimodalEmbedder
from imagesearch.errors import (
    EmbedderConfigurationError,
    InvalidEmbeddingInput,
    TransientEmbeddingError,
)
from imagesearch.resources import MODELS, SUPPORTED_MODELS

MODEL = "amazon.titan-embed-image-v1"
ROOT = Path(__file__).resolve().parents[2]

RED = (230, 20, 20)
BLUE = (20, 40, 230)


def image_bytes(
    color: tuple[int, int, int] = RED, size: tuple[int, int] = (64, 48), fmt: str = "PNG"
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, fmt)
    return buffer.getvalue()


def titan(dimension: int = 1024, **kwargs: Any) -> TitanMultimodalEmbedder:
    kwargs.setdefault("max_attempts", 1)
    return TitanMultimodalEmbedder(MODEL, dimension, **kwargs)


def expected(text: str | None, image: bytes | None, dimension: int) -> np.ndarray:
    return unit_vector(fake_titan_embedding(text, image, dimension))


def raw_invoke(client: Any, body: Any, model_id: str = MODEL) -> dict[str, Any]:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.invoke_model(
        modelId=model_id, body=payload, contentType="application/json", accept="application/json"
    )
    return json.loads(response["body"].read())


# --- Embeddings through the real adapter ---------------------------------------------


@pytest.mark.parametrize("dimension", SUPPORTED_MODELS[MODEL])
@pytest.mark.parametrize(
    ("text", "has_image"), [("red suede sneaker", False), (None, True), ("a red square", True)]
)
def test_embeds_via_endpoint_env_var(
    fake_bedrock: FakeBedrock, dimension: int, text: str | None, has_image: bool
) -> None:
    # Given the standard AWS configuration points bedrock-runtime at the fake
    image = image_bytes() if has_image else None
    embedder = build_embedder(MODEL, dimension, max_attempts=1)
    # When embedding
    vector = embedder.embed(text=text, image=image)
    # Then the vector is the fake's, unit norm, and the call was logged without content
    np.testing.assert_allclose(vector, expected(text, image, dimension), atol=1e-6)
    assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)
    assert fake_bedrock.call_log == [CallRecord(MODEL, text is not None, has_image, dimension, 200)]
    assert (fake_bedrock.calls, fake_bedrock.successes) == (1, 1)


def test_embeds_via_an_explicit_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", raising=False)
    with FakeBedrock() as fake:
        embedder = titan(256, client=fake.client())
        vector = embedder.embed(text="blue")
        np.testing.assert_allclose(vector, expected("blue", None, 256), atol=1e-6)
        assert fake.calls == 1


def test_same_input_same_vector_and_images_keep_their_identity(
    fake_bedrock: FakeBedrock,
) -> None:
    embedder = titan()
    red_png, red_jpeg = image_bytes(RED), image_bytes(RED, fmt="JPEG")
    first, again = embedder.embed(image=red_png), embedder.embed(image=red_png)
    other = embedder.embed(image=red_jpeg)
    np.testing.assert_array_equal(first, again)
    # Same colour, other bytes: very close, yet not the same vector.
    assert 0.9 < float(first @ other) < 0.9999


def test_colour_words_rank_the_matching_image_first(fake_bedrock: FakeBedrock) -> None:
    # Given a red and a blue image
    embedder = titan()
    red = embedder.embed(image=image_bytes(RED))
    blue = embedder.embed(image=image_bytes(BLUE))
    # Then colour words (and their synonyms) are closer to the matching image
    for query, match, other in [
        ("red", red, blue),
        ("a crimson shoe", red, blue),
        ("blue", blue, red),
        ("navy jacket", blue, red),
    ]:
        vector = embedder.embed(text=query)
        assert float(vector @ match) > float(vector @ other) + 0.5, query


def test_text_and_image_embed_jointly(fake_bedrock: FakeBedrock) -> None:
    # Titan averages text and image: "red" + a blue image sits between red and blue.
    embedder = titan()
    red = embedder.embed(image=image_bytes(RED))
    blue_image = image_bytes(BLUE)
    blue = embedder.embed(image=blue_image)
    joint = embedder.embed(text="red", image=blue_image)
    assert float(joint @ red) > 0.4
    assert float(joint @ blue) > 0.4
    assert fake_bedrock.call_log[-1].has_text and fake_bedrock.call_log[-1].has_image


# --- Model errors surface as domain errors -----------------------------------------------


def test_oversized_image_is_invalid_input_with_the_models_message(
    fake_bedrock: FakeBedrock,
) -> None:
    with pytest.raises(InvalidEmbeddingInput) as caught:
        titan().embed(image=image_bytes(size=(2049, 16)))
    assert str(caught.value) == "Image exceeds max pixels allowed."
    assert fake_bedrock.status_counts == {400: 1}


def test_gif_is_invalid_input(fake_bedrock: FakeBedrock) -> None:
    with pytest.raises(InvalidEmbeddingInput, match="Supported formats: PNG, JPEG"):
        titan().embed(image=image_bytes(fmt="GIF"))


def test_webp_is_invalid_input(fake_bedrock: FakeBedrock) -> None:
    with pytest.raises(InvalidEmbeddingInput, match="Supported formats: PNG, JPEG"):
        titan().embed(image=image_bytes(fmt="WEBP"))


def test_truncated_png_is_invalid_input(fake_bedrock: FakeBedrock) -> None:
    with pytest.raises(InvalidEmbeddingInput, match="Unable to process"):
        titan().embed(image=image_bytes(size=(300, 300))[:200])


def test_text_over_the_token_limit_is_invalid_input(fake_bedrock: FakeBedrock) -> None:
    text = "word " * 200
    assert approx_token_count(text) > MAX_TEXT_TOKENS
    with pytest.raises(InvalidEmbeddingInput, match="Too many input tokens"):
        titan().embed(text=text)


def test_text_at_the_token_limit_is_accepted(fake_bedrock: FakeBedrock) -> None:
    text = "x" * int(MAX_TEXT_TOKENS * 4.7)
    assert approx_token_count(text) == MAX_TEXT_TOKENS
    assert titan(256).embed(text=text).shape == (256,)


def test_dimension_the_model_lacks_is_a_configuration_error(
    fake_bedrock: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given our model table wrongly claims 512 (so the adapter lets it through)
    spec = replace(MODELS[MODEL], dimensions=(256, 384, 512, 1024))
    monkeypatch.setitem(MODELS, MODEL, spec)
    # Then no image is at fault: an operator must fix the deployment
    with pytest.raises(EmbedderConfigurationError, match="outputEmbeddingLength: 512") as caught:
        titan(512).embed(text="red")
    assert "output dimension" in str(caught.value)


def test_model_missing_in_region_is_a_configuration_error(
    fake_bedrock: FakeBedrock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real Bedrock answers an id it does not serve with a ValidationException.
    v2 = replace(MODELS[MODEL], model_id="amazon.titan-embed-image-v2", dimensions=(1024,))
    monkeypatch.setitem(MODELS, v2.model_id, v2)
    embedder = TitanMultimodalEmbedder("amazon.titan-embed-image-v2", 1024, max_attempts=1)
    with pytest.raises(EmbedderConfigurationError, match="model identifier is invalid"):
        embedder.embed(text="red")


def test_throttling_is_transient_after_the_sdk_retries(fake_bedrock: FakeBedrock) -> None:
    # Given every call is throttled, and the SDK may try twice
    fake_bedrock.throttle_rate = 1.0
    with pytest.raises(TransientEmbeddingError) as caught:
        titan(max_attempts=2).embed(text="red")
    # Then the SDK retried once and the error says "throttled"
    assert caught.value.throttled is True
    assert fake_bedrock.calls == 2
    assert fake_bedrock.status_counts == {429: 2}


def test_one_throttle_is_absorbed_by_the_sdk_retry(fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.fail_next(1, "ThrottlingException")
    vector = titan(max_attempts=2).embed(text="red")
    np.testing.assert_allclose(vector, expected("red", None, 1024), atol=1e-6)
    assert fake_bedrock.status_counts == {429: 1, 200: 1}


def test_read_timeout_is_transient(fake_bedrock: FakeBedrock) -> None:
    # Given the model answers after 1 s and the client waits 0.3 s
    fake_bedrock.timeout_rate = 1.0
    fake_bedrock.timeout_seconds = 1.0
    with pytest.raises(TransientEmbeddingError, match="ReadTimeoutError") as caught:
        titan(read_timeout=0.3, max_attempts=1).embed(text="red")
    assert caught.value.throttled is False
    assert fake_bedrock.calls == 1


def test_unreachable_endpoint_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeBedrock() as fake:
        url = fake.endpoint_url
    # The fake is gone: nothing listens on its port any more.
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", url)
    with pytest.raises(TransientEmbeddingError, match="unreachable"):
        titan(connect_timeout=0.5, max_attempts=1).embed(text="red")


def test_access_denied_is_a_configuration_error(fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.fail_next(1, "AccessDeniedException")
    with pytest.raises(EmbedderConfigurationError) as caught:
        titan().embed(image=image_bytes())
    message = str(caught.value)
    assert "You don't have access to the model" in message
    assert "Enable model access for amazon.titan-embed-image-v1" in message
    assert "us-east-1" in message


@pytest.mark.parametrize(
    ("code", "expected_error", "throttled"),
    [
        ("ServiceUnavailableException", TransientEmbeddingError, False),
        ("InternalServerException", TransientEmbeddingError, False),
        ("ModelTimeoutException", TransientEmbeddingError, False),
        ("ModelErrorException", TransientEmbeddingError, False),
        ("ModelNotReadyException", TransientEmbeddingError, True),
        ("ServiceQuotaExceededException", TransientEmbeddingError, True),
        # a message not clearly about the input is never taken as a refusal
        ("ValidationException", EmbedderConfigurationError, None),
        ("ResourceNotFoundException", EmbedderConfigurationError, None),
        ("UnrecognizedClientException", EmbedderConfigurationError, None),
    ],
)
def test_scripted_errors_are_classified(
    fake_bedrock: FakeBedrock, code: str, expected_error: type[Exception], throttled: bool | None
) -> None:
    fake_bedrock.fail_next(1, code, "scripted message")
    with pytest.raises(expected_error, match="scripted message") as caught:
        titan(max_attempts=1).embed(text="red")
    if throttled is not None:
        assert caught.value.throttled is throttled
    # The script is used up: the next call succeeds.
    assert titan().embed(text="red").shape == (1024,)


# --- The wire protocol as botocore reads it ----------------------------------------------


def _model_error_statuses() -> dict[str, int]:
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    operation = model.operation_model("InvokeModel")
    return {
        shape.name: shape.metadata["error"]["httpStatusCode"] for shape in operation.error_shapes
    }


@pytest.mark.parametrize(("code", "status"), sorted(_model_error_statuses().items()))
def test_errors_reach_boto3_with_the_models_code_and_status(
    fake_bedrock: FakeBedrock, code: str, status: int
) -> None:
    # The fake's status table agrees with botocore's service model...
    assert ERROR_STATUS[code] == status
    # ...and botocore parses the fake's answer into that ClientError.
    fake_bedrock.fail_next(1, code, "why")
    client = fake_bedrock.client(config=Config(retries={"total_max_attempts": 1}))
    with pytest.raises(ClientError) as caught:
        raw_invoke(client, {"inputText": "red"})
    assert caught.value.response["Error"] == {"Code": code, "Message": "why"}
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


def test_success_response_shape(fake_bedrock: FakeBedrock) -> None:
    client = fake_bedrock.client()
    body = raw_invoke(
        client, {"inputText": "red shoe", "embeddingConfig": {"outputEmbeddingLength": 384}}
    )
    assert set(body) == {"embedding", "inputTextTokenCount", "message"}
    assert len(body["embedding"]) == 384
    assert body["inputTextTokenCount"] == approx_token_count("red shoe")
    assert body["message"] is None


def test_default_dimension_is_1024(fake_bedrock: FakeBedrock) -> None:
    body = raw_invoke(fake_bedrock.client(), {"inputText": "red"})
    assert len(body["embedding"]) == 1024
    assert fake_bedrock.call_log[0].dimension == 1024


def test_url_encoded_model_arn_is_accepted(fake_bedrock: FakeBedrock) -> None:
    arn = f"arn:aws:bedrock:us-east-1::foundation-model/{MODEL}"
    body = raw_invoke(fake_bedrock.client(), {"inputText": "red"}, model_id=arn)
    assert len(body["embedding"]) == 1024
    assert fake_bedrock.call_log[0].model_id == MODEL


PNG_B64 = base64.b64encode(image_bytes()).decode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        ([1, 2], "expected type: JSONObject"),
        ({}, "at least one of [inputText, inputImage]"),
        ({"inputText": "red", "normalize": True}, "extraneous key [normalize]"),
        ({"inputText": ""}, "minLength"),
        ({"inputText": 7}, "expected type: String"),
        ({"inputImage": "data:image/png;base64," + PNG_B64}, "data URI prefix"),
        ({"inputImage": "!!not base64!!"}, "not valid base64"),
        ({"inputText": "red", "embeddingConfig": {"outputEmbeddingLength": 512}}, "512"),
        ({"inputText": "red", "embeddingConfig": {"outputEmbeddingLength": True}}, "true"),
        ({"inputText": "red", "embeddingConfig": {"dims": 256}}, "extraneous key [dims]"),
    ],
)
def test_malformed_requests_are_validation_errors(
    fake_bedrock: FakeBedrock, body: Any, message: str
) -> None:
    with pytest.raises(ClientError) as caught:
        raw_invoke(fake_bedrock.client(), body)
    error = caught.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert message in error["Message"]
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_image_over_5_mb_is_refused(fake_bedrock: FakeBedrock) -> None:
    # Random pixels do not compress: a 1400x1400 PNG is about 5.9 MB.
    noise = np.random.default_rng(7).integers(0, 256, (1400, 1400, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG", compress_level=0)
    assert len(buffer.getvalue()) > 5 * 1024 * 1024
    with pytest.raises(InvalidEmbeddingInput, match="exceeds the maximum"):
        titan().embed(image=buffer.getvalue())


def test_unsigned_requests_are_refused(fake_bedrock: FakeBedrock) -> None:
    request = urllib.request.Request(
        f"{fake_bedrock.endpoint_url}/model/{MODEL}/invoke",
        data=b'{"inputText": "red"}',
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 403
    assert caught.value.headers["x-amzn-ErrorType"].startswith(
        "MissingAuthenticationTokenException:"
    )
    assert json.loads(caught.value.read()) == {"message": "Missing Authentication Token"}


def test_unknown_operation_is_404(fake_bedrock: FakeBedrock) -> None:
    request = urllib.request.Request(f"{fake_bedrock.endpoint_url}/foundation-models")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 404


def test_concurrent_calls_are_all_counted(fake_bedrock: FakeBedrock) -> None:
    embedder = titan(256)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(4):
                embedder.embed(text=f"item {i} {j}")
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert (fake_bedrock.calls, fake_bedrock.successes) == (24, 24)
    assert len(fake_bedrock.call_log) == 24


def test_reset_clears_counters_and_faults(fake_bedrock: FakeBedrock) -> None:
    fake_bedrock.throttle_rate = 1.0
    fake_bedrock.fail_next(3, "ServiceUnavailableException")
    with pytest.raises(TransientEmbeddingError):
        titan().embed(text="red")
    fake_bedrock.reset()
    assert (fake_bedrock.calls, fake_bedrock.status_counts, fake_bedrock.call_log) == (0, {}, [])
    assert titan().embed(text="red").shape == (1024,)


def test_rates_outside_0_to_1_are_refused(fake_bedrock: FakeBedrock) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        fake_bedrock.throttle_rate = 1.5


# --- moto and the standalone server ------------------------------------------------------


def test_reached_under_moto_mock_aws(fake_bedrock: FakeBedrock) -> None:
    # moto answers only URLs shaped like AWS endpoints; the fake's URL passes through.
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="moto-is-active")
        vector = titan(256).embed(text="red")
    np.testing.assert_allclose(vector, expected("red", None, 256), atol=1e-6)
    assert fake_bedrock.calls == 1


def test_standalone_server_serves_until_sigterm(monkeypatch: pytest.MonkeyPatch) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "fakes.bedrock", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", url)
        np.testing.assert_allclose(
            titan(256).embed(text="red"), expected("red", None, 256), atol=1e-6
        )
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
        assert process.returncode == 0
        assert "after 1 calls" in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
