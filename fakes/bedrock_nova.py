"""The fake Bedrock's Amazon Nova 2 Multimodal Embeddings protocol (SINGLE_EMBEDDING).

Validates like the "Complete embeddings request and response schema" page of the
Nova user guide: ``schemaVersion`` (optional, ``nova-multimodal-embed-v1``),
``taskType`` (required; ``SINGLE_EMBEDDING`` for synchronous calls),
``singleEmbeddingParams`` (required) with ``embeddingPurpose`` (required, enum),
``embeddingDimension`` (256/384/1024/3072, default 3072) and exactly one of
``text`` / ``image`` (audio and video are refused by this fake: it embeds text and
images only). ``text``: ``truncationMode`` START/END/NONE and a non-empty ``value``;
more than 8,192 tokens (approximated as 4 characters each) fails with NONE and is cut
otherwise. ``image``: ``format`` png/jpeg/gif/webp matching the bytes, optional
``detailLevel`` STANDARD_IMAGE/DOCUMENT_IMAGE, ``source`` with base64 ``bytes`` (an
``s3Location`` is refused: the fake has no S3), at most 25 MB decoded.
Answer: ``{"embeddings": [{"embeddingType": "TEXT"|"IMAGE", "embedding": [...]}]}``
(plus ``truncatedCharLength`` when text was cut).
"""

from __future__ import annotations

import math
from typing import Any

from fakes.bedrock_wire import (
    Item,
    Request,
    b64decode_strict,
    decode_image,
    fake_embedding,
    invalid,
    malformed,
)

MODEL_ID = "amazon.nova-2-multimodal-embeddings-v1:0"
SCHEMA_VERSION = "nova-multimodal-embed-v1"
DIMENSIONS = (256, 384, 1024, 3072)
DEFAULT_DIMENSION = 3072
PURPOSES = frozenset(
    {
        "GENERIC_INDEX",
        "GENERIC_RETRIEVAL",
        "TEXT_RETRIEVAL",
        "IMAGE_RETRIEVAL",
        "VIDEO_RETRIEVAL",
        "DOCUMENT_RETRIEVAL",
        "AUDIO_RETRIEVAL",
        "CLASSIFICATION",
        "CLUSTERING",
    }
)
FORMATS = frozenset({"png", "jpeg", "gif", "webp"})
MAX_TEXT_TOKENS = 8192
CHARS_PER_TOKEN = 4
MAX_IMAGE_BYTES = 25_000_000
_TOP_KEYS = frozenset({"schemaVersion", "taskType", "singleEmbeddingParams"})
_PARAM_KEYS = frozenset(
    {"embeddingPurpose", "embeddingDimension", "text", "image", "audio", "video"}
)


