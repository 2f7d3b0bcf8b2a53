"""The fake Bedrock's Cohere Embed v4 protocol.

Validates like the "Cohere Embed v4" page of the Bedrock user guide: ``input_type``
(required: search_document, search_query, classification, clustering), exactly one of
``texts`` / ``images`` / ``inputs`` (each a non-empty list of at most 96),
``embedding_types`` (float, int8, uint8, binary, ubinary; default float; this fake
answers float only), ``output_dimension`` (256/512/1024/1536, default 1536),
``max_tokens``, ``truncate`` (NONE/LEFT/RIGHT). Images are ``data:image/png|jpeg;
base64,...`` URIs whose type matches the bytes, at most 5 MiB decoded; ``inputs``
items are ``{"content": [{"type": "text", "text"} | {"type": "image_url", "image_url"}]}``,
the ``image_url`` a data URI string (the English Bedrock page) or ``{"url": <data URI>}``
(other revisions, Cohere's own API): ``image_url_shapes`` says which this fake takes
(``FakeBedrock.cohere_image_url_shapes``; the string only by default), and the other is
refused as a schema violation.
Answer: ``{"id", "embeddings": {"float": [[...], ...]}, "response_type":
"embeddings_by_type", "texts": [...]}``, one embedding per input, in order; a fused
input embeds as the average of its text and image parts.
"""

from __future__ import annotations

import math
import re
import uuid
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

MODEL_ID = "cohere.embed-v4:0"
DIMENSIONS = (256, 512, 1024, 1536)
DEFAULT_DIMENSION = 1536
INPUT_TYPES = frozenset({"search_document", "search_query", "classification", "clustering"})
EMBEDDING_TYPES = frozenset({"float", "int8", "uint8", "binary", "ubinary"})
MAX_INPUTS = 96
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_TOKENS = 128_000
FORMATS = frozenset({"png", "jpeg"})
_KEYS = frozenset(
    {
        "input_type",
        "texts",
        "images",
        "inputs",
        "embedding_types",
        "output_dimension",
        "max_tokens",
        "truncate",
    }
)
IMAGE_URL_SHAPES = frozenset({"string", "object"})
_DATA_URI = re.compile(r"^data:image/(?P<type>[a-z]+);base64,(?P<data>.*)$", re.DOTALL)


def parse(document: Any, *, image_url_shapes: frozenset[str] = frozenset({"string"})) -> Request:
    if not isinstance(document, dict):
        raise malformed("#: expected type: JSONObject")
    extra = sorted(set(document) - _KEYS)
    if extra:
        raise malformed(f"#: extraneous key [{extra[0]}] is not permitted")
    input_type = document.get("input_type")
    if input_type is None:
        raise malformed("#: required key [input_type] not found")
    if input_type not in INPUT_TYPES:
        raise malformed(f"#/input_type: {input_type!r} is not a valid enum value")
    types = document.get("embedding_types", ["float"])
    if not isinstance(types, list) or not types or any(t not in EMBEDDING_TYPES for t in types):
        raise malformed(f"#/embedding_types: {types!r} is not valid")
    if types != ["float"]:
        raise invalid("this fake answers embedding_types ['float'] only")
    dimension = document.get("output_dimension", DEFAULT_DIMENSION)
    if isinstance(dimension, bool) or dimension not in DIMENSIONS:
        raise malformed(f"#/output_dimension: {dimension!r} is not a valid enum value")
    truncate = document.get("truncate", "NONE")
    if truncate not in ("NONE", "LEFT", "RIGHT"):
        raise malformed(f"#/truncate: {truncate!r} is not a valid enum value")
    given = [k for k in ("texts", "images", "inputs") if k in document]
    if len(given) != 1:
        raise invalid("Exactly one of texts, images or inputs must be provided.")
    values = document[given[0]]
    if not isinstance(values, list) or not values:
        raise malformed(f"#/{given[0]}: expected a non-empty array")
    if len(values) > MAX_INPUTS:
        raise invalid(f"{given[0]} has {len(values)} entries; the maximum is {MAX_INPUTS}.")
    items: list[Item] = []
    formats: list[str] = []
    pixels: list[int] = []
    for index, value in enumerate(values):
        where = f"#/{given[0]}/{index}"
        if given[0] == "texts":
            items.append(Item(text=_text(value, where)))
        elif given[0] == "images":
            image, fmt, count = _image(value, where)
            items.append(Item(image=image))
            formats.append(fmt)
            pixels.append(count)
        else:
            item, fmt_, count_ = _fused(value, where, image_url_shapes)
            items.append(item)
            if fmt_ is not None and count_ is not None:
                formats.append(fmt_)
                pixels.append(count_)
    tokens = sum(math.ceil(len(i.text) / 4) for i in items if i.text)
    limit = document.get("max_tokens", MAX_TOKENS)
    if tokens > MAX_TOKENS or (isinstance(limit, int) and tokens > limit and truncate == "NONE"):
        raise invalid(f"too many tokens: {tokens}")
    return Request(
        tuple(items),
        int(dimension),
        input_type,
        tokens,
        tuple(formats),
        max(pixels) if pixels else None,
    )


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise malformed(f"{where}: expected a non-empty String")
    return value


