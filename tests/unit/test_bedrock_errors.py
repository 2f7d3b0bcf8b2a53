"""Bedrock errors classified by what the operator must do (decision 33).

A table of the Bedrock error messages each model is documented or has been seen to send,
through the real adapters (a real bedrock-runtime client behind botocore's Stubber):
which ones reject the image (``InvalidEmbeddingInput``: the record ends ``rejected``,
final) and which ones are the operator's (``EmbedderConfigurationError``: ``failed``,
retried, DLQ + alarm). Sources: "ref" the project's API facts (shared/reference: seen in
practice), "issue" the messages issue 16 lists, "schema" the JSON-schema wording Bedrock uses
for a request that does not fit a model, "fake" the wording of the fake Bedrock (fakes/),
modelled on the docs but not checked against the live model (no account is reachable here);
"-" a message nobody has seen, for the default.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from imagesearch.embedders import CohereEmbedV4Embedder, NovaMultimodalEmbedder
from imagesearch.embedders.bedrock_errors import classify_validation
from imagesearch.embedders.titan import TitanMultimodalEmbedder
from imagesearch.errors import (
    EmbedderConfigurationError,
    EmbeddingError,
    InvalidEmbeddingInput,
    redact,
)
from imagesearch.resources import COHERE_MODEL_ID, NOVA_MODEL_ID, TITAN_MODEL_ID, split_model_id
from tests.support.bedrock_stub import StubbedBedrock, stubbed_bedrock

INPUT = InvalidEmbeddingInput
OPERATOR = EmbedderConfigurationError
ADAPTERS: dict[str, Any] = {
    TITAN_MODEL_ID: TitanMultimodalEmbedder,
    NOVA_MODEL_ID: NovaMultimodalEmbedder,
    COHERE_MODEL_ID: CohereEmbedV4Embedder,
}
ANY_MODEL = tuple(ADAPTERS)

# (models, source, message, expected class, what the operator's message must say)
COMMON = [
    (
        "ref",
        "The provided model identifier is invalid.",
        OPERATOR,
        "does not offer",
    ),
    (
        "issue",
        "Invocation of model ID {model} with on-demand throughput isn't supported. Retry your "
        "request with the ID or ARN of an inference profile that contains this model.",
        OPERATOR,
        "inference profile",
    ),
    (
        "issue",
        "You don't have access to the model with the specified model ID.",
        OPERATOR,
        "Enable model access",
    ),
    ("issue", "Operation not allowed", OPERATOR, "does not allow this account"),
    (
        "issue",
        "This model version has reached the end of its life. Please refer to the AWS "
        "documentation for more details.",
        OPERATOR,
        "end of its life",
    ),
    ("issue", "The model is not supported in this region.", OPERATOR, "does not offer"),
    # Our request does not fit the model: the release's fault, not the image's.
    (
        "schema",
        "Malformed input request: #: extraneous key [inputTexts] is not permitted, please "
        "reformat your input and try again.",
        OPERATOR,
        "schema",
    ),
    (
        "schema",
        "Malformed input request, please reformat your input and try again.",
        OPERATOR,
        "schema",
    ),
    # Never seen before: doubt must not reject an image for good.
    ("-", "Something went sideways in a way nobody has documented.", OPERATOR, "Not rejected"),
]
PER_MODEL = [
    (TITAN_MODEL_ID, "ref", "Image exceeds max pixels allowed.", INPUT, ""),
    (TITAN_MODEL_ID, "fake", "Unable to process provided image.", INPUT, ""),
    (TITAN_MODEL_ID, "fake", "Unsupported image format. Supported formats: PNG, JPEG.", INPUT, ""),
    (
        TITAN_MODEL_ID,
        "fake",
        "Too many input tokens. Max input tokens: 128, request input token count: 135",
        INPUT,
        "",
    ),
    (
        TITAN_MODEL_ID,
        "schema",
        "Malformed input request: #/inputText: expected maxLength: 100000, actual: 100001, "
        "please reformat your input and try again.",
        INPUT,
        "",
    ),
    (
        TITAN_MODEL_ID,
        "schema",
        "Malformed input request: #/embeddingConfig/outputEmbeddingLength: 512 is not a valid "
        "enum value, please reformat your input and try again.",
        OPERATOR,
        "output dimension",
    ),
    (NOVA_MODEL_ID, "fake", "Unable to process the provided image.", INPUT, ""),
    (
        NOVA_MODEL_ID,
        "schema",
        "Malformed input request: #/singleEmbeddingParams/embeddingDimension: 512 is not a "
        "valid enum value, please reformat your input and try again.",
        OPERATOR,
        "output dimension",
    ),
    (
        NOVA_MODEL_ID,
        "schema",
        "Malformed input request: #/singleEmbeddingParams/image/format: 'bmp' is not a valid "
        "enum value, please reformat your input and try again.",
        OPERATOR,
        "schema",
    ),
    (
        COHERE_MODEL_ID,
        "fake",
        "Image size 6000000 bytes exceeds the maximum of 5242880 bytes.",
        INPUT,
        "",
    ),
    (COHERE_MODEL_ID, "fake", "too many tokens: 140000", INPUT, ""),
    (
        COHERE_MODEL_ID,
        "schema",
        "Malformed input request: #/output_dimension: 2048 is not a valid enum value, please "
        "reformat your input and try again.",
        OPERATOR,
        "output dimension",
    ),
    (
        COHERE_MODEL_ID,
        "schema",
        "Malformed input request: #/inputs/0/content/1/image_url: expected type: String, "
        "please reformat your input and try again.",
        OPERATOR,
        "schema",
    ),
]
TABLE = [
    (model, *row) for row in COMMON for model in ANY_MODEL
] + PER_MODEL  # fmt: skip


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 10)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def bedrock() -> Iterator[StubbedBedrock]:
    with stubbed_bedrock(StubbedBedrock(region="us-west-2")) as stub:
        yield stub


def embed_image(stubbed: StubbedBedrock, model: str) -> None:
    adapter = ADAPTERS[split_model_id(model)[1]](model, 1024, client=stubbed.client, max_attempts=1)
    adapter.embed(image=png())


@pytest.mark.parametrize(
    ("model", "source", "message", "expected", "says"),
    TABLE,
    ids=[f"{m.split('.')[1][:6]}-{s}-{msg[:40]}" for m, s, msg, _, _ in TABLE],
)
def test_each_validation_message_is_classified_by_who_must_act(
    bedrock: StubbedBedrock, model: str, source: str, message: str, expected: type, says: str
) -> None:
    # Given Bedrock answers this model's call with a ValidationException
    message = message.format(model=model)
    bedrock.fail("ValidationException", message)
    # When an image is embedded
    with pytest.raises(EmbeddingError) as caught:
        embed_image(bedrock, model)
    # Then it is a refusal of the image only when the message is clearly about the input
    assert type(caught.value) is expected
    assert caught.value.code == "ValidationException"
    assert message in str(caught.value)  # the model's own words are kept
    if expected is INPUT:
        assert str(caught.value) == message
    else:  # the operator is told what went wrong and what to do
        assert says in str(caught.value)
        assert model in str(caught.value) and "us-west-2" in str(caught.value)


@pytest.mark.parametrize(
    ("code", "status", "message", "says"),
    [
        (
            "ResourceNotFoundException",
            404,
            "This model version has reached the end of its life. Please refer to the AWS "
            "documentation for more details.",
            "end of its life",
        ),
        (
            "AccessDeniedException",
            403,
            "Access denied. This Model is marked by provider as Legacy and you have not been "
            "actively using the model in the last 30 days. Please upgrade to an active model",
            "end of its life",
        ),
        (
            "ResourceNotFoundException",
            404,
            "Could not resolve the foundation model from the provided model identifier.",
            "does not offer",
        ),
        ("SomethingNewException", 400, "Operation not allowed", "does not allow this account"),
    ],
)
def test_configuration_faults_are_named_whatever_the_error_code(
    bedrock: StubbedBedrock, code: str, status: int, message: str, says: str
) -> None:
    bedrock.fail(code, message, status)
    with pytest.raises(EmbedderConfigurationError) as caught:
        embed_image(bedrock, TITAN_MODEL_ID)
    assert says in str(caught.value)
    assert message in str(caught.value)


DENIED = (
    "User: arn:aws:sts::123456789012:assumed-role/ImageSearchIngestRole/image-search-ingest "
    "is not authorized to perform: bedrock:InvokeModel on resource: "
    "arn:aws:bedrock:us-west-2::foundation-model/{base} because no identity-based policy "
    "allows the bedrock:InvokeModel action"
)


@pytest.mark.parametrize(
    ("model", "base", "arns"),
    [
        (
            TITAN_MODEL_ID,
            TITAN_MODEL_ID,
            [f"arn:aws:bedrock:us-west-2::foundation-model/{TITAN_MODEL_ID}"],
        ),
        (
            f"us.{COHERE_MODEL_ID}",
            COHERE_MODEL_ID,
            [
                f"arn:aws:bedrock:us-west-2:123456789012:inference-profile/us.{COHERE_MODEL_ID}",
                f"arn:aws:bedrock:*::foundation-model/{COHERE_MODEL_ID}",
            ],
        ),
        (
            f"global.{COHERE_MODEL_ID}",
            COHERE_MODEL_ID,
            [
                f"arn:aws:bedrock:us-west-2:123456789012:inference-profile/global.{COHERE_MODEL_ID}",
                f"arn:aws:bedrock:::foundation-model/{COHERE_MODEL_ID}",
            ],
        ),
    ],
)
def test_access_denied_names_real_arns_in_the_log_and_none_in_the_reason(
    bedrock: StubbedBedrock, model: str, base: str, arns: list[str]
) -> None:
    # Given Bedrock denies the function's role
    bedrock.fail("AccessDeniedException", DENIED.format(base=base), 403)
    with pytest.raises(EmbedderConfigurationError) as caught:
        embed_image(bedrock, model)
    detail, reason = str(caught.value), caught.value.reason
    # Then the log's detail names the ARNs that exist: a profile's own ARN and its
    # foundation model's, never "foundation-model/us.cohere..."
    for arn in arns:
        assert arn in detail
    assert f"foundation-model/{model}" not in detail or model == base
    # And the record's reason says what to do without the account, the role or any ARN
    assert "Enable model access" in reason and model in reason
    for secret in ("123456789012", "ImageSearchIngestRole", "image-search-ingest", "arn:"):
        assert secret not in reason


def test_a_profile_denied_without_the_callers_arn_still_names_the_profile(
    bedrock: StubbedBedrock,
) -> None:
    bedrock.fail("AccessDeniedException", "You don't have access to the model.", 403)
    with pytest.raises(EmbedderConfigurationError) as caught:
        embed_image(bedrock, f"eu.{COHERE_MODEL_ID}")
    assert f"arn:aws:bedrock:us-west-2:<account>:inference-profile/eu.{COHERE_MODEL_ID}" in str(
        caught.value
    )


def test_reasons_never_carry_arns_or_account_ids() -> None:
    text = (
        "User: arn:aws:sts::123456789012:assumed-role/Role/fn is not authorized; account "
        "123456789012; 1234567890123 is not an account id"
    )
    assert redact(text) == (
        "User: [ARN] is not authorized; account [account]; 1234567890123 is not an account id"
    )


def test_an_unknown_message_is_not_mistaken_for_a_refusal() -> None:
    # The table's default: an operator looks; nothing is rejected on a guess.
    assert classify_validation("The request could not be completed.").fault == "operator"
    assert classify_validation("Image exceeds max pixels allowed.").fault == "input"
