"""Bedrock adapter of the Embedder port: Amazon Titan Multimodal Embeddings G1.

One ``InvokeModel`` call per embedding. SDK errors are translated here, once, into
the domain errors of ``imagesearch.errors`` (keeping the model's own message):

- throttling (ThrottlingException, ModelNotReadyException, ServiceQuotaExceededException)
  -> ``TransientEmbeddingError(throttled=True)``
- timeouts, 5xx, model errors, connection failures -> ``TransientEmbeddingError``
- ValidationException -> ``InvalidEmbeddingInput`` (permanent), except Bedrock's
  "The provided model identifier is invalid." (model not offered in this region),
  which is a configuration error
- access, unknown model, rejected or missing credentials, no region
  -> ``EmbedderConfigurationError`` with what an operator should do

The SDK already retries throttling and transient errors (adaptive mode, at most
``max_attempts`` calls in all, the first one included); what still fails reaches the
caller classified.
Nothing here logs request content: no text, image bytes or vectors.
"""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

import boto3
from botocore.config import Config
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
from botocore.exceptions import HTTPClientError as BotoHTTPClientError

from imagesearch.embedders.base import Vector, unit_vector
from imagesearch.errors import (
    EmbedderConfigurationError,
    EmbeddingError,
    InvalidEmbeddingInput,
    TransientEmbeddingError,
)
from imagesearch.resources import SUPPORTED_MODELS

TITAN_MULTIMODAL_MODEL_ID = "amazon.titan-embed-image-v1"
TITAN_MODEL_PREFIX = "amazon.titan-embed-image"

_THROTTLING_CODES = frozenset(
    {"ThrottlingException", "ModelNotReadyException", "ServiceQuotaExceededException"}
)
_TRANSIENT_CODES = frozenset(
    {
        "ModelTimeoutException",
        "InternalServerException",
        "ServiceUnavailableException",
        "ModelErrorException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
_CREDENTIAL_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "MissingAuthenticationTokenException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
    }
)
_CREDENTIAL_ERRORS = (
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
    ProfileNotFound,
    SSOError,
    TokenRetrievalError,
)
# Bedrock answers an unknown model id, or one not offered in the region, with a
# ValidationException carrying this text: no input can fix that, an operator must.
_INVALID_MODEL_MESSAGE = "model identifier is invalid"


def is_titan_model(model_id: str) -> bool:
    return model_id.startswith(TITAN_MODEL_PREFIX)


