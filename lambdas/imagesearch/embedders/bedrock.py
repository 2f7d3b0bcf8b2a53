"""Shared base of the Bedrock adapters of the Embedder port (Titan, Nova 2, Cohere v4).

Owns what every Bedrock model has in common: the lazily built bedrock-runtime client
(explicit timeouts, adaptive retries), one ``InvokeModel`` call, and the translation
of SDK errors into the domain errors of ``imagesearch.errors``, once, keeping the
model's own message:

- throttling (ThrottlingException, ModelNotReadyException, ServiceQuotaExceededException)
  -> ``TransientEmbeddingError(throttled=True)``
- timeouts, 5xx, model errors, connection failures -> ``TransientEmbeddingError``
- ValidationException: by its message (``embedders/bedrock_errors.py``): clearly about
  this input (image too large, unsupported or unreadable image, text too long, content
  refused) -> ``InvalidEmbeddingInput`` (ingest: ``rejected``, final); a deployment fault
  (model id invalid or not offered in the region, "use an inference profile", no access,
  "Operation not allowed", end of life, unsupported output dimension), a request that
  does not match the model's schema, and any message not recognised
  -> ``EmbedderConfigurationError`` (ingest: ``failed``, retried, DLQ + alarm): a
  rejection is final and silent, so doubt goes to the side that keeps the image
- access, unknown model, end of life, rejected or missing credentials, no region, any
  other 4xx -> ``EmbedderConfigurationError`` with what an operator should do

Every error keeps Bedrock's code (``code``) and two texts: ``str(error)``, the full
detail for the logs (the AccessDenied hint names the ARNs to allow: for an inference
profile the profile's ARN and the foundation model's), and ``reason``, what a record
may show: no ARNs, account ids or role names.

The SDK already retries throttling and transient errors (adaptive mode, at most
``max_attempts`` calls in all, the first one included); what still fails reaches the
caller classified. Subclasses own their wire format (request bodies, response
parsing) and limits. Nothing here logs request content: no text, image bytes or vectors.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

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

from imagesearch.embedders.base import ModelLimits, Purpose, Vector, unit_vector
from imagesearch.embedders.bedrock_errors import Rule, classify_validation, operator_rule
from imagesearch.errors import (
    EmbedderConfigurationError,
    EmbeddingError,
    InvalidEmbeddingInput,
    TransientEmbeddingError,
    redact,
)
from imagesearch.resources import model_spec, split_model_id

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


class BedrockEmbedder:
    """Client, invocation and error translation shared by the Bedrock adapters.

    ``client`` is a bedrock-runtime client; when absent one is built on first use
    from the standard AWS configuration (profile, region, credentials and
    ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` all apply), with explicit timeouts because
    Bedrock calls have been seen to hang under load. ``model_id`` may be a
    foundation model id or a cross-region inference profile id (``us.``, ``eu.``,
    ``apac.``, ``global.``) of the subclass's ``kind``.
    """

    kind = ""  # the resources.MODELS kind this adapter speaks

    def __init__(
        self,
        model_id: str,
        dimension: int,
        *,
        client: Any | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 30.0,
        max_attempts: int = 4,
        retry_mode: str = "adaptive",
    ) -> None:
        spec = model_spec(model_id)
        if spec is None or spec.kind != self.kind:
            raise ValueError(f"{model_id!r} is not a model this {type(self).__name__} speaks")
        # bool is an int: refuse it explicitly rather than embed at dimension 1.
        if isinstance(dimension, bool) or dimension not in spec.dimensions:
            raise ValueError(
                f"{model_id} supports output dimensions {list(spec.dimensions)}, not {dimension!r}"
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
    def limits(self) -> ModelLimits:
        raise NotImplementedError

    def embed(
        self,
        *,
        text: str | None = None,
        image: bytes | None = None,
        purpose: Purpose = "document",
    ) -> Vector:
        raise NotImplementedError

    @property
    def client(self) -> Any:
        """The bedrock-runtime client, built on first use (thread-safe)."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    # boto3 (with s3transfer) loads here, not at import: the search
                    # handler's module import stays inside its cold-start budget.
                    import boto3

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

    def invoke(self, body: bytes) -> bytes:
        """One InvokeModel call; the response body, or a classified EmbeddingError."""
        client = self.client
        try:
            response = client.invoke_model(
                modelId=self._model_id,
                body=body,
                contentType="application/json",
                accept="application/json",
            )
            payload: bytes = response["body"].read()
        except ClientError as error:
            raise self._translate_client_error(error, client) from error
        except BotoCoreError as error:
            raise self._translate_sdk_error(error, client) from error
        return payload

    # --- response parsing helpers ------------------------------------------------
    # A well-formed 200 that is not an embedding of ours means the endpoint or model
    # is not what we were configured for: retrying will not change it.

    def _document(self, payload: bytes) -> Any:
        try:
            return json.loads(payload)
        except ValueError as error:
            raise EmbedderConfigurationError(
                f"{self._model_id} returned a response that is not JSON"
            ) from error

    def _unit(self, embedding: Any) -> Vector:
        if not isinstance(embedding, list):
            raise EmbedderConfigurationError(
                f"{self._model_id} returned no embedding list in its response"
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
                f"Bedrock throttled {model} ({code or status}): {message}",
                throttled=True,
                code=code,
            )
        if code in _TRANSIENT_CODES or status >= 500 or status == 408:
            return TransientEmbeddingError(
                f"Bedrock {model} failed ({code or status}): {message}", code=code
            )
        if code == "ValidationException":
            rule = classify_validation(message)
            if rule.fault == "input":
                return InvalidEmbeddingInput(message, code=code)
            return self._operator_error(rule, code, message, region)
        if status == 413:  # the request body is over Bedrock's limit: this input's size
            return InvalidEmbeddingInput(message, code=code or "413")
        named = operator_rule(message)  # end of life, profile needed... under any code
        if code == "AccessDeniedException" and (named is None or named.name == "access"):
            return self._access_denied(code, message, region)
        if code in _CREDENTIAL_CODES:
            return EmbedderConfigurationError(
                f"AWS rejected the credentials used for Bedrock ({code}): {message} "
                "Refresh or fix the credentials (AWS_PROFILE, environment variables or the "
                "function's role).",
                code=code,
            )
        if named is not None:
            return self._operator_error(named, code, message, region)
        if code == "ResourceNotFoundException":
            return EmbedderConfigurationError(
                f"Bedrock model {model} was not found in region {region}: {message} "
                f"Check the model id, that {model} is offered in {region} and that model "
                "access has been granted (use-case details submitted) in the Bedrock console.",
                code=code,
            )
        # Unknown 4xx: neither retrying nor rejecting the image is known to be right, so
        # an operator looks (retried through the queue, then DLQ + alarm).
        return EmbedderConfigurationError(
            f"unexpected Bedrock error for {model} in region {region} "
            f"({code or 'no code'}, HTTP {status}): {message}",
            code=code or None,
        )

    def _operator_error(
        self, rule: Rule, code: str, message: str, region: str
    ) -> EmbedderConfigurationError:
        cause = rule.cause.format(model=self._model_id, region=region)
        fix = rule.fix.format(model=self._model_id, region=region)
        said = message if message.endswith((".", "!", "?")) else message + "."
        error = EmbedderConfigurationError(
            f"{cause} ({code or 'no code'} in region {region}): {said} {fix}".strip(), code=code
        )
        # A message no rule knows may be about this image (a model switch counts it).
        error.maybe_input = rule.name == "unrecognised"
        return error

    def _access_denied(self, code: str, message: str, region: str) -> EmbedderConfigurationError:
        """The record says what to do; the log also names the ARNs to allow (they carry
        the account id, which records never show)."""
        model = self._model_id
        profile, base = split_model_id(model)
        account = _account_in(message) or "<account>"
        if profile is None:
            resources = f"arn:aws:bedrock:{region}::foundation-model/{model}"
        else:
            # The profile, and the model in whichever region the profile routes to; a
            # global profile's model ARN has an empty region field.
            model_region = "" if profile == "global" else "*"
            resources = (
                f"arn:aws:bedrock:{region}:{account}:inference-profile/{model} and "
                f"arn:aws:bedrock:{model_region}::foundation-model/{base}"
            )
        fix = (
            f"Enable model access for {base} in the Bedrock console in region {region}, "
            "and allow bedrock:InvokeModel on it for the function's role"
        )
        return EmbedderConfigurationError(
            f"Bedrock denied access to {model} in region {region}: {message} {fix}: {resources}.",
            reason=f"Bedrock denied access to {model} in region {region}: {redact(message)} "
            f"{fix} (the ARNs to allow are in the ingest log).",
            code=code,
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


def _account_in(message: str) -> str | None:
    """The account id of the caller's ARN in an AccessDenied message, if any."""
    found = re.search(r"arn:aws[a-z-]*:(?:sts|iam)::(\d{12}):", message)
    return found.group(1) if found else None


def _region(client: Any) -> str:
    meta = getattr(client, "meta", None)
    return str(getattr(meta, "region_name", None) or "unknown")