def _image(value: Any, where: str) -> tuple[bytes, str, int]:
    if not isinstance(value, str):
        raise malformed(f"{where}: expected type: String")
    match = _DATA_URI.match(value)
    if match is None:
        raise invalid(f"{where}: images must be data URIs (data:image/<type>;base64,...)")
    data = b64decode_strict(match.group("data"), where)
    fmt, pixels = decode_image(data, FORMATS, MAX_IMAGE_BYTES)
    if match.group("type") not in (fmt, "jpg" if fmt == "jpeg" else fmt):
        raise invalid(
            f"{where}: the data URI says image/{match.group('type')}, the bytes are {fmt}"
        )
    return data, fmt, pixels


def _fused(
    value: Any, where: str, image_url_shapes: frozenset[str]
) -> tuple[Item, str | None, int | None]:
    if not isinstance(value, dict) or set(value) != {"content"}:
        raise malformed(f"{where}: expected {{'content': [...]}}")
    parts = value["content"]
    if not isinstance(parts, list) or not parts:
        raise malformed(f"{where}/content: expected a non-empty array")
    texts: list[str] = []
    image: bytes | None = None
    fmt: str | None = None
    pixels: int | None = None
    for index, part in enumerate(parts):
        at = f"{where}/content/{index}"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and set(part) == {"type", "text"}:
            texts.append(_text(part["text"], at))
        elif kind == "image_url" and set(part) == {"type", "image_url"}:
            if image is not None:
                raise invalid(f"{at}: this fake embeds one image per input")
            image, fmt, pixels = _image(_image_url(part["image_url"], at, image_url_shapes), at)
        else:
            raise malformed(f"{at}: expected a text or image_url part")
    text = " ".join(texts) if texts else None
    return Item(text=text, image=image), fmt, pixels


def _image_url(value: Any, where: str, shapes: frozenset[str]) -> Any:
    """The data URI of an image_url part sent in a shape this fake takes."""
    if isinstance(value, dict) and "object" in shapes:
        if set(value) != {"url"}:
            raise malformed(f"{where}/image_url: expected {{'url': String}}")
        return value["url"]
    if isinstance(value, str) and "string" in shapes:
        return value
    wanted = "String" if "string" in shapes else "JSONObject"
    raise malformed(f"{where}/image_url: expected type: {wanted}")


def respond(request: Request) -> dict[str, Any]:
    vectors = [
        fake_embedding(item.text, item.image, request.dimension, "cohere") for item in request.items
    ]
    return {
        "id": str(uuid.uuid4()),
        "embeddings": {"float": vectors},
        "response_type": "embeddings_by_type",
        "texts": [item.text for item in request.items if item.text is not None],
    }
