"""Bedrock adapter of the Embedder port: Cohere Embed v4.

Wire format (InvokeModel; see docs/models.md): ``{"input_type", "embedding_types":
["float"], "output_dimension", "texts" | "images" | "inputs"}`` ->
``{"embeddings": {"float": [[...], ...]}, ...}``, one embedding per input, in order.

Stored images use ``search_document``, searches ``search_query``. Images travel as
``data:<mime>;base64,...`` URIs; text + image is one fused input through ``inputs``
(``content`` with a text part and an image part). ``embed_images`` sends up to 96
stored images per call (and at most ``BATCH_BODY_BYTES`` of request), grouped the way
single calls would send them, so a batch gives the same vectors in fewer calls.

The image part of a fused input: the English Bedrock page shows ``"image_url": "data:..."``
(a string), some revisions and Cohere's own API ``"image_url": {"url": "data:..."}``, and
nobody here can try the real model. So that doubt can never reject captioned images: until
a fused call has succeeded, a ValidationException on one shape is tried once in the other,
and the shape that works is kept for the life of the adapter (one per process). If both
are refused, it is a refusal of the input only when both messages say so (a batch of
several is then retried one input per call by ingest); otherwise a configuration error
(``failed``, retried, DLQ + alarm), never ``rejected``.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Sequence
from typing import Any, Literal

from imagesearch.embedders.base import (
    EmbedInput,
    ModelLimits,
    Purpose,
    Vector,
    sniff_image_format,
)
from imagesearch.embedders.bedrock import BedrockEmbedder
from imagesearch.errors import EmbedderConfigurationError, EmbeddingError, InvalidEmbeddingInput
from imagesearch.resources import COHERE_MODEL_ID

logger = logging.getLogger(__name__)

# How a fused input's image part carries its data URI: "string" ("image_url": "data:...",
# the English Bedrock page) or "object" ("image_url": {"url": "data:..."}).
ImageUrlShape = Literal["string", "object"]
IMAGE_URL_SHAPES: tuple[ImageUrlShape, ...] = ("string", "object")

INPUT_TYPES: dict[Purpose, str] = {"document": "search_document", "query": "search_query"}
MAX_INPUTS_PER_CALL = 96
# Under the InvokeModel body cap of 25,000,000 bytes, with room for the JSON around.
BATCH_BODY_BYTES = 20_000_000
# 5 MiB per image (docs); the model downsamples anything over 2,458,624 pixels, so we
# do it first (same input to the model, a smaller request).
COHERE_LIMITS = ModelLimits(
    native_formats=frozenset({"jpeg", "png"}),
    max_side=4096,
    max_bytes=5 * 1024 * 1024,
    max_area=2_458_624,
    max_text_chars=20_000,
    max_batch=MAX_INPUTS_PER_CALL,
)
_MIME = {"jpeg": "image/jpeg", "png": "image/png"}


class CohereEmbedV4Embedder(BedrockEmbedder):
    """``Embedder`` (and batch embedder) for Cohere Embed v4 (256, 512, 1024, 1536)."""

    kind = "cohere"

    def __init__(
        self,
        model_id: str = COHERE_MODEL_ID,
        dimension: int = 1024,
        *,
        image_url_shape: ImageUrlShape = "string",
        **kwargs: Any,
    ):
        super().__init__(model_id, dimension, **kwargs)
        if image_url_shape not in IMAGE_URL_SHAPES:
            raise ValueError(f"image_url_shape must be one of {list(IMAGE_URL_SHAPES)}")
        self._shape: ImageUrlShape = image_url_shape
        self._shape_confirmed = False  # a fused call with this shape has succeeded
        self._shape_lock = threading.Lock()

    @property
    def image_url_shape(self) -> tuple[ImageUrlShape, bool]:
        """The shape fused inputs are sent in, and whether Bedrock has taken it."""
        with self._shape_lock:
            return self._shape, self._shape_confirmed

    @property
    def limits(self) -> ModelLimits:
        return COHERE_LIMITS

    # --- request building ----------------------------------------------------------

    def data_uri(self, image: Any) -> str:
        if not isinstance(image, bytes | bytearray | memoryview):
            raise TypeError("image must be bytes")
        data = bytes(image)
        if not data:
            raise InvalidEmbeddingInput("image to embed is empty")
        fmt = sniff_image_format(data)
        mime = _MIME.get(fmt or "")
        if mime is None:
            raise InvalidEmbeddingInput(
                f"{self._model_id} takes PNG or JPEG images, not {fmt or 'this'}"
            )
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"

    def request_body(
        self,
        *,
        texts: Sequence[str] = (),
        images: Sequence[bytes] = (),
        fused: Sequence[tuple[str, bytes]] = (),
        purpose: Purpose = "document",
        image_url_shape: ImageUrlShape | None = None,
    ) -> bytes:
        """A body with exactly one of ``texts``, ``images`` (URIs built here) or
        ``fused`` (text + image pairs, sent as ``inputs``, their image part in
        ``image_url_shape``, by default the one in use)."""
        if sum(1 for group in (texts, images, fused) if group) != 1:
            raise ValueError("a Cohere request carries exactly one of texts, images or inputs")
        if purpose not in INPUT_TYPES:
            raise ValueError(f"purpose must be one of {list(INPUT_TYPES)}")
        body: dict[str, Any] = {
            "input_type": INPUT_TYPES[purpose],
            "embedding_types": ["float"],
            "output_dimension": self._dimension,
        }
        if texts:
            body["texts"] = [_text(t) for t in texts]
        elif images:
            body["images"] = [self.data_uri(i) for i in images]
        else:
            shape = image_url_shape or self.image_url_shape[0]
            body["inputs"] = [
                {
                    "content": [
                        {"type": "text", "text": _text(text)},
                        {"type": "image_url", "image_url": _image_url(self.data_uri(image), shape)},
                    ]
                }
                for text, image in fused
            ]
        return json.dumps(body, separators=(",", ":")).encode("utf-8")

    # --- the port ----------------------------------------------------------------------

    def embed(
        self,
        *,
        text: str | None = None,
        image: bytes | None = None,
        purpose: Purpose = "document",
    ) -> Vector:
        if text is None and image is None:
            raise ValueError("embed needs text, image bytes, or both")
        if image is None:
            body = self.request_body(texts=[text or ""], purpose=purpose)
        elif text is None:
            body = self.request_body(images=[image], purpose=purpose)
        else:
            return self.parse(self._invoke_fused([(text, image)], purpose), expected=1)[0]
        return self.parse(self.invoke(body), expected=1)[0]

    def embed_images(self, items: Sequence[EmbedInput]) -> list[Vector]:
        """Document embeddings of ``items`` in order, in as few calls as the limits allow."""
        results: list[Vector | None] = [None] * len(items)
        plain = [i for i, item in enumerate(items) if item.text is None]
        fused = [i for i, item in enumerate(items) if item.text is not None]
        for group in (plain, fused):
            for chunk in _chunks(group, items):
                if group is plain:
                    payload = self.invoke(self.request_body(images=[items[i].image for i in chunk]))
                else:
                    pairs = [(items[i].text or "", items[i].image) for i in chunk]
                    payload = self._invoke_fused(pairs, "document")
                for index, vector in zip(
                    chunk, self.parse(payload, expected=len(chunk)), strict=True
                ):
                    results[index] = vector
        return [v for v in results if v is not None]

    def _invoke_fused(self, pairs: list[tuple[str, bytes]], purpose: Purpose) -> bytes:
        """One call with fused inputs, in the other image_url shape too while the shape
        in use has not been seen to work (see the module docstring)."""
        shape, confirmed = self.image_url_shape
        try:
            payload = self.invoke(
                self.request_body(fused=pairs, purpose=purpose, image_url_shape=shape)
            )
        except EmbeddingError as first:
            if confirmed or first.code != "ValidationException":
                raise
            other: ImageUrlShape = "object" if shape == "string" else "string"
            try:
                payload = self.invoke(
                    self.request_body(fused=pairs, purpose=purpose, image_url_shape=other)
                )
            except EmbeddingError as second:
                if second.code != "ValidationException":
                    raise
                raise self._refused_in_both_shapes(first, second, len(pairs)) from second
            logger.warning(
                "%s took a fused input's image_url as %s, not %s: sent that way from now on",
                self._model_id,
                other,
                shape,
            )
            shape = other
        with self._shape_lock:
            self._shape, self._shape_confirmed = shape, True
        return payload

    def _refused_in_both_shapes(
        self, first: EmbeddingError, second: EmbeddingError, count: int
    ) -> EmbeddingError:
        if isinstance(first, InvalidEmbeddingInput) and isinstance(second, InvalidEmbeddingInput):
            return first  # both messages say the input is at fault
        if count > 1 and InvalidEmbeddingInput in (type(first), type(second)):
            # Maybe one input of the batch: ingest asks again one input per call, where
            # only a refusal in both shapes rejects an image.
            return InvalidEmbeddingInput(
                f"a batch of {count} text + image inputs was refused: {first.reason} / "
                f"{second.reason}",
                code="ValidationException",
            )
        return EmbedderConfigurationError(
            f"{self._model_id} refused a text + image input in both documented shapes of "
            f'image_url (a data URI string, and {{"url": data URI}}): {first} / {second} '
            "Not taken as a refusal of the image: check the Cohere Embed v4 request format "
            "on the Bedrock page and report it.",
            code="ValidationException",
        )

    def parse(self, payload: bytes, *, expected: int) -> list[Vector]:
        """The unit vectors of a Cohere v4 response body (``embedding_types`` float)."""
        document = self._document(payload)
        embeddings = document.get("embeddings") if isinstance(document, dict) else None
        floats = embeddings.get("float") if isinstance(embeddings, dict) else None
        if not isinstance(floats, list) or len(floats) != expected:
            got = len(floats) if isinstance(floats, list) else "no"
            raise EmbedderConfigurationError(
                f"{self._model_id} returned {got} float embeddings; expected {expected}"
            )
        return [self._unit(values) for values in floats]


def _image_url(uri: str, shape: ImageUrlShape) -> str | dict[str, str]:
    return uri if shape == "string" else {"url": uri}


def _text(text: Any) -> str:
    if not isinstance(text, str):
        raise TypeError("text must be a str")
    if not text.strip():
        raise InvalidEmbeddingInput("text to embed is empty")
    return text


def _chunks(indices: list[int], items: Sequence[EmbedInput]) -> list[list[int]]:
    """Consecutive runs of at most 96 inputs and ~BATCH_BODY_BYTES of base64 each."""
    chunks: list[list[int]] = []
    current: list[int] = []
    size = 0
    for index in indices:
        item = items[index]
        cost = (len(item.image) + 2) // 3 * 4 + len((item.text or "").encode()) + 64
        if current and (len(current) == MAX_INPUTS_PER_CALL or size + cost > BATCH_BODY_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append(index)
        size += cost
    if current:
        chunks.append(current)
    return chunks
