"""A fake Amazon Bedrock Runtime that speaks the real wire protocol over HTTP.

``FakeBedrock`` serves ``POST /model/{modelId}/invoke`` (restJson1, as botocore's
bedrock-runtime model describes it) on 127.0.0.1, so the real SDK and the real
Bedrock adapters (Titan, Nova 2, Cohere v4) talk to it unchanged: point them at it with
``AWS_ENDPOINT_URL_BEDROCK_RUNTIME=<fake.endpoint_url>`` or ``endpoint_url=``.

Wire format
    The model id arrives URL-encoded in the path (full foundation-model and
    inference-profile ARNs, and ``us.``/``eu.``/``apac.``/``global.`` profile ids, are
    accepted and served by their model). Each model speaks its own protocol: Titan
    below, Nova 2 in ``fakes/bedrock_nova.py``, Cohere v4 in
    ``fakes/bedrock_cohere.py``, each validating as its docs describe.
    Requests must be SigV4-signed for the ``bedrock`` signing name (or
    carry a bearer token); signatures are not verified. Errors are JSON
    ``{"message": ...}`` with ``x-amzn-ErrorType: <Code>:http://internal.amazon.com/...``
    and the HTTP status of the botocore model (ValidationException 400,
    AccessDeniedException 403, ResourceNotFoundException 404, ThrottlingException 429...),
    which botocore turns into ``ClientError`` with that code.

Validation (Titan Multimodal Embeddings G1, conservative limits of the AWS docs)
    Known model id (else 400 ValidationException "The provided model identifier is
    invalid.", as real Bedrock answers), JSON object body, no unknown keys, at least one
    of ``inputText`` / ``inputImage``; ``inputText`` non-empty and at most 128 tokens,
    approximated as ``ceil(characters / 4.7)`` (the Titan docs' average); ``inputImage``
    strict base64 without a ``data:`` prefix, PNG or JPEG by magic bytes and by Pillow,
    at most 5 MB decoded and at most 2048 px on each side (else "Image exceeds max
    pixels allowed."); ``embeddingConfig.outputEmbeddingLength`` in 256/384/1024.

Embeddings
    ``fake_titan_embedding`` is deterministic and meaningful: images map to a soft
    histogram over a small colour palette plus a small hash of their bytes; texts map to
    the colour words they contain (with synonyms: "crimson" is red) plus hashed word
    tokens; text + image is the average of both, as Titan does. A fixed random projection
    per model (``fakes/bedrock_wire.py``: one vector space per model)
    spreads the features over the requested dimension. So "red" ranks a red image above
    a blue one, and equal inputs always give equal vectors.

Fault injection (thread-safe, changeable while running)
    ``throttle_rate`` (429 ThrottlingException, seeded RNG), ``timeout_rate`` +
    ``timeout_seconds`` (sleep before answering so the client's read timeout fires),
    ``fail_next(n, code)`` (scripted errors), ``latency_seconds`` (for benchmarks),
    ``refuse_image(data)`` (a ValidationException for every request carrying those
    image bytes, as a model refuses an image it cannot read; a multi-image request
    is refused whole), ``cohere_image_url_shapes`` (which shapes of a Cohere fused
    input's ``image_url`` are taken: "string", "object" or both).
    Counters: ``calls``, ``successes``, ``status_counts``, ``log`` (model id, has text,
    has image, dimension, status per call; never content).

Use
    pytest: ``from fakes.bedrock import fake_bedrock  # noqa: F401`` in a conftest,
    then take ``fake_bedrock`` as a fixture (fresh server, env var set).
    Standalone: ``python -m fakes.bedrock --port 9123`` prints the URL and serves
    until SIGINT/SIGTERM.

moto
    Under ``moto.mock_aws()`` boto3 calls to this fake still reach it: moto only answers
    URLs matching its AWS patterns (``bedrock-runtime.<region>.amazonaws.com`` and so on)
    and lets every other URL through, so no passthrough configuration is needed (tested in
    tests/integration/test_fake_bedrock.py). Were that to change, moto's knob is
    ``mock_aws(config={"core": {"passthrough": {"urls": [r"http://127\\.0\\.0\\.1:\\d+/.*"]}}})``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import io
import json
import math
import random
import re
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import pytest
from PIL import Image, UnidentifiedImageError

from fakes import bedrock_cohere, bedrock_nova
from fakes.bedrock_wire import (
    COLOR_WORDS,
    DEFAULT_MESSAGES,
    ERROR_STATUS,
    PALETTE,
    BedrockError,
    Request,
    colour_histogram,
    fake_embedding,
    malformed,
)

# Shared with the other model protocols; re-exported for the tests that import them here.
__all__ = [
    "COLOR_WORDS",
    "DEFAULT_MESSAGES",
    "ERROR_STATUS",
    "PALETTE",
    "BedrockError",
    "CallRecord",
    "FakeBedrock",
    "colour_histogram",
    "fake_bedrock",
    "fake_embedding",
    "fake_titan_embedding",
]

TITAN_MODEL_ID = "amazon.titan-embed-image-v1"
KNOWN_MODELS: tuple[str, ...] = (TITAN_MODEL_ID, bedrock_nova.MODEL_ID, bedrock_cohere.MODEL_ID)
# Which protocol each model speaks.
PROTOCOLS: dict[str, Any] = {
    bedrock_nova.MODEL_ID: bedrock_nova,
    bedrock_cohere.MODEL_ID: bedrock_cohere,
}
# Cross-region inference profile prefixes: "us.cohere.embed-v4:0" is served by cohere.embed-v4:0.
PROFILE_PREFIXES = ("us.", "eu.", "apac.", "global.")
DIMENSIONS: tuple[int, ...] = (256, 384, 1024)
DEFAULT_DIMENSION = 1024
MAX_TEXT_TOKENS = 128
CHARS_PER_TOKEN = 4.7
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_IMAGE_SIDE = 2048
MAX_BODY_BYTES = 25_000_000  # InvokeModel body limit in the botocore model

_ERROR_TYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_INVOKE_PATH = re.compile(r"^/model/(?P<model>[^/]+)/invoke$")
_ARN_MODEL = re.compile(
    r"^arn:aws[a-z-]*:bedrock:[a-z0-9-]+:\d*:(?:foundation-model|inference-profile)/(?P<id>.+)$"
)
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_REQUEST_KEYS = frozenset({"inputText", "inputImage", "embeddingConfig"})

# --- The embedding function ------------------------------------------------------


def approx_token_count(text: str) -> int:
    """Titan's token count, approximated by the docs' average of 4.7 characters a token."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def fake_titan_embedding(
    text: str | None, image_bytes: bytes | None, dimension: int = DEFAULT_DIMENSION
) -> list[float]:
    """The embedding the fake returns for this input (not unit-norm, like raw model output).

    ``image_bytes`` are the decoded image (PNG or JPEG). Raises ValueError when neither
    input is given or the dimension is not one Titan offers.
    """
    if dimension not in DIMENSIONS:
        raise ValueError(f"dimension must be one of {DIMENSIONS}")
    return fake_embedding(text, image_bytes, dimension, "titan")


