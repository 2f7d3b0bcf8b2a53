"""Bedrock adapter of the Embedder port: Amazon Titan Multimodal Embeddings G1.

One ``InvokeModel`` call per embedding; text + image is one joint call (Titan
averages the two). ``purpose`` is ignored: Titan embeds documents and queries alike.
Client, retries and error translation: ``imagesearch.embedders.bedrock``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from imagesearch.embedders.base import TITAN_LIMITS, ModelLimits, Purpose, Vector
from imagesearch.embedders.bedrock import BedrockEmbedder
from imagesearch.errors import InvalidEmbeddingInput
from imagesearch.resources import TITAN_MODEL_ID, model_kind

TITAN_MULTIMODAL_MODEL_ID = TITAN_MODEL_ID
TITAN_MODEL_PREFIX = "amazon.titan-embed-image"


def is_titan_model(model_id: str) -> bool:
    return model_kind(model_id) == "titan"


class TitanMultimodalEmbedder(BedrockEmbedder):
    """``Embedder`` for ``amazon.titan-embed-image-v1`` (256, 384 or 1024 dimensions)."""

    kind = "titan"

    def __init__(
        self, model_id: str = TITAN_MULTIMODAL_MODEL_ID, dimension: int = 1024, **kwargs: Any
    ) -> None:
        if not is_titan_model(model_id):
            raise ValueError(f"unsupported Titan model {model_id!r}; supported: {[TITAN_MODEL_ID]}")
        super().__init__(model_id, dimension, **kwargs)

    @property
    def limits(self) -> ModelLimits:
        return TITAN_LIMITS

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

    def embed(
        self,
        *,
        text: str | None = None,
        image: bytes | None = None,
        purpose: Purpose = "document",
    ) -> Vector:
        return self.parse(self.invoke(self.request_body(text=text, image=image)))

    def parse(self, payload: bytes) -> Vector:
        """The unit vector of a Titan response body."""
        document = self._document(payload)
        return self._unit(document.get("embedding") if isinstance(document, dict) else None)

    _parse = parse
