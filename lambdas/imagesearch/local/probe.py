"""Local mode's start-up check of the embedding model: one probe, a short verdict.

Bedrock: one InvokeModel with an empty request. Bedrock checks the credentials, the
endpoint, the region's model and the account's model access before it reads a body,
and then refuses the empty one with a ValidationException: that refusal means
everything works, and it costs nothing (no inference, no tokens, no embedding).
CLIP: the weights are loaded (the embedder local mode then uses) and embed one word.

A failure becomes ``ProbeFailure``: what failed (credentials, region, endpoint, model
access, CLIP weights) and the fix, in a few lines without a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    TokenRetrievalError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from imagesearch.errors import EmbeddingError, TransientEmbeddingError

CLIP_OFFLINE_HINT = (
    "on a machine without network access, copy the sentence-transformers model folder"
    " (clip-ViT-B-32) there and set IMAGESEARCH_CLIP_MODEL=/path/to/clip-ViT-B-32"
)
_NO_AWS_HINT = "or run without AWS: imagesearch local --embedder clip (make local EMBEDDER=clip)"
_CREDENTIAL_ERRORS = (
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
    ProfileNotFound,
    SSOError,
    TokenRetrievalError,
)
_CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ExpiredTokenException",
        "ExpiredToken",
        "InvalidClientTokenId",
    }
)
_INVALID_MODEL = "model identifier is invalid"


@dataclass(frozen=True)
class ProbeFailure:
    """``what`` failed (credentials, region, endpoint, model access, CLIP weights),
    ``detail`` as the service said it, ``fix`` what to do."""

    what: str
    detail: str
    fix: str
    transient: bool = False

    def message(self) -> str:
        return f"the embedding model is not usable: {self.what}: {self.detail}\n  fix: {self.fix}"

    def short(self) -> str:
        """One line for records and the API: the cause and the fix."""
        return f"{self.what}: {self.detail} (fix: {self.fix})"


def probe_bedrock(client: Any, model_id: str, *, region: str) -> ProbeFailure | None:
    """None when Bedrock would embed with ``client``; else what is wrong."""
    endpoint = getattr(getattr(client, "meta", None), "endpoint_url", "") or "Bedrock"
    try:
        client.invoke_model(
            modelId=model_id, body=b"{}", contentType="application/json", accept="application/json"
        )
    except ClientError as error:
        return _client_error(error, model_id, region)
    except _CREDENTIAL_ERRORS as error:
        return _credentials(str(error))
    except NoRegionError:
        return ProbeFailure(
            "region", "no AWS region configured", f"set AWS_REGION to a region offering {model_id}"
        )
    except BotoConnectionError as error:
        return ProbeFailure(
            "endpoint",
            f"cannot reach {endpoint} ({type(error).__name__})",
            "check the network or proxy, AWS_REGION and AWS_ENDPOINT_URL_BEDROCK_RUNTIME; "
            + _NO_AWS_HINT,
            transient=True,
        )
    except BotoCoreError as error:
        return ProbeFailure("Bedrock client", str(error), _NO_AWS_HINT)
    # An empty request that succeeds is not Titan; nothing to hold against the model.
    return None


def _credentials(detail: str) -> ProbeFailure:
    return ProbeFailure(
        "AWS credentials",
        detail,
        "set AWS_PROFILE (aws sso login for SSO profiles) or run aws configure; " + _NO_AWS_HINT,
    )


def _client_error(error: ClientError, model_id: str, region: str) -> ProbeFailure | None:
    info = error.response.get("Error", {})
    code = str(info.get("Code") or "")
    detail = str(info.get("Message") or code or "no message")
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code == "ValidationException" and _INVALID_MODEL in detail.lower():
        return ProbeFailure(
            "region or model id",
            f"Bedrock in {region} does not offer {model_id}: {detail}",
            f"set AWS_REGION to a region offering {model_id} (for example us-east-1) or check"
            " --model-id; " + _NO_AWS_HINT,
        )
    if code == "ValidationException":
        return None  # the empty request reached the model's input check: all is well
    if code == "AccessDeniedException":
        return ProbeFailure(
            "model access",
            detail,
            f"enable access to {model_id} in the Bedrock console (Model access) in {region},"
            f" and allow bedrock:InvokeModel on it for these credentials; " + _NO_AWS_HINT,
        )
    if code == "ResourceNotFoundException":
        return ProbeFailure(
            "model access",
            f"{model_id} not found in {region}: {detail}",
            f"request access to {model_id} in the Bedrock console in {region}; " + _NO_AWS_HINT,
        )
    if code in _CREDENTIAL_CODES:
        return _credentials(f"{code}: {detail}")
    if status == 429 or status >= 500 or code == "ThrottlingException":
        return ProbeFailure(
            "Bedrock is busy",
            f"{code or status}: {detail}",
            "nothing: files wait and are retried",
            transient=True,
        )
    return ProbeFailure("Bedrock", f"{code or status}: {detail}", _NO_AWS_HINT)


def probe_embedder(embedder: Any) -> ProbeFailure | None:
    """Embed one word with ``embedder`` (CLIP: loads the weights first)."""
    try:
        embedder.embed(text="probe")
    except TransientEmbeddingError as error:
        return ProbeFailure(
            "embedding model busy", str(error), "nothing: files wait and retry", transient=True
        )
    except EmbeddingError as error:
        return clip_failure(str(error))
    return None


def clip_failure(detail: str) -> ProbeFailure:
    first = " ".join(detail.split())
    if len(first) > 300:
        first = first[:297] + "..."
    return ProbeFailure("CLIP weights", first, CLIP_OFFLINE_HINT)
