"""Handler settings: validated from the environment once per cold start.

Env var names come from ``imagesearch.resources`` (shared with the CDK stack and
local mode). Domain code receives plain values from these models and never reads
``os.environ`` itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from imagesearch import resources as r
from imagesearch.switch import Space


class SettingsError(RuntimeError):
    """The function's environment is misconfigured (a deployment bug)."""


class CommonSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    bucket: str = Field(min_length=3)
    table: str = Field(min_length=3)
    upload_prefix: str = r.CONTEXT_DEFAULTS["uploadPrefix"]
    model_id: str = r.CONTEXT_DEFAULTS["modelId"]
    dimension: int = r.CONTEXT_DEFAULTS["embeddingDimension"]
    vector_store: Literal["dynamodb", "s3vectors"] = r.CONTEXT_DEFAULTS["vectorStore"]
    bedrock_connect_timeout: float = Field(default=3.0, gt=0)
    bedrock_read_timeout: float = Field(default=30.0, gt=0)
    bedrock_max_attempts: int = Field(default=4, ge=1, le=10)
    # adaptive: the SDK also slows its own call rate after throttling (Bedrock quotas).
    bedrock_retry_mode: Literal["adaptive", "standard"] = "adaptive"
    # Size cap on uploads: presigned PUTs sign it, ingest rejects larger objects unread.
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    clip_model: str | None = None
    # joint: captions are embedded with their images (ingest), so the index holds text as
    # well as image embeddings (search: Nova 2's query purpose follows, decision 33).
    caption_mode: Literal["none", "joint"] = "none"
    # s3vectors only; the index defaults to the one named after model and dimension.
    vector_bucket: str | None = None
    vector_index: str | None = None
    # During a model switch: the model being replaced (docs/decisions.md entry 22).
    previous_model_id: str | None = None
    previous_dimension: int | None = None

    @property
    def deployed_space(self) -> Space:
        return Space(self.model_id, self.dimension)

    @property
    def previous_space(self) -> Space | None:
        if not self.previous_model_id:
            return None
        return Space(self.previous_model_id, self.previous_dimension or self.dimension)

    def for_space(self, space: Space) -> Self:
        """These settings with another model and dimension (the other side of a switch)."""
        return self.model_copy(update={"model_id": space.model_id, "dimension": space.dimension})

    @field_validator("upload_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value.endswith("/") or value.startswith("/"):
            raise ValueError("upload prefix must end with '/' and not start with '/'")
        return value


class IngestSettings(CommonSettings):
    # Where unstarted messages are re-sent, and where a message that failed a receive is
    # retried alone (decision 43). Unset (older local states): failures retry in batches.
    ingest_queue_url: str | None = None
    ingest_retry_queue_url: str | None = None


class SearchSettings(CommonSettings):
    index_refresh_seconds: float = Field(default=1.0, ge=0)
    index_refresh_overlap_seconds: float = Field(default=r.INDEX_REFRESH_OVERLAP_SECONDS, ge=0)
    # Local mode: a thread refreshes every index_refresh_seconds; requests never wait.
    index_refresh_background: bool = False
    # Embedded tier: where its snapshots live in the images bucket (None: no snapshots,
    # cold starts Scan: local mode), and its capacity (/health warns at 80 %).
    snapshot_prefix: str | None = None
    embedded_max_images: int = Field(default=r.CONTEXT_DEFAULTS["embeddedMaxImages"], ge=1)
    # The maintenance function, during a model switch: where re-embed messages go.
    ingest_queue_url: str | None = None


SettingsT = TypeVar("SettingsT", bound="CommonSettings")

_ENV_FIELDS = {
    "bucket": r.ENV_BUCKET,
    "table": r.ENV_TABLE,
    "upload_prefix": r.ENV_UPLOAD_PREFIX,
    "model_id": r.ENV_MODEL_ID,
    "dimension": r.ENV_EMBEDDING_DIMENSION,
    "vector_store": r.ENV_VECTOR_STORE,
    "bedrock_connect_timeout": r.ENV_BEDROCK_CONNECT_TIMEOUT,
    "bedrock_read_timeout": r.ENV_BEDROCK_READ_TIMEOUT,
    "bedrock_max_attempts": r.ENV_BEDROCK_MAX_ATTEMPTS,
    "bedrock_retry_mode": r.ENV_BEDROCK_RETRY_MODE,
    "caption_mode": r.ENV_CAPTION_MODE,
    "index_refresh_seconds": r.ENV_INDEX_REFRESH_SECONDS,
    "index_refresh_overlap_seconds": r.ENV_INDEX_REFRESH_OVERLAP,
    "index_refresh_background": r.ENV_INDEX_REFRESH_BACKGROUND,
    "max_upload_bytes": r.ENV_MAX_UPLOAD_BYTES,
    "clip_model": r.ENV_CLIP_MODEL,
    "vector_bucket": r.ENV_VECTOR_BUCKET,
    "vector_index": r.ENV_VECTOR_INDEX,
    "snapshot_prefix": r.ENV_SNAPSHOT_PREFIX,
    "embedded_max_images": r.ENV_EMBEDDED_MAX_IMAGES,
    "previous_model_id": r.ENV_PREVIOUS_MODEL_ID,
    "previous_dimension": r.ENV_PREVIOUS_EMBEDDING_DIMENSION,
    "ingest_queue_url": r.ENV_INGEST_QUEUE_URL,
    "ingest_retry_queue_url": r.ENV_INGEST_RETRY_QUEUE_URL,
}


def load_settings(model: type[SettingsT], environ: Mapping[str, str] | None = None) -> SettingsT:
    env = os.environ if environ is None else environ
    values = {field: env[name] for field, name in _ENV_FIELDS.items() if name in env}
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise SettingsError(f"invalid function configuration: {error}") from error