# --- Request validation ------------------------------------------------------------


_malformed = malformed


@dataclass(frozen=True)
class TitanRequest:
    text: str | None
    image: bytes | None
    dimension: int


def parse_titan_request(body: bytes) -> TitanRequest:
    """Validate an InvokeModel body like Titan Multimodal Embeddings G1 does."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _malformed("request body is not valid JSON") from None
    return _titan_request(document)


def _titan_request(document: Any) -> TitanRequest:
    if not isinstance(document, dict):
        raise _malformed("#: expected type: JSONObject")
    extra = sorted(set(document) - _REQUEST_KEYS)
    if extra:
        raise _malformed(f"#: extraneous key [{extra[0]}] is not permitted")
    text = document.get("inputText")
    image_b64 = document.get("inputImage")
    if text is None and image_b64 is None:
        raise _malformed("#: at least one of [inputText, inputImage] is required")

    dimension = DEFAULT_DIMENSION
    config = document.get("embeddingConfig")
    if config is not None:
        if not isinstance(config, dict):
            raise _malformed("#/embeddingConfig: expected type: JSONObject")
        extra = sorted(set(config) - {"outputEmbeddingLength"})
        if extra:
            raise _malformed(f"#/embeddingConfig: extraneous key [{extra[0]}] is not permitted")
        length = config.get("outputEmbeddingLength", DEFAULT_DIMENSION)
        if isinstance(length, bool) or length not in DIMENSIONS:
            raise _malformed(
                f"#/embeddingConfig/outputEmbeddingLength: {json.dumps(length)} is not a "
                "valid enum value"
            )
        dimension = int(length)

    if text is not None:
        if not isinstance(text, str):
            raise _malformed("#/inputText: expected type: String")
        if not text.strip():
            raise _malformed("#/inputText: expected minLength: 1")
        tokens = approx_token_count(text)
        if tokens > MAX_TEXT_TOKENS:
            raise BedrockError(
                "ValidationException",
                f"Too many input tokens. Max input tokens: {MAX_TEXT_TOKENS}, "
                f"request input token count: {tokens}",
            )
    image = None if image_b64 is None else _decode_image(image_b64)
    return TitanRequest(text=text, image=image, dimension=dimension)


def _decode_image(value: Any) -> bytes:
    if not isinstance(value, str):
        raise _malformed("#/inputImage: expected type: String")
    if value.startswith("data:"):
        raise BedrockError(
            "ValidationException",
            "Invalid image: inputImage must be plain base64 without a data URI prefix.",
        )
    try:
        image = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BedrockError(
            "ValidationException", "Invalid image: inputImage is not valid base64."
        ) from None
    if len(image) > MAX_IMAGE_BYTES:
        raise BedrockError(
            "ValidationException",
            f"Image size {len(image)} bytes exceeds the maximum of {MAX_IMAGE_BYTES} bytes.",
        )
    if not (image.startswith(_PNG_MAGIC) or image.startswith(_JPEG_MAGIC)):
        raise BedrockError(
            "ValidationException", "Unsupported image format. Supported formats: PNG, JPEG."
        )
    try:
        with Image.open(io.BytesIO(image)) as decoded:
            if decoded.format not in ("PNG", "JPEG"):
                raise BedrockError(
                    "ValidationException",
                    "Unsupported image format. Supported formats: PNG, JPEG.",
                )
            width, height = decoded.size
            if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
                raise BedrockError("ValidationException", "Image exceeds max pixels allowed.")
            decoded.load()
    except BedrockError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise BedrockError("ValidationException", "Unable to process provided image.") from None
    return image


# --- The server ----------------------------------------------------------------------


@dataclass(frozen=True)
class CallRecord:
    """One InvokeModel call as the fake saw it (never its content)."""

    model_id: str  # the foundation model (a profile id is logged as its model)
    has_text: bool
    has_image: bool
    dimension: int | None
    status: int
    # Nova and Cohere calls (successful ones) also log these; Titan calls leave them.
    purpose: str | None = None  # embeddingPurpose / input_type
    items: int = 1  # inputs embedded by the call
    image_formats: tuple[str, ...] = ()
    image_pixels: int | None = None  # of the largest image
    profile: str | None = None  # "us", "eu", "apac", "global" when called through one


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def _error_reply(error: BedrockError) -> Reply:
    return Reply(
        error.status,
        {
            "Content-Type": "application/json",
            "x-amzn-ErrorType": error.code + _ERROR_TYPE_SUFFIX,
            "x-amzn-RequestId": str(uuid.uuid4()),
        },
        json.dumps({"message": error.message}).encode(),
    )


class FakeBedrock:
    """Fake bedrock-runtime InvokeModel endpoint for Titan Multimodal Embeddings G1."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        models: Sequence[str] = KNOWN_MODELS,
        throttle_rate: float = 0.0,
        timeout_rate: float = 0.0,
        timeout_seconds: float = 1.0,
        latency_seconds: float = 0.0,
    ) -> None:
        self._host = host
        self._port = port
        self._models = frozenset(models)
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._throttle_rate = throttle_rate
        self._timeout_rate = timeout_rate
        self._timeout_seconds = timeout_seconds
        self._latency_seconds = latency_seconds
        self._scripted: list[BedrockError] = []
        # (sha256, model or None: any) -> the ValidationException's message
        self._refused: dict[tuple[str, str | None], str] = {}
        self._throttled_models: set[str] = set()
        self._cohere_image_url_shapes = frozenset({"string"})
        self._calls = 0
        self._successes = 0
        self._status_counts: Counter[int] = Counter()
        self._log: list[CallRecord] = []
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Fault knobs: properties so a test can change them while requests are in flight.
    def _get(self, name: str) -> Any:
        with self._lock:
            return getattr(self, name)

    def _set(self, name: str, value: Any) -> None:
        with self._lock:
            setattr(self, name, value)

    throttle_rate = property(
        lambda self: self._get("_throttle_rate"),
        lambda self, v: self._set("_throttle_rate", _rate(v)),
        doc="Fraction of calls answered 429 ThrottlingException (seeded RNG).",
    )
    timeout_rate = property(
        lambda self: self._get("_timeout_rate"),
        lambda self, v: self._set("_timeout_rate", _rate(v)),
        doc="Fraction of calls that sleep ``timeout_seconds`` before answering.",
    )
    timeout_seconds = property(
        lambda self: self._get("_timeout_seconds"),
        lambda self, v: self._set("_timeout_seconds", float(v)),
    )
    latency_seconds = property(
        lambda self: self._get("_latency_seconds"),
        lambda self, v: self._set("_latency_seconds", float(v)),
        doc="Delay added to every successful call (benchmarks).",
    )

    @property
    def cohere_image_url_shapes(self) -> frozenset[str]:
        """Which shapes of a Cohere fused input's image_url this fake takes: "string"
        (a data URI) and/or "object" ({"url": data URI}); the string only by default."""
        shapes: frozenset[str] = self._get("_cohere_image_url_shapes")
        return shapes

    @cohere_image_url_shapes.setter
    def cohere_image_url_shapes(self, shapes: Sequence[str]) -> None:
        chosen = frozenset(shapes)
        if not chosen or not chosen <= bedrock_cohere.IMAGE_URL_SHAPES:
            raise ValueError(f"shapes must be some of {sorted(bedrock_cohere.IMAGE_URL_SHAPES)}")
        self._set("_cohere_image_url_shapes", chosen)

    def fail_next(
        self,
        n: int = 1,
        error_code: str = "ServiceUnavailableException",
        message: str | None = None,
        *,
        status: int | None = None,
    ) -> None:
        """Answer the next ``n`` calls with this error (before any validation)."""
        error = BedrockError(error_code, message, status)
        with self._lock:
            self._scripted.extend([error] * n)

    def refuse_image(
        self,
        data: bytes,
        model_id: str | None = None,
        message: str = "Unable to process the provided image.",
    ) -> None:
        """Answer ValidationException to every request that carries these image bytes
        (to ``model_id``'s requests only, when given: one model of a switch refusing).
        ``message``: another wording (one ingest does not take for a refusal of the
        image is a configuration error, decision 33: an image a model cannot embed)."""
        with self._lock:
            self._refused[(hashlib.sha256(data).hexdigest(), model_id)] = message

    def throttle_model(self, model_id: str, throttled: bool = True) -> None:
        """Answer ThrottlingException to every call of this model (one model of a
        switch failing while the other works) until called with ``throttled=False``."""
        with self._lock:
            if throttled:
                self._throttled_models.add(model_id)
            else:
                self._throttled_models.discard(model_id)

    def _refuses(self, images: Sequence[bytes | None], model_id: str) -> str | None:
        """The refusal's message for a request carrying these images (None: taken)."""
        with self._lock:
            refused = {
                digest: message
                for (digest, model), message in self._refused.items()
                if model in (None, model_id)
            }
        for image in images:
            if image is not None and hashlib.sha256(image).hexdigest() in refused:
                return refused[hashlib.sha256(image).hexdigest()]
        return None

    @property
    def calls(self) -> int:
        with self._lock:
            return self._calls

    @property
    def successes(self) -> int:
        with self._lock:
            return self._successes

    @property
    def status_counts(self) -> dict[int, int]:
        with self._lock:
            return dict(self._status_counts)

    @property
    def call_log(self) -> list[CallRecord]:
        """One record per call, in arrival order of the answers."""
        with self._lock:
            return list(self._log)

    log = call_log

    def reset(self) -> None:
        """Clear counters, log, scripted errors and fault rates."""
        with self._lock:
            self._calls = self._successes = 0
            self._status_counts.clear()
            self._log.clear()
            self._scripted.clear()
            self._refused.clear()
            self._throttled_models.clear()
            self._cohere_image_url_shapes = frozenset({"string"})
            self._throttle_rate = self._timeout_rate = 0.0

    # Lifecycle.
    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeBedrock is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeBedrock:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self._host, self._port), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()  # wakes handlers sleeping in a simulated timeout
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeBedrock:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, **kwargs: Any) -> Any:
        """A bedrock-runtime boto3 client pointed at this fake."""
        import boto3

        kwargs.setdefault("region_name", "us-east-1")
        return boto3.client("bedrock-runtime", endpoint_url=self.endpoint_url, **kwargs)

    # Request handling (HTTP-independent, so it is easy to reason about).
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        match = _INVOKE_PATH.match(path.split("?", 1)[0])
        if method != "POST" or match is None:
            return _error_reply(BedrockError("UnknownOperationException", "UnknownOperation"))
        model_id = unquote(match.group("model"))
        arn = _ARN_MODEL.match(model_id)
        if arn:
            model_id = arn.group("id")
        profile = None
        for prefix in PROFILE_PREFIXES:
            if model_id.startswith(prefix):
                profile, model_id = prefix[:-1], model_id[len(prefix) :]
                break
        document = _load_json(body)
        has_text, has_image, dimension = _peek(document)

        with self._lock:
            self._calls += 1
            scripted = self._scripted.pop(0) if self._scripted else None
            timeout = (
                self._timeout_seconds
                if scripted is None and self._rng.random() < self._timeout_rate
                else None
            )
            throttled = scripted is None and (
                self._rng.random() < self._throttle_rate or model_id in self._throttled_models
            )
            latency = self._latency_seconds

        if timeout is not None:
            # The client gives up meanwhile; the late answer below goes nowhere.
            self._stopping.wait(timeout)
        reply, request = self._answer(model_id, headers, document, scripted, throttled, latency)
        if request is None:
            record = CallRecord(model_id, has_text, has_image, dimension, reply.status)
        else:
            record = CallRecord(
                model_id,
                any(item.text is not None for item in request.items),
                any(item.image is not None for item in request.items),
                request.dimension,
                reply.status,
                purpose=request.purpose,
                items=len(request.items),
                image_formats=request.image_formats,
                image_pixels=request.image_pixels,
            )
        if profile is not None:
            record = replace(record, profile=profile)

        with self._lock:
            self._status_counts[reply.status] += 1
            if reply.status == 200:
                self._successes += 1
            self._log.append(record)
        return reply

    def _answer(
        self,
        model_id: str,
        headers: dict[str, str],
        document: Any,
        scripted: BedrockError | None,
        throttled: bool,
        latency: float,
    ) -> tuple[Reply, Request | None]:
        """The reply, and the parsed request of a Nova or Cohere call that succeeded."""
        protocol = PROTOCOLS.get(model_id)
        try:
            _check_auth(headers)
            if scripted is not None:
                raise scripted
            if throttled:
                raise BedrockError("ThrottlingException")
            if model_id not in self._models:
                raise BedrockError(
                    "ValidationException", "The provided model identifier is invalid."
                )
            _check_content_types(headers)
            if document is _NOT_JSON:
                raise _malformed("request body is not valid JSON")
            if protocol is not None:
                if protocol is bedrock_cohere:
                    shapes = self.cohere_image_url_shapes
                    parsed: Request = bedrock_cohere.parse(document, image_url_shapes=shapes)
                else:
                    parsed = protocol.parse(document)
                images = [item.image for item in parsed.items]
            else:
                request = _titan_request(document)
                images = [request.image]
            refused = self._refuses(images, model_id)
            if refused is not None:
                refusal = BedrockError("ValidationException", refused)
                # logged with what the refused request carried
                return _error_reply(refusal), parsed if protocol is not None else None
        except BedrockError as error:
            return _error_reply(error), None
        started = time.perf_counter()
        if protocol is not None:
            answer = protocol.respond(parsed)
            if latency > 0:
                self._stopping.wait(latency)
            return self._ok(answer, parsed.tokens, started), parsed
        embedding = fake_titan_embedding(request.text, request.image, request.dimension)
        if latency > 0:
            self._stopping.wait(latency)
        tokens = 0 if request.text is None else approx_token_count(request.text)
        payload = {"embedding": embedding, "inputTextTokenCount": tokens, "message": None}
        return self._ok(payload, tokens, started), None

    @staticmethod
    def _ok(payload: dict[str, Any], tokens: int, started: float) -> Reply:
        return Reply(
            200,
            {
                "Content-Type": "application/json",
                "x-amzn-RequestId": str(uuid.uuid4()),
                "X-Amzn-Bedrock-Invocation-Latency": str(
                    int((time.perf_counter() - started) * 1000)
                ),
                "X-Amzn-Bedrock-Input-Token-Count": str(tokens),
            },
            json.dumps(payload).encode(),
        )


