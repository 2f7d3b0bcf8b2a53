"""Ingest: one S3 object event in, exactly one visible state out.

Every object under the upload prefix ends ``indexed`` or ``rejected`` (with a
reason) in the catalog; transient and configuration failures raise so the queue
retries the message and, after five receives, parks it in the DLQ (alarmed).

Events are hints, S3 is the truth: a "created" event reads the object as it is
now (gone -> treated as a delete), a "removed" event checks that the key is really
gone. Ordering tokens (S3 ``sequencer``) guard every catalog write, so an older
event can never overwrite a newer state, whatever order the queue delivers in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Literal

from imagesearch.embedders.base import Embedder, limits_of
from imagesearch.errors import (
    EmbedderConfigurationError,
    ImageRejected,
    InvalidEmbeddingInput,
    TransientEmbeddingError,
)
from imagesearch.events import ObjectEvent
from imagesearch.images import make_thumbnail, prepare_with_thumbnail
from imagesearch.ports import Catalog, ObjectStore, ObjectTooLarge, StoredObject, VectorSync
from imagesearch.records import ImageRecord, image_id_for_key, ordering_token, utc_now_iso
from imagesearch.resources import (
    STATUS_DELETED,
    STATUS_FAILED,
    STATUS_INDEXED,
    STATUS_REJECTED,
    THUMBNAIL_PREFIX,
    thumbnail_key,
)

logger = logging.getLogger(__name__)

Action = Literal["indexed", "rejected", "deleted", "stale", "unchanged", "ignored", "other_model"]

# Titan reads at most 128 tokens (older docs; ~4.7 characters each). A caption is
# cut at a word boundary below that rather than failing the whole image.
MAX_CAPTION_EMBED_CHARS = 500
# Below any real sequencer or event-time token: a backfill of a key with no record
# loses against any real event that lands meanwhile.
_BACKFILL_FLOOR_TOKEN = "0"


@dataclass(frozen=True)
class IngestOutcome:
    action: Action
    key: str
    image_id: str
    reason: str | None = None


def caption_for_embedding(caption: str, max_chars: int = MAX_CAPTION_EMBED_CHARS) -> str:
    caption = " ".join(caption.split())
    if len(caption) <= max_chars:
        return caption
    cut = caption[:max_chars]
    return cut.rsplit(" ", 1)[0] if " " in cut else cut


class IngestService:
    def __init__(
        self,
        *,
        store: ObjectStore,
        catalog: Catalog,
        vectors: VectorSync,
        embedder: Embedder,
        upload_prefix: str,
        caption_mode: str = "none",
        max_object_bytes: int = 50 * 1024 * 1024,
    ) -> None:
        self._store = store
        self._catalog = catalog
        # The vector index follows each catalog write through this (ports.VectorSync).
        self._vectors = vectors
        self._embedder = embedder
        self._upload_prefix = upload_prefix
        self._joint_caption = caption_mode == "joint"
        self._max_object_bytes = max_object_bytes

    def handle(self, event: ObjectEvent) -> IngestOutcome:
        image_id = image_id_for_key(event.key)
        if not event.key.startswith(self._upload_prefix) or event.key.startswith(THUMBNAIL_PREFIX):
            # Not ours (the notification filter should already prevent this).
            return IngestOutcome("ignored", event.key, image_id, "outside the upload prefix")
        if event.key.endswith("/"):
            return IngestOutcome("ignored", event.key, image_id, "folder placeholder")

        existing = self._catalog.get(image_id)
        if event.backfill:
            # A backfill carries no sequencer: it re-asserts the stored state's token.
            token = existing.sequencer if existing and existing.sequencer else _BACKFILL_FLOOR_TOKEN
        else:
            token = ordering_token(event.sequencer, event.event_time)
            if existing is not None and existing.sequencer and existing.sequencer > token:
                return IngestOutcome("stale", event.key, image_id, "a newer event was applied")

        if event.kind == "removed" and self._store.head(event.key) is None:
            return self._delete(event.key, image_id, token)
        # A removal whose key still exists: uploaded again since, or (versioned bucket)
        # a noncurrent version was deleted, or the current one, so that an older version
        # is current again. Reading the object as it is now covers all three: same
        # ETag as indexed -> unchanged, another one -> indexed anew.
        return self._create(event, image_id, token, existing)

    def _create(
        self, event: ObjectEvent, image_id: str, token: str, existing: ImageRecord | None
    ) -> IngestOutcome:
        key = event.key
        try:
            obj = self._store.get(key, max_bytes=self._max_object_bytes)
        except ObjectTooLarge as error:
            return self._reject(
                ImageRecord(image_id=image_id, key=key, status=STATUS_REJECTED, size=error.size),
                token,
                f"file is {error.size} bytes; the limit is {error.limit} bytes",
            )
        if obj is None:
            # Deleted since the event was sent: the delete is the state to record.
            return self._delete(key, image_id, token)

        settled = existing is not None and existing.status not in (STATUS_DELETED, STATUS_FAILED)
        if existing is not None and settled and existing.etag == obj.etag:
            same_model = (
                existing.model_id == self._embedder.model_id
                and existing.dimension == self._embedder.dimension
            )
            # Rejected by our own checks (no model involved): unchanged whatever the model.
            if same_model or (existing.status == STATUS_REJECTED and existing.model_id is None):
                # A retried message may find the record written but not what follows it.
                self._vectors.written(image_id)
                self._ensure_thumbnail(existing, obj)
                return IngestOutcome("unchanged", key, image_id)
            if event.backfill and not event.force:
                return IngestOutcome(
                    "other_model", key, image_id, f"embedded with {existing.model_id}"
                )

        record = ImageRecord(
            image_id=image_id,
            key=key,
            status=STATUS_INDEXED,
            etag=obj.etag,
            size=obj.size,
            content_type=obj.content_type,
            uploaded_at=obj.last_modified,
            caption=obj.metadata.get("caption") or None,
            model_id=self._embedder.model_id,
            dimension=self._embedder.dimension,
            sequencer=token,
        )
        # Each model's input is prepared from its own limits (formats, pixels, bytes).
        limits = limits_of(self._embedder)
        try:
            prepared, thumbnail = prepare_with_thumbnail(
                obj.body,
                max_side=limits.max_side,
                max_bytes=limits.max_bytes,
                native_formats=limits.native_formats,
                max_area=limits.max_area,
            )
        except ImageRejected as rejected:
            # Rejections by our own checks do not depend on the model.
            record = replace(record, model_id=None, dimension=None)
            return self._reject(record, token, rejected.reason)
        record = replace(
            record,
            content_type=prepared.content_type,
            width=prepared.width,
            height=prepared.height,
        )
        text = (
            caption_for_embedding(record.caption, limits.max_text_chars)
            if self._joint_caption and record.caption
            else None
        )
        try:
            vector = self._embedder.embed(text=text, image=prepared.model_bytes, purpose="document")
        except InvalidEmbeddingInput as refused:
            return self._reject(record, token, f"the model refused the image: {refused}")
        except (EmbedderConfigurationError, TransientEmbeddingError) as error:
            # Visible as failed with the cause while the queue retries; then re-raised.
            self._record_failure(record, token, str(error))
            raise

        record = replace(record, vector=vector, indexed_at=utc_now_iso())
        if not self._catalog.put(record):
            return IngestOutcome("stale", key, image_id, "a newer event was applied")
        self._vectors.written(image_id)
        # Written after the record so that only the winning version writes it; a
        # failure here retries the message, which then finds the record unchanged
        # and restores the thumbnail without another model call.
        self._store.put(thumbnail_key(image_id), thumbnail, content_type="image/jpeg")
        return IngestOutcome("indexed", key, image_id)

    def _record_failure(self, record: ImageRecord, token: str, cause: str) -> None:
        """Record ``failed`` with the last cause (ordered like every write: a newer
        state wins). Best effort: the model's error is what the caller must see."""
        failed = replace(
            record, status=STATUS_FAILED, reason=cause, vector=None, indexed_at=utc_now_iso()
        )
        try:
            if self._catalog.put(failed):
                self._vectors.written(record.image_id)
        except Exception as error:  # noqa: BLE001  (adapter errors of any kind)
            # Not swallowed: logged, and the model's error is raised by the caller.
            logger.warning("could not record %s as failed: %s", record.key, error)

    def _reject(self, record: ImageRecord, token: str, reason: str) -> IngestOutcome:
        record = replace(
            record,
            status=STATUS_REJECTED,
            reason=reason,
            vector=None,
            sequencer=token,
            indexed_at=utc_now_iso(),
        )
        if not self._catalog.put(record):
            return IngestOutcome("stale", record.key, record.image_id, "a newer event was applied")
        self._vectors.written(record.image_id)
        self._store.delete(thumbnail_key(record.image_id))
        return IngestOutcome("rejected", record.key, record.image_id, reason)

    def _delete(self, key: str, image_id: str, token: str) -> IngestOutcome:
        if not self._catalog.delete(image_id, key=key, sequencer=token):
            return IngestOutcome("stale", key, image_id, "a newer event was applied")
        self._vectors.written(image_id)
        self._store.delete(thumbnail_key(image_id))
        return IngestOutcome("deleted", key, image_id)

    def _ensure_thumbnail(self, record: ImageRecord, obj: StoredObject) -> None:
        """A retried message may find the record written but the thumbnail missing."""
        if record.status != STATUS_INDEXED or self._store.head(thumbnail_key(record.image_id)):
            return
        self._store.put(
            thumbnail_key(record.image_id), make_thumbnail(obj.body), content_type="image/jpeg"
        )
