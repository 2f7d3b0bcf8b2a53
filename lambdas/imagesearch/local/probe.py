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

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
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

from imagesearch.embedders.bedrock_errors import operator_rule
from imagesearch.errors import EmbeddingError, TransientEmbeddingError
from imagesearch.resources import CLIP_MODEL_ID, ENV_CLIP_MODEL

HUB_HOST = "huggingface.co"
_TRUTHY = frozenset({"1", "true", "yes", "on"})

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
    named = operator_rule(detail) if code == "ValidationException" else None
    if named is not None:  # e.g. "use an inference profile": a ValidationException too
        return ProbeFailure(
            "model configuration",
            f"{named.cause.format(model=model_id, region=region)}: {detail}",
            f"{named.fix.format(model=model_id, region=region)} " + _NO_AWS_HINT,
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


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connect (the weights' download)."""
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def probe_clip_weights(
    environ: Mapping[str, str] | None = None,
    *,
    reachable: Callable[[], bool] = hub_reachable,
    model_name: str = CLIP_MODEL_ID,
) -> ProbeFailure | None:
    """Are CLIP's weights where the loader will look? A local folder named by
    IMAGESEARCH_CLIP_MODEL, the Hugging Face cache, or a reachable hub to download from.
    Checked before loading: offline and uncached, the loader would retry for minutes."""
    env = os.environ if environ is None else environ
    configured = env.get(ENV_CLIP_MODEL)
    if configured:
        if Path(configured).expanduser().is_dir():
            return None
        return ProbeFailure(
            "CLIP weights",
            f"{ENV_CLIP_MODEL}={configured} is not a folder",
            "point it at a copy of the sentence-transformers clip-ViT-B-32 folder",
        )
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None  # the CLIP extra is missing: the CLI already says how to install it
    if isinstance(
        try_to_load_from_cache(f"sentence-transformers/{model_name}", "modules.json"), str
    ):
        return None
    offline = any(env.get(name, "").lower() in _TRUTHY for name in ("HF_HUB_OFFLINE",))
    if offline or not reachable():
        why = "HF_HUB_OFFLINE is set" if offline else f"{HUB_HOST} is not reachable"
        return ProbeFailure(
            "CLIP weights", f"{model_name} is not downloaded yet and {why}", CLIP_OFFLINE_HINT
        )
    return None
