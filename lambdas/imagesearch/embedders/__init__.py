"""Embedders: the ``Embedder`` port and a factory choosing the adapter for a model id."""

from __future__ import annotations

from typing import Any

from imagesearch.embedders.base import (
    BatchEmbedder,
    Embedder,
    EmbedInput,
    ModelLimits,
    Purpose,
    Vector,
    embed_images,
    limits_of,
    unit_vector,
)
from imagesearch.embedders.bedrock import BedrockEmbedder
from imagesearch.embedders.cohere import CohereEmbedV4Embedder
from imagesearch.embedders.nova import NovaMultimodalEmbedder, mixed_query_purpose
from imagesearch.embedders.titan import TitanMultimodalEmbedder
from imagesearch.resources import CLIP_MODEL_ID, SUPPORTED_MODELS, model_kind
from imagesearch.settings import CommonSettings

__all__ = [
    "BatchEmbedder",
    "CohereEmbedV4Embedder",
    "EmbedInput",
    "Embedder",
    "ModelLimits",
    "NovaMultimodalEmbedder",
    "Purpose",
    "TitanMultimodalEmbedder",
    "Vector",
    "build_embedder",
    "build_embedder_for",
    "embed_images",
    "limits_of",
    "unit_vector",
]

# resources.MODELS kind -> the adapter speaking that model's wire format.
ADAPTERS: dict[str, type[BedrockEmbedder]] = {
    "titan": TitanMultimodalEmbedder,
    "nova": NovaMultimodalEmbedder,
    "cohere": CohereEmbedV4Embedder,
}


def build_embedder(
    model_id: str,
    dimension: int,
    *,
    client: Any | None = None,
    connect_timeout: float = 3.0,
    read_timeout: float = 30.0,
    max_attempts: int = 4,
    retry_mode: str = "adaptive",
    clip_model: str | None = None,
    joint_captions: bool = False,
) -> Embedder:
    """The embedder for ``model_id`` producing ``dimension``-long vectors.

    Bedrock model ids and their inference profile ids get the adapter of their kind
    (Titan, Nova 2, Cohere v4; ``client``, timeouts and attempts apply to it);
    ``resources.CLIP_MODEL_ID`` gets the local CLIP embedder (an optional extra,
    imported only when asked for). ``joint_captions``: stored images were embedded with
    their captions (Nova 2 then queries with ``GENERIC_RETRIEVAL``). Raises ValueError
    for unknown ids and unsupported dimensions.
    """
    if model_id == CLIP_MODEL_ID:
        # Imported lazily: CLIP pulls in torch, which the Lambda asset never ships.
        from imagesearch.embedders.clip import ClipEmbedder

        # clip_model: a local copy of the weights (offline machines, tests).
        embedder: Embedder = ClipEmbedder(clip_model or model_id, model_id=model_id)
        if embedder.dimension != dimension:
            raise ValueError(
                f"{model_id} produces {embedder.dimension}-dimensional vectors, not {dimension}"
            )
        return embedder

    kind = model_kind(model_id) or ""
    adapter = ADAPTERS.get(kind)
    if adapter is not None:
        options: dict[str, Any] = {}
        if kind == "nova":
            options["query_purpose"] = mixed_query_purpose(joint_captions)
        return adapter(
            model_id,
            dimension,
            client=client,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
            retry_mode=retry_mode,
            **options,
        )
    known = sorted([*SUPPORTED_MODELS, CLIP_MODEL_ID])
    raise ValueError(f"unknown embedding model {model_id!r}; known models: {known}")


def build_embedder_for(settings: CommonSettings, *, client: Any | None = None) -> Embedder:
    """The embedder a handler's settings describe (model, dimension, timeouts, retries)."""
    return build_embedder(
        settings.model_id,
        settings.dimension,
        client=client,
        connect_timeout=settings.bedrock_connect_timeout,
        read_timeout=settings.bedrock_read_timeout,
        max_attempts=settings.bedrock_max_attempts,
        retry_mode=settings.bedrock_retry_mode,
        clip_model=settings.clip_model,
        joint_captions=settings.caption_mode == "joint",
    )