class TitanMultimodalEmbedder:
    """``Embedder`` for ``amazon.titan-embed-image-v1`` (256, 384 or 1024 dimensions).

    ``client`` is a bedrock-runtime client; when absent one is built on first use
    from the standard AWS configuration (profile, region, credentials and
    ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` all apply), with explicit timeouts because
    Bedrock calls have been seen to hang under load.
    """

    def __init__(
        self,
        model_id: str = TITAN_MULTIMODAL_MODEL_ID,
        dimension: int = 1024,
        *,
        client: Any | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 30.0,
        max_attempts: int = 4,
        retry_mode: str = "adaptive",
    ) -> None:
        if not is_titan_model(model_id) or model_id not in SUPPORTED_MODELS:
            titan = sorted(m for m in SUPPORTED_MODELS if is_titan_model(m))
            raise ValueError(f"unsupported Titan model {model_id!r}; supported: {titan}")
        dimensions = SUPPORTED_MODELS[model_id]
        # bool is an int: refuse it explicitly rather than embed at dimension 1.
        if isinstance(dimension, bool) or dimension not in dimensions:
            raise ValueError(
                f"{model_id} supports output dimensions {list(dimensions)}, not {dimension!r}"
            )
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("Bedrock timeouts must be positive")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if retry_mode not in ("adaptive", "standard"):
            raise ValueError("retry_mode must be 'adaptive' or 'standard'")
        self._model_id = model_id
        self._dimension = int(dimension)
        self._client = client
        self._client_lock = threading.Lock()
        # total_max_attempts counts the first call too; botocore's "max_attempts" key
        # would mean retries (one call more than the name says).
        self._config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": retry_mode, "total_max_attempts": max_attempts},
        )

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def client(self) -> Any:
        """The bedrock-runtime client, built on first use (thread-safe)."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    try:
                        self._client = boto3.client("bedrock-runtime", config=self._config)
                    except NoRegionError as error:
                        raise EmbedderConfigurationError(
                            "no AWS region configured for Bedrock: set AWS_REGION (or "
                            "AWS_DEFAULT_REGION, or a region in your AWS profile) to a region "
                            f"where {self._model_id} is available"
                        ) from error
                    except _CREDENTIAL_ERRORS as error:
                        raise EmbedderConfigurationError(
                            f"AWS configuration for Bedrock is unusable: {error}"
                        ) from error
        return self._client

    def request_body(self, *, text: str | None = None, image: bytes | None = None) -> bytes:
        """The InvokeModel body for ``text`` and/or ``image`` (Titan G1 request format)."""
        if text is None and image is None:
            raise ValueError("embed needs text, image bytes, or both")
        body: dict[str, Any] = {}
        if text is not None:
            if not isinstance(text, str):
                raise TypeError("text must be a str")
            if not text.strip():
                raise InvalidEmbeddingInput("text to embed is empty")
            body["inputText"] = text
        if image is not None:
            if not isinstance(image, bytes | bytearray | memoryview):
                raise TypeError("image must be bytes")
            if len(image) == 0:
                raise InvalidEmbeddingInput("image to embed is empty")
            # Plain base64, no "data:" URI prefix: Titan rejects the prefix.
            body["inputImage"] = base64.b64encode(bytes(image)).decode("ascii")
        body["embeddingConfig"] = {"outputEmbeddingLength": self._dimension}
        return json.dumps(body, separators=(",", ":")).encode("utf-8")

    def embed(self, *, text: str | None = None, image: bytes | None = None) -> Vector:
        body = self.request_body(text=text, image=image)
        client = self.client
        try:
            response = client.invoke_model(
                modelId=self._model_id,
                body=body,
                contentType="application/json",
                accept="application/json",
            )
            payload = response["body"].read()
        except ClientError as error:
            raise self._translate_client_error(error, client) from error
        except BotoCoreError as error:
            raise self._translate_sdk_error(error, client) from error
        return self._parse(payload)

    def _parse(self, payload: bytes) -> Vector:
        # A well-formed 200 that is not a Titan embedding means the endpoint or model
        # is not what we were configured for: retrying will not change it.
        try:
            document = json.loads(payload)
        except ValueError as error:
            raise EmbedderConfigurationError(
                f"{self._model_id} returned a response that is not JSON"
            ) from error
        embedding = document.get("embedding") if isinstance(document, dict) else None
        if not isinstance(embedding, list):
            raise EmbedderConfigurationError(
                f"{self._model_id} returned no 'embedding' list in its response"
            )
        if len(embedding) != self._dimension:
            raise EmbedderConfigurationError(
                f"{self._model_id} returned {len(embedding)} values; expected {self._dimension}"
            )
        try:
            return unit_vector(embedding)
        except (TypeError, ValueError) as error:
            raise EmbedderConfigurationError(
                f"{self._model_id} returned an unusable embedding: {error}"
            ) from error

    def _translate_client_error(self, error: ClientError, client: Any) -> EmbeddingError:
        info = error.response.get("Error", {})
        code = str(info.get("Code") or "")
        message = str(info.get("Message") or "") or code or "no message"
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        region = _region(client)
        model = self._model_id

        if code in _THROTTLING_CODES or status == 429:
            return TransientEmbeddingError(
                f"Bedrock throttled {model} ({code or status}): {message}", throttled=True
            )
        if code in _TRANSIENT_CODES or status >= 500 or status == 408:
            return TransientEmbeddingError(f"Bedrock {model} failed ({code or status}): {message}")
        if code == "ValidationException" and _INVALID_MODEL_MESSAGE in message.lower():
            return EmbedderConfigurationError(
                f"Bedrock does not offer {model} in region {region}: {message} "
                f"Check the model id and deploy to a region where {model} is available."
            )
        if code == "ValidationException" or status == 413:
            return InvalidEmbeddingInput(message)
        if code == "AccessDeniedException":
            return EmbedderConfigurationError(
                f"Bedrock denied access to {model} in region {region}: {message} "
                f"Enable model access for {model} in the Bedrock console in region {region}, "
                f"and allow bedrock:InvokeModel on "
                f"arn:aws:bedrock:{region}::foundation-model/{model} for this role."
            )
        if code == "ResourceNotFoundException":
            return EmbedderConfigurationError(
                f"Bedrock model {model} was not found in region {region}: {message} "
                f"Check the model id, that {model} is offered in {region} and that model "
                "access has been granted (use-case details submitted) in the Bedrock console."
            )
        if code in _CREDENTIAL_CODES:
            return EmbedderConfigurationError(
                f"AWS rejected the credentials used for Bedrock ({code}): {message} "
                "Refresh or fix the credentials (AWS_PROFILE, environment variables or the "
                "function's role)."
            )
        # Unknown 4xx: neither retrying nor rejecting the image is known to be right, so
        # an operator looks (retried through the queue, then DLQ + alarm).
        return EmbedderConfigurationError(
            f"unexpected Bedrock error for {model} in region {region} "
            f"({code or 'no code'}, HTTP {status}): {message}"
        )

    def _translate_sdk_error(self, error: BotoCoreError, client: Any) -> EmbeddingError:
        if isinstance(error, _CREDENTIAL_ERRORS):
            return EmbedderConfigurationError(
                f"no usable AWS credentials for Bedrock ({type(error).__name__}: {error}). "
                "Configure credentials (AWS_PROFILE, environment variables or an IAM role) "
                f"allowed to call bedrock:InvokeModel on {self._model_id} in region "
                f"{_region(client)}."
            )
        if isinstance(error, BotoConnectionError | BotoHTTPClientError):
            # Read/connect timeouts, refused or closed connections (ReadTimeoutError,
            # ConnectTimeoutError, EndpointConnectionError, ConnectionClosedError...).
            return TransientEmbeddingError(
                f"Bedrock {self._model_id} unreachable ({type(error).__name__}): {error}"
            )
        return EmbedderConfigurationError(
            f"Bedrock client error for {self._model_id} ({type(error).__name__}): {error}"
        )


def _region(client: Any) -> str:
    meta = getattr(client, "meta", None)
    return str(getattr(meta, "region_name", None) or "unknown")
