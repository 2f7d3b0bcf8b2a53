"""Local CLIP embedder (sentence-transformers): the optional ``--embedder clip`` of local mode.

Never deployed: torch and sentence-transformers are an optional extra
(``pip install -r requirements-clip.txt``), imported only when a ``ClipEmbedder`` is
built. Text and image share one space, like Titan Multimodal; text + image gives the
normalised average of the two unit vectors, as Titan's joint embedding does.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from imagesearch.embedders.base import TITAN_LIMITS, ModelLimits, Purpose, Vector, unit_vector
from imagesearch.errors import EmbedderConfigurationError, InvalidEmbeddingInput
from imagesearch.resources import CLIP_MODEL_ID

INSTALL_HINT = "pip install -r requirements-clip.txt"
# Text context of the OpenAI CLIP models, used when the model does not declare one.
CLIP_CONTEXT_LENGTH = 77


def _looks_like_path(name: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything else is meant as a directory.
    return (
        name.startswith(("/", ".", "~"))
        or "\\" in name
        or name.count("/") > 1
        or Path(name).expanduser().exists()
    )


def default_model_id(model_name_or_path: str) -> str:
    """Model id recorded with each vector: the last path component, so that a local copy
    of ``clip-ViT-B-32`` and the hub model (``[sentence-transformers/]clip-ViT-B-32``)
    share one id and their vectors stay comparable."""
    return Path(model_name_or_path.rstrip("/\\")).name or model_name_or_path


def load_sentence_transformer(model_name_or_path: str, *, device: str = "cpu") -> Any:
    """Load a sentence-transformers CLIP model from a local directory or the hub name."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise EmbedderConfigurationError(
            f"the clip embedder needs torch and sentence-transformers ({error.name} is"
            f" missing): {INSTALL_HINT}"
        ) from error
    if _looks_like_path(model_name_or_path):
        path = Path(model_name_or_path).expanduser()
        if not path.is_dir():
            raise EmbedderConfigurationError(f"CLIP model directory {path} does not exist")
        model_name_or_path = str(path)
    try:
        return SentenceTransformer(model_name_or_path, device=device)
    except Exception as error:
        # Hub and file errors vary across library versions (OSError, HTTP errors,
        # ValueError): they all mean the model cannot be loaded from here.
        detail = " ".join(str(error).split()).rstrip(".")  # one line
        raise EmbedderConfigurationError(
            f"could not load CLIP model {model_name_or_path!r}: {detail}. Without network"
            " access, point IMAGESEARCH_CLIP_MODEL at a local copy of the model directory"
        ) from error


class ClipEmbedder:
    """Embedder port over a sentence-transformers CLIP model (CPU by default)."""

    def __init__(
        self,
        model_name_or_path: str = CLIP_MODEL_ID,
        *,
        model: Any | None = None,
        device: str = "cpu",
        model_id: str | None = None,
    ) -> None:
        self._model = (
            model
            if model is not None
            else load_sentence_transformer(model_name_or_path, device=device)
        )
        self._model_id = model_id or default_model_id(model_name_or_path)
        _cap_text_length(self._model)
        self._dimension = self._read_dimension()

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def limits(self) -> ModelLimits:
        # CLIP sees 224 px: Titan's limits keep requests and memory small.
        return TITAN_LIMITS

    def embed(
        self,
        *,
        text: str | None = None,
        image: bytes | None = None,
        purpose: Purpose = "document",  # CLIP embeds documents and queries alike
    ) -> Vector:
        if text is None and image is None:
            raise ValueError("embed needs text, image or both")
        parts: list[Vector] = []
        if text is not None:
            parts.append(self._encode(text))
        if image is not None:
            parts.append(self._encode(_decode_image(image)))
        # Both: the average of the two unit vectors, renormalised (Titan's joint embedding).
        return parts[0] if len(parts) == 1 else unit_vector(parts[0] + parts[1])

    def _encode(self, item: Any) -> Vector:
        output = self._model.encode([item], convert_to_numpy=True, show_progress_bar=False)
        vector = np.asarray(output, dtype=np.float32).reshape(-1)
        try:
            return unit_vector(vector)
        except ValueError as error:
            raise InvalidEmbeddingInput(f"CLIP returned an unusable embedding: {error}") from error

    def _read_dimension(self) -> int:
        for name in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
            method = getattr(self._model, name, None)
            if callable(method):
                value = method()
                if value:
                    return int(value)
        # Some module stacks do not declare it: measure one embedding instead.
        return int(self._encode("dimension probe").shape[0])


def _cap_text_length(model: Any) -> None:
    """Make long text truncate instead of failing: a CLIP tokenizer saved without
    ``model_max_length`` leaves sentence-transformers with no limit, and CLIP then
    raises on anything past its position embeddings."""
    if not hasattr(model, "max_seq_length"):
        return  # not a sentence-transformers model (an injected fake)
    limit = CLIP_CONTEXT_LENGTH
    modules = getattr(model, "modules", None)
    for module in modules() if callable(modules) else ():
        text_config = getattr(getattr(module, "config", None), "text_config", None)
        if text_config is not None:
            limit = int(getattr(text_config, "max_position_embeddings", limit))
            break
    current = model.max_seq_length
    if current is None or current > limit:
        model.max_seq_length = limit


def _decode_image(data: bytes) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            return opened.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise InvalidEmbeddingInput(f"image could not be decoded: {error}") from error