def token_count(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def parse(document: Any) -> Request:
    if not isinstance(document, dict):
        raise malformed("#: expected type: JSONObject")
    extra = sorted(set(document) - _TOP_KEYS)
    if extra:
        raise malformed(f"#: extraneous key [{extra[0]}] is not permitted")
    version = document.get("schemaVersion", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise malformed(f"#/schemaVersion: {version!r} is not a valid enum value")
    task = document.get("taskType")
    if task is None:
        raise malformed("#: required key [taskType] not found")
    if task != "SINGLE_EMBEDDING":
        raise invalid(f"taskType {task} is not supported by InvokeModel; use StartAsyncInvoke.")
    params = document.get("singleEmbeddingParams")
    if not isinstance(params, dict):
        raise malformed("#: required key [singleEmbeddingParams] not found")
    extra = sorted(set(params) - _PARAM_KEYS)
    if extra:
        raise malformed(f"#/singleEmbeddingParams: extraneous key [{extra[0]}] is not permitted")
    purpose = params.get("embeddingPurpose")
    if purpose is None:
        raise malformed("#/singleEmbeddingParams: required key [embeddingPurpose] not found")
    if purpose not in PURPOSES:
        raise malformed(f"#/singleEmbeddingParams/embeddingPurpose: {purpose!r} is not valid")
    dimension = params.get("embeddingDimension", DEFAULT_DIMENSION)
    if isinstance(dimension, bool) or dimension not in DIMENSIONS:
        raise malformed(
            f"#/singleEmbeddingParams/embeddingDimension: {dimension!r} is not a valid enum value"
        )
    given = [k for k in ("text", "image", "audio", "video") if k in params]
    if len(given) != 1:
        raise invalid("Exactly one of text, image, audio or video must be provided.")
    if given[0] in ("audio", "video"):
        raise invalid(f"this fake embeds text and images only, not {given[0]}")
    if given[0] == "text":
        text, tokens, truncated = _text(params["text"])
        return Request(
            (Item(text=text),),
            int(dimension),
            purpose,
            tokens=tokens,
            extra={"truncatedCharLength": truncated} if truncated is not None else {},
        )
    image, fmt, pixels = _image(params["image"])
    return Request((Item(image=image),), int(dimension), purpose, 0, (fmt,), pixels)


def _text(text: Any) -> tuple[str, int, int | None]:
    if not isinstance(text, dict):
        raise malformed("#/singleEmbeddingParams/text: expected type: JSONObject")
    mode = text.get("truncationMode")
    if mode not in ("START", "END", "NONE"):
        raise malformed("#/singleEmbeddingParams/text/truncationMode: required, START|END|NONE")
    if "source" in text:
        raise invalid("this fake has no S3: send text as value")
    value = text.get("value")
    if not isinstance(value, str) or not value.strip():
        raise malformed("#/singleEmbeddingParams/text/value: expected a non-empty String")
    tokens = token_count(value)
    if tokens <= MAX_TEXT_TOKENS:
        return value, tokens, None
    if mode == "NONE":
        raise invalid(
            f"Input text exceeds the maximum of {MAX_TEXT_TOKENS} tokens and truncationMode "
            "is NONE."
        )
    keep = MAX_TEXT_TOKENS * CHARS_PER_TOKEN
    cut = value[:keep] if mode == "END" else value[-keep:]
    return cut, MAX_TEXT_TOKENS, len(cut)


def _image(image: Any) -> tuple[bytes, str, int]:
    if not isinstance(image, dict):
        raise malformed("#/singleEmbeddingParams/image: expected type: JSONObject")
    fmt = image.get("format")
    if fmt not in FORMATS:
        raise malformed(f"#/singleEmbeddingParams/image/format: {fmt!r} is not a valid enum value")
    level = image.get("detailLevel", "STANDARD_IMAGE")
    if level not in ("STANDARD_IMAGE", "DOCUMENT_IMAGE"):
        raise malformed(f"#/singleEmbeddingParams/image/detailLevel: {level!r} is not valid")
    source = image.get("source")
    if not isinstance(source, dict) or len(source) != 1:
        raise malformed("#/singleEmbeddingParams/image/source: exactly one of bytes, s3Location")
    if "s3Location" in source:
        raise invalid("this fake has no S3: send the image as bytes")
    raw = source.get("bytes")
    if not isinstance(raw, str):
        raise malformed("#/singleEmbeddingParams/image/source/bytes: expected type: String")
    data = b64decode_strict(raw, "source.bytes")
    actual, pixels = decode_image(data, FORMATS, MAX_IMAGE_BYTES)
    if actual != fmt:
        raise invalid(f"The image is {actual}, but format says {fmt}.")
    return data, actual, pixels


def respond(request: Request) -> dict[str, Any]:
    item = request.items[0]
    embedding = fake_embedding(item.text, item.image, request.dimension, "nova")
    entry: dict[str, Any] = {
        "embeddingType": "TEXT" if item.text is not None else "IMAGE",
        "embedding": embedding,
    }
    entry.update(request.extra)
    return {"embeddings": [entry]}