def _rate(value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError("rates are fractions between 0 and 1")
    return value


_NOT_JSON = object()


def _load_json(body: bytes) -> Any:
    """The parsed body, or ``_NOT_JSON``."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _NOT_JSON


def _peek(document: Any) -> tuple[bool, bool, int | None]:
    """What the call asked for, for the log; never raises."""
    if not isinstance(document, dict):
        return False, False, None
    config = document.get("embeddingConfig")
    length = config.get("outputEmbeddingLength") if isinstance(config, dict) else None
    dimension = length if isinstance(length, int) and not isinstance(length, bool) else None
    if config is None:
        dimension = DEFAULT_DIMENSION
    return "inputText" in document, "inputImage" in document, dimension


def _check_auth(headers: dict[str, str]) -> None:
    authorization = headers.get("authorization", "")
    if authorization.startswith("Bearer "):
        return
    if not authorization.startswith("AWS4-HMAC-SHA256 "):
        raise BedrockError("MissingAuthenticationTokenException", "Missing Authentication Token")
    if "/bedrock/aws4_request" not in authorization:
        raise BedrockError(
            "InvalidSignatureException",
            "Credential should be scoped to correct service: 'bedrock'.",
            403,
        )


def _check_content_types(headers: dict[str, str]) -> None:
    content_type = headers.get("content-type", "application/json").split(";")[0].strip()
    if content_type not in ("application/json", "application/octet-stream"):
        raise BedrockError(
            "ValidationException", f"Content type {content_type} is not supported by this model."
        )
    accept = headers.get("accept", "application/json").split(";")[0].strip()
    if accept not in ("application/json", "*/*"):
        raise BedrockError("ValidationException", f"Accept {accept} is not supported.")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeBedrock

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (read timeout) closes its socket: not an error here.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects
    # Without it every small response waits ~40 ms for a delayed ACK (Nagle).
    disable_nagle_algorithm = True
    server: _Server

    def _dispatch(self) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        length = int(headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            # Refused unread: say so and close the connection instead of draining it.
            reply = _error_reply(
                BedrockError(
                    "ValidationException",
                    f"Request body of {length} bytes exceeds the limit of {MAX_BODY_BYTES}.",
                )
            )
            self.close_connection = True
            reply.headers["Connection"] = "close"
        else:
            body = self.rfile.read(length) if length else b""
            reply = self.server.fake.handle(self.command, self.path, headers, body)
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_POST = do_GET = do_PUT = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read counters, not access logs."""


@pytest.fixture
def fake_bedrock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBedrock]:
    """A fresh FakeBedrock, with AWS_ENDPOINT_URL_BEDROCK_RUNTIME pointing at it."""
    with FakeBedrock() as fake:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", fake.endpoint_url)
        yield fake


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fakes.bedrock",
        description="Fake Bedrock Runtime (Titan Multimodal Embeddings G1) on localhost.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9123, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--throttle-rate", type=float, default=0.0)
    parser.add_argument("--timeout-rate", type=float, default=0.0)
    parser.add_argument("--timeout-seconds", type=float, default=1.0)
    parser.add_argument("--latency-seconds", type=float, default=0.0)
    args = parser.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    fake = FakeBedrock(
        host=args.host,
        port=args.port,
        seed=args.seed,
        throttle_rate=_rate(args.throttle_rate),
        timeout_rate=_rate(args.timeout_rate),
        timeout_seconds=args.timeout_seconds,
        latency_seconds=args.latency_seconds,
    )
    with fake:
        print(fake.endpoint_url, flush=True)
        print(
            f"export AWS_ENDPOINT_URL_BEDROCK_RUNTIME={fake.endpoint_url}  # Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    print(f"fake Bedrock stopped after {fake.calls} calls", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
