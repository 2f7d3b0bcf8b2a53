"""Catalog records: identity, vector encoding and ordering tokens."""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from imagesearch.embedders.base import Vector
from imagesearch.resources import RECORD_FIELDS

IMAGE_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")

# Vectors are stored as raw little-endian float32 bytes in a DynamoDB Binary
# attribute: 4 KB for 1024 dimensions, decoded with one np.frombuffer call.
VECTOR_DTYPE = np.dtype("<f4")


def image_id_for_key(key: str) -> str:
    """Stable id of the object ``key``: the same key always maps to the same id,
    so overwrites update one record. Hex only, so ids are safe in paths and URLs."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def is_valid_image_id(value: str) -> bool:
    return bool(IMAGE_ID_PATTERN.fullmatch(value))


def encode_vector(vector: Vector) -> bytes:
    return np.asarray(vector, dtype=VECTOR_DTYPE).tobytes()


def decode_vector(data: bytes) -> Vector:
    return np.frombuffer(data, dtype=VECTOR_DTYPE).astype(np.float32, copy=False)


def decode_vectors(blobs: list[bytes], dimension: int) -> Vector:
    """Decode many stored vectors into one (n, dimension) matrix without per-float Python."""
    if not blobs:
        return np.empty((0, dimension), dtype=np.float32)
    matrix = np.frombuffer(b"".join(blobs), dtype=VECTOR_DTYPE)
    return matrix.reshape(len(blobs), dimension).astype(np.float32, copy=False)


# S3 sequencers are hex strings of varying length: left-pad to a fixed width so
# that a plain string comparison (also inside a DynamoDB condition) orders them.
_SEQUENCER_WIDTH = 32


def ordering_token(sequencer: str | None, event_time: str | None) -> str:
    """Token that orders events for one key: greater means newer.

    Real S3 sends a ``sequencer``; moto and some replays do not, so the event time
    (millisecond precision) is the fallback. One deployment only ever sees one
    kind, so the two are never compared with each other.
    """
    if sequencer:
        cleaned = sequencer.strip().upper()
        if not re.fullmatch(r"[0-9A-F]{1,64}", cleaned):
            raise ValueError(f"malformed sequencer {sequencer!r}")
        return "S" + cleaned.rjust(_SEQUENCER_WIDTH, "0")
    if event_time:
        parsed = datetime.fromisoformat(event_time.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        micros = int(parsed.timestamp() * 1_000_000)
        return "T" + str(micros).rjust(20, "0")
    return "T" + "0" * 20


# Sorts below every hex digit and decimal digit: ``token + API_DELETE_SUFFIX`` is newer
# than ``token`` and older than any later event's token (padded to the same width, a
# later token differs within it; a longer one continues with a digit).
API_DELETE_SUFFIX = "."


def api_delete_token(token: str | None) -> str:
    """The ordering token of a delete made through the API on a record stored under
    ``token``: newer than the record (a retried event of the deleted version cannot
    bring it back), older than the S3 events that follow (a re-upload wins)."""
    return (token or "") + API_DELETE_SUFFIX


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_from_ms(epoch_ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC, like ``utc_now_iso``."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class ImageRecord:
    """One object under the upload prefix and its indexing outcome."""

    image_id: str
    key: str
    status: str
    etag: str | None = None
    size: int | None = None
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    uploaded_at: str | None = None
    indexed_at: str | None = None
    model_id: str | None = None
    dimension: int | None = None
    reason: str | None = None
    caption: str | None = None
    sequencer: str | None = None
    revision: str | None = None  # changes with every catalog write
    vector: Vector | None = field(default=None, repr=False)
    # During a model switch: the vector of the model being replaced (docs/decisions.md 22).
    alt_model_id: str | None = None
    alt_dimension: int | None = None
    alt_vector: Vector | None = field(default=None, repr=False)
    # During a model switch: failed re-embeds by the new model (its space: the reason's).
    reembed_failures: int | None = None

    def vector_for(self, model_id: str, dimension: int) -> Vector | None:
        """The record's vector of this model and dimension (either slot), or None."""
        if (self.model_id, self.dimension) == (model_id, dimension) and self.vector is not None:
            return self.vector
        if (self.alt_model_id, self.alt_dimension) == (model_id, dimension):
            return self.alt_vector
        return None

    def public_fields(self) -> dict[str, Any]:
        """The record as the API shows it: no vector, no bookkeeping."""
        data = asdict(self)
        return {name: data[name] for name in RECORD_FIELDS}
