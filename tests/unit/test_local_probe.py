"""Local mode's start-up probe of the model (issue 11.2): what failed, and the fix."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError, NoCredentialsError
from botocore.stub import Stubber

from imagesearch.errors import EmbedderConfigurationError, TransientEmbeddingError
from imagesearch.local.probe import probe_bedrock, probe_embedder

MODEL = "amazon.titan-embed-image-v1"


def bedrock() -> Any:
    return boto3.client("bedrock-runtime", region_name="eu-west-1")


def probe_answered(code: str, message: str, status: int = 400) -> Any:
    client = bedrock()
    with Stubber(client) as stub:
        stub.add_client_error(
            "invoke_model",
            service_error_code=code,
            service_message=message,
            http_status_code=status,
            expected_params={
                "modelId": MODEL,
                "body": b"{}",
                "contentType": "application/json",
                "accept": "application/json",
            },
        )
        return probe_bedrock(client, MODEL, region="eu-west-1")


def test_an_empty_request_refused_by_the_model_means_all_is_well() -> None:
    assert probe_answered("ValidationException", "Malformed input request: required key") is None


@pytest.mark.parametrize(
    ("code", "message", "what", "fix"),
    [
        (
            "AccessDeniedException",
            "You don't have access to the model with the specified model ID.",
            "model access",
            "enable access to amazon.titan-embed-image-v1 in the Bedrock console",
        ),
        (
            "ValidationException",
            "The provided model identifier is invalid.",
            "region or model id",
            "set AWS_REGION to a region offering amazon.titan-embed-image-v1",
        ),
        (
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
            "AWS credentials",
            "set AWS_PROFILE",
        ),
        ("ResourceNotFoundException", "Model not found", "model access", "request access"),
        (
            "ValidationException",
            "Invocation of model ID amazon.titan-embed-image-v1 with on-demand throughput isn't "
            "supported. Retry your request with the ID or ARN of an inference profile that "
            "contains this model.",
            "model configuration",
            "inference profile",
        ),
    ],
)
def test_each_broken_configuration_says_what_and_how_to_fix_it(
    code: str, message: str, what: str, fix: str
) -> None:
    problem = probe_answered(code, message)

    assert problem is not None
    assert problem.what == what
    assert message in problem.detail
    assert fix in problem.fix
    assert "--embedder clip" in problem.fix
    assert not problem.transient
    assert problem.message().startswith(f"the embedding model is not usable: {what}: ")
    assert "Traceback" not in problem.message()


def test_throttling_is_transient_and_needs_no_fix() -> None:
    problem = probe_answered("ThrottlingException", "Too many requests", 429)

    assert problem is not None and problem.transient
    assert problem.what == "Bedrock is busy"


class Raising:
    """A bedrock-runtime client whose call raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.meta = type("Meta", (), {"endpoint_url": "https://bedrock-runtime.eu-west-1.x"})()

    def invoke_model(self, **kwargs: Any) -> Any:
        raise self.error


def test_no_credentials_and_an_unreachable_endpoint() -> None:
    no_credentials = probe_bedrock(Raising(NoCredentialsError()), MODEL, region="eu-west-1")
    unreachable = probe_bedrock(
        Raising(EndpointConnectionError(endpoint_url="https://bedrock-runtime.eu-west-1.x")),
        MODEL,
        region="eu-west-1",
    )

    assert no_credentials is not None and no_credentials.what == "AWS credentials"
    assert unreachable is not None and unreachable.what == "endpoint"
    assert "https://bedrock-runtime.eu-west-1.x" in unreachable.detail
    assert "AWS_ENDPOINT_URL_BEDROCK_RUNTIME" in unreachable.fix


class FakeEmbedder:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls = 0

    def embed(self, *, text: str | None = None, image: bytes | None = None) -> Any:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return [1.0]


def test_missing_clip_weights_point_at_imagesearch_clip_model() -> None:
    error = EmbedderConfigurationError(
        "could not load CLIP model 'clip-ViT-B-32': We couldn't connect to"
        " 'https://huggingface.co' to load the files.\nCheck your internet connection."
    )

    problem = probe_embedder(FakeEmbedder(error))

    assert problem is not None and problem.what == "CLIP weights"
    assert "\n" not in problem.detail
    assert "IMAGESEARCH_CLIP_MODEL=/path/to/clip-ViT-B-32" in problem.fix
    assert probe_embedder(FakeEmbedder()) is None
    busy = probe_embedder(FakeEmbedder(TransientEmbeddingError("busy")))
    assert busy is not None and busy.transient


def test_clip_weights_in_a_configured_folder(tmp_path: Any) -> None:
    from imagesearch.local.probe import probe_clip_weights

    assert probe_clip_weights({"IMAGESEARCH_CLIP_MODEL": str(tmp_path)}) is None
    missing = probe_clip_weights({"IMAGESEARCH_CLIP_MODEL": str(tmp_path / "nope")})
    assert missing is not None and missing.what == "CLIP weights"
    assert "is not a folder" in missing.detail


def test_uncached_clip_weights_offline_fail_fast_with_the_offline_hint(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("huggingface_hub")
    from imagesearch.local.probe import probe_clip_weights

    # Given an empty Hugging Face cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path))

    offline = probe_clip_weights({}, reachable=lambda: False)
    flagged = probe_clip_weights({"HF_HUB_OFFLINE": "1"}, reachable=lambda: True)
    online = probe_clip_weights({}, reachable=lambda: True)

    assert offline is not None and "huggingface.co is not reachable" in offline.detail
    assert "IMAGESEARCH_CLIP_MODEL=/path/to/clip-ViT-B-32" in offline.fix
    assert flagged is not None and "HF_HUB_OFFLINE is set" in flagged.detail
    assert online is None  # downloads on first use
