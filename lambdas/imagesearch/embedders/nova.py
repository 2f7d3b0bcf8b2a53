"""Bedrock adapter of the Embedder port: Amazon Nova 2 Multimodal Embeddings.

Wire format (``SINGLE_EMBEDDING``, synchronous InvokeModel; see docs/models.md):
``{"schemaVersion": "nova-multimodal-embed-v1", "taskType": "SINGLE_EMBEDDING",
"singleEmbeddingParams": {"embeddingPurpose", "embeddingDimension", "text" | "image"}}``
-> ``{"embeddings": [{"embeddingType", "embedding": [...]}]}``.

Purposes: stored images are embedded with ``GENERIC_INDEX`` (the docs' value for
indexing, whatever the modality). The docs choose a query's purpose by what the
repository holds, not by the query's modality: ``IMAGE_RETRIEVAL`` for a repository of
``STANDARD_IMAGE`` image embeddings only (captionMode none, the default), and
``GENERIC_RETRIEVAL`` for one that mixes modalities, which is what joint captions make
(text + image vectors next to image-only ones): ``query_purpose``, chosen by
``mixed_query_purpose``. Which retrieves better with joint captions has not been
measured (no Bedrock account here): docs/models.md gives the bench to run.

One modality per request: text + image (a joint caption, or a text + image query)
is two calls, run side by side, combined as the average of the two unit vectors,
renormalised (what Titan does inside its one call).
"""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from imagesearch.embedders.base import ModelLimits, Purpose, Vector, sniff_image_format, unit_vector
from imagesearch.embedders.bedrock import BedrockEmbedder
from imagesearch.errors import InvalidEmbeddingInput
from imagesearch.resources import NOVA_MODEL_ID

SCHEMA_VERSION = "nova-multimodal-embed-v1"
PURPOSE_VALUES: dict[Purpose, str] = {"document": "GENERIC_INDEX", "query": "IMAGE_RETRIEVAL"}
QUERY_PURPOSES = ("IMAGE_RETRIEVAL", "GENERIC_RETRIEVAL")


def mixed_query_purpose(joint_captions: bool) -> str:
    """The query purpose for an index of image embeddings only (False) or of images
    embedded with their captions too (True)."""
    return "GENERIC_RETRIEVAL" if joint_captions else "IMAGE_RETRIEVAL"


# The formats of the schema's image.format enum, passed through untouched. Side and
# byte bounds are ours: the docs give no pixel limit for embeddings and the model
# rescales internally, so more pixels only make the request slower (the InvokeModel
# body cap of 25,000,000 bytes would allow ~18 MB of image after base64).
NOVA_LIMITS = ModelLimits(
    native_formats=frozenset({"jpeg", "png", "gif", "webp"}),
    max_side=4096,
    max_bytes=10_000_000,
    max_text_chars=20_000,  # 8K tokens of context; longer text is truncated (END)
)


class NovaMultimodalEmbedder(BedrockEmbedder):
    """``Embedder`` for Nova 2 Multimodal Embeddings (256, 384, 1024 or 3072 dimensions)."""

    kind = "nova"

    def __init__(
        self,
        model_id: str = NOVA_MODEL_ID,
        dimension: int = 1024,
        *,
        query_purpose: str = "IMAGE_RETRIEVAL",
        **kwargs: Any,
    ):
        super().__init__(model_id, dimension, **kwargs)
        if query_purpose not in QUERY_PURPOSES:
            raise ValueError(f"query_purpose must be one of {list(QUERY_PURPOSES)}")
        self._purposes: dict[Purpose, str] = {"document": "GENERIC_INDEX", "query": query_purpose}

    @property
    def query_purpose(self) -> str:
        return self._purposes["query"]

    @property
    def limits(self) -> ModelLimits:
        return NOVA_LIMITS

    def request_body(
        self, *, text: str | None = None, image: bytes | None = None, purpose: Purpose = "document"
    ) -> bytes:
        """The body for exactly one of ``text`` / ``image``."""
        if (text is None) == (image is None):
            raise ValueError("a Nova request embeds exactly one of text or image")
        params: dict[str, Any] = {
            "embeddingPurpose": self._purposes[purpose],
            "embeddingDimension": self._dimension,
        }
        if text is not None:
            if not isinstance(text, str):
                raise TypeError("text must be a str")
            if not text.strip():
                raise InvalidEmbeddingInput("text to embed is empty")
            params["text"] = {"truncationMode": "END", "value": text}
        else:
            data = _image_bytes(image)
            fmt = sniff_image_format(data)
            if fmt not in NOVA_LIMITS.native_formats:
                raise InvalidEmbeddingInput(
                    f"{self._model_id} takes PNG, JPEG, GIF or WebP images, not {fmt or 'this'}"
                )
            params["image"] = {
                "detailLevel": "STANDARD_IMAGE",
                "format": fmt,
                "source": {"bytes": base64.b64encode(data).decode("ascii")},
            }
        body = {
            "schemaVersion": SCHEMA_VERSION,
            "taskType": "SINGLE_EMBEDDING",
            "singleEmbeddingParams": params,
        }
        return json.dumps(body, separators=(",", ":")).encode("utf-8")

    def embed(
        self,
        *,
        text: str | None = None,
        image: bytes | None = None,
        purpose: Purpose = "document",
    ) -> Vector:
        if purpose not in PURPOSE_VALUES:
            raise ValueError(f"purpose must be one of {list(PURPOSE_VALUES)}")
        if text is None and image is None:
            raise ValueError("embed needs text, image bytes, or both")
        if text is None or image is None:
            return self._one(text=text, image=image, purpose=purpose)
        # Validate both before spending a call on either.
        bodies = [
            self.request_body(text=text, purpose=purpose),
            self.request_body(image=image, purpose=purpose),
        ]
        with ThreadPoolExecutor(max_workers=2) as pool:
            payloads = list(pool.map(self.invoke, bodies))
        text_vector, image_vector = (self.parse(p) for p in payloads)
        return unit_vector(text_vector + image_vector)

    def _one(self, *, text: str | None, image: bytes | None, purpose: Purpose) -> Vector:
        return self.parse(self.invoke(self.request_body(text=text, image=image, purpose=purpose)))

    def parse(self, payload: bytes) -> Vector:
        """The unit vector of a Nova SINGLE_EMBEDDING response body."""
        document = self._document(payload)
        embeddings = document.get("embeddings") if isinstance(document, dict) else None
        first = embeddings[0] if isinstance(embeddings, list) and embeddings else None
        return self._unit(first.get("embedding") if isinstance(first, dict) else None)


def _image_bytes(image: Any) -> bytes:
    if not isinstance(image, bytes | bytearray | memoryview):
        raise TypeError("image must be bytes")
    if len(image) == 0:
        raise InvalidEmbeddingInput("image to embed is empty")
    return bytes(image)
