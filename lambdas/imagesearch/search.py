"""Search service: the domain behind the search API (SPEC section 6).

Turns validated requests (``imagesearch.api_models``) into query vectors, runs them
against the ``VectorIndex``, hydrates the hits with their ``Catalog`` records (one
batched read) and presigned URLs, and manages images and uploads. HTTP lives in
``handlers/api.py``; this module raises domain errors (``imagesearch.errors``) instead.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from imagesearch.api_models import (
    UPLOAD_CONTENT_TYPES,
    DeleteAccepted,
    HealthResponse,
    ImageOut,
    ImagePage,
    ModelState,
    QueryPart,
    SearchRequest,
    SearchResponse,
    SearchResult,
    UploadRequest,
    UploadResponse,
)
from imagesearch.embedders.base import Embedder, Vector, limits_of, unit_vector
from imagesearch.errors import (
    EmbedderConfigurationError,
    ImageRejected,
    InvalidCursor,
    InvalidRequest,
    ModelUnusable,
    NotFound,
    TransientEmbeddingError,
    UploadTooLarge,
    redact,
)
from imagesearch.health import ImageCount
from imagesearch.model_health import ModelHealth
from imagesearch.ports import Catalog, ObjectStore, QueryFilters, ScoredId, VectorIndex
from imagesearch.records import ImageRecord, is_valid_image_id, iso_from_ms
from imagesearch.resources import (
    EMBEDDED_CAPACITY_WARNING,
    MAX_KEY_BYTES,
    STATUS_DELETED,
    STATUS_INDEXED,
    thumbnail_key,
)
from imagesearch.switch import ServingSpaces, Space

# A sum of weighted unit vectors (the largest weight scaled to 1) shorter than this
# has no usable direction.
_MIN_COMBINED_NORM = 1e-6
_MAX_PARALLEL_EMBEDS = 4
# What a download of something we do not vouch for is labelled.
_OPAQUE = "application/octet-stream"
logger = logging.getLogger(__name__)

_DATA_URL = re.compile(r"^data:[^,]{0,100};base64,", re.IGNORECASE)


def decode_base64_image(value: str) -> bytes:
    """Bytes of a base64 image (standard or URL-safe alphabet, line breaks, missing
    padding and a ``data:...;base64,`` prefix tolerated). Raises ImageRejected."""
    text = "".join(_DATA_URL.sub("", value, count=1).split())
    if "-" in text or "_" in text:
        text = text.replace("-", "+").replace("_", "/")
    text = text.rstrip("=")
    text += "=" * (-len(text) % 4)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRejected("image is not valid base64") from None
    if not data:
        raise ImageRejected("image is empty")
    return data


@dataclass(frozen=True)
class SpaceView:
    """What one request searches with: a model space, its index and its embedder."""

    space: Space
    index: VectorIndex
    embedder: Embedder


class SearchService:
    """Search, images and uploads on top of the catalog, vector index, embedder and
    object store ports. During a model switch ``spaces`` says, per request, which
    model's index and embedder serve (``imagesearch.switch``): one per request, so a
    query vector only ever meets vectors of its own model."""

    def __init__(
        self,
        catalog: Catalog,
        index: VectorIndex,
        embedder: Embedder,
        store: ObjectStore,
        *,
        upload_prefix: str,
        model_id: str,
        dimension: int,
        url_ttl: int = 900,
        max_upload_bytes: int | None = None,
        published_count: Callable[[], ImageCount | None] | None = None,
        capacity: int | None = None,
        spaces: ServingSpaces[SpaceView] | None = None,
        model_health: ModelHealth | None = None,
    ) -> None:
        self._catalog = catalog
        # /health's count as the maintenance function published it (imagesearch.health:
        # at most one GetItem per call, cached); the embedded index's own count when newer.
        self._published_count = published_count
        # What /health and failed searches say about the model (local mode's probe
        # writes to it too).
        self.model_health = model_health or ModelHealth()
        if spaces is None:
            fixed = SpaceView(Space(model_id, dimension), index, embedder)
            spaces = ServingSpaces(
                deployed=fixed.space,
                previous=None,
                build=lambda _: fixed,
                clock=time.monotonic,
                ttl=float("inf"),
            )
        self._spaces = spaces
        self._store = store
        self.upload_prefix = upload_prefix
        self.url_ttl = url_ttl
        self.max_upload_bytes = max_upload_bytes
        self.capacity = capacity

    @property
    def model_id(self) -> str:
        return self._view().space.model_id

    @property
    def dimension(self) -> int:
        return self._view().space.dimension

    def _view(self) -> SpaceView:
        return self._spaces.current()[1]

    # --- search -------------------------------------------------------------------

    def search(self, request: SearchRequest) -> SearchResponse:
        started = time.perf_counter()
        # Filters first: a bad one must not cost a model call.
        filters = QueryFilters(
            prefix=self.key_prefix(request.prefix),
            content_types=(
                tuple(dict.fromkeys(t.lower() for t in request.content_type))
                if request.content_type
                else None
            ),
            min_score=request.min_score,
            # "More like this" answers with other images, not the query image itself.
            exclude_ids=tuple(self._query_image_ids(request)),
        )
        view = self._view()  # one model space for the whole request
        vector = self.query_vector(request, view)
        hits: Sequence[ScoredId] = view.index.query(vector, request.top_k, filters)
        records = self._catalog.get_many([hit.image_id for hit in hits]) if hits else {}
        results = []
        for hit in hits:
            record = records.get(hit.image_id)
            if record is None or record.status != STATUS_INDEXED:
                continue  # deleted or re-ingested since the index snapshot
            results.append(self._result(record, hit.score))
        return SearchResponse(
            results=results,
            count=len(results),
            model_id=view.space.model_id,
            dimension=view.space.dimension,
            took_ms=round((time.perf_counter() - started) * 1000, 2),
        )

    def query_vector(self, request: SearchRequest, view: SpaceView | None = None) -> Vector:
        """The unit query vector: one embedding (text and image together are one joint
        call), a stored vector, or the renormalised weighted sum of several parts."""
        view = view or self._view()
        if request.queries is None:
            return self._embed(view, request.text, request.image, request.image_id)
        parts = request.queries
        if len(parts) == 1:
            vectors = [self._part_vector(view, parts[0])]
        else:
            # Parts are independent model calls: run them side by side, not one by one.
            with ThreadPoolExecutor(max_workers=min(len(parts), _MAX_PARALLEL_EMBEDS)) as pool:
                vectors = list(pool.map(lambda part: self._part_vector(view, part), parts))
        # Only the weights' ratios matter: dividing by the largest keeps every term
        # within [-1, 1] in float64, so no finite weight (1e37, 1e308) can overflow.
        weights = np.array([part.weight for part in parts], dtype=np.float64)
        weights /= float(np.max(np.abs(weights)))
        combined = np.zeros(view.space.dimension, dtype=np.float64)
        for weight, vector in zip(weights, vectors, strict=True):
            combined += weight * vector.astype(np.float64)
        norm = float(np.linalg.norm(combined))
        if not np.isfinite(norm) or norm < _MIN_COMBINED_NORM:
            raise InvalidRequest("the weights cancel out: the combined query vector is zero")
        return unit_vector(combined / norm)

    def _part_vector(self, view: SpaceView, part: QueryPart) -> Vector:
        return self._embed(view, part.text, part.image, part.image_id)

    def _embed(
        self, view: SpaceView, text: str | None, image: str | None, image_id: str | None
    ) -> Vector:
        if image_id is not None:
            return self._stored_vector(view, image_id)
        image_bytes = self._model_image(view, image) if image is not None else None
        try:
            vector = view.embedder.embed(text=text, image=image_bytes, purpose="query")
        except EmbedderConfigurationError as error:
            self.model_health.query_failed(error.reason)
            raise
        except TransientEmbeddingError as error:
            # Unreachable because of a known cause (no credentials...): say it.
            problem = self.model_health.problem()
            if problem is not None and not error.throttled:
                raise ModelUnusable(problem.text()) from error
            raise
        self.model_health.query_succeeded()
        return self._checked(view, vector)

    def _stored_vector(self, view: SpaceView, image_id: str) -> Vector:
        """From the index, else from the catalog (it may be newer than the index)."""
        vector = view.index.get_vectors([image_id]).get(image_id)
        if vector is None:
            record = self._catalog.get(image_id, with_vector=True)
            space = view.space
            vector = (
                record.vector_for(space.model_id, space.dimension)
                if record is not None and record.status == STATUS_INDEXED
                else None
            )
            if vector is None:
                raise NotFound(f"image {image_id} is not indexed")
        try:
            return self._checked(view, vector)
        except ValueError:  # zero or non-finite stored vector
            raise NotFound(f"image {image_id} has no usable vector") from None

    def _checked(self, view: SpaceView, vector: Vector) -> Vector:
        dimension = view.space.dimension
        if vector.shape != (dimension,):
            raise InvalidRequest(
                f"vector has {vector.shape[-1]} dimensions; this index uses {dimension}"
            )
        return unit_vector(vector)

    def _model_image(self, view: SpaceView, value: str) -> bytes:
        # Pillow is imported on the first image query only: text queries and the
        # other routes do not pay for it at cold start.
        from imagesearch.images import prepare_image

        limits = limits_of(view.embedder)
        return prepare_image(
            decode_base64_image(value),
            max_side=limits.max_side,
            max_bytes=limits.max_bytes,
            native_formats=limits.native_formats,
            max_area=limits.max_area,
        ).model_bytes

    @staticmethod
    def _query_image_ids(request: SearchRequest) -> list[str]:
        if request.queries is None:
            return [request.image_id] if request.image_id else []
        return [p.image_id for p in request.queries if p.image_id is not None and p.weight > 0]

    def key_prefix(self, prefix: str | None) -> str | None:
        """Keys are full S3 keys (``uploads/shoes/red.jpg``); a prefix that cannot match
        below the upload prefix is taken relative to it (``shoes/``)."""
        if prefix is None:
            return None
        if not (prefix.startswith(self.upload_prefix) or self.upload_prefix.startswith(prefix)):
            prefix = self.upload_prefix + prefix
        # DynamoDB refuses a key condition longer than a key (a ValidationException).
        size = len(prefix.encode("utf-8"))
        if size > MAX_KEY_BYTES:
            raise InvalidRequest(
                f"prefix {prefix[:40]!r}... is {size} bytes in UTF-8 with the upload prefix;"
                f" object keys are at most {MAX_KEY_BYTES} bytes"
            )
        return prefix

    def _result(self, record: ImageRecord, score: float) -> SearchResult:
        return SearchResult(
            image_id=record.image_id,
            key=record.key,
            score=round(float(score), 6),
            url=self._original_url(record),
            thumbnail_url=self._thumbnail_url(record),
            content_type=record.content_type,
            width=record.width,
            height=record.height,
            size=record.size,
            uploaded_at=record.uploaded_at,
            caption=record.caption,
        )

    # --- images -------------------------------------------------------------------

    def get_image(self, image_id: str) -> ImageOut:
        return self._image_out(self._record(image_id))

    def list_images(
        self, *, prefix: str | None, status: str | None, limit: int, cursor: str | None
    ) -> ImagePage:
        try:
            page = self._catalog.list(
                prefix=self.key_prefix(prefix), status=status, limit=limit, cursor=cursor
            )
        except ValueError as error:
            raise InvalidCursor(f"cursor is not valid: {error}") from None
        return ImagePage(items=[self._image_out(r) for r in page.items], cursor=page.cursor)

    def delete_image(self, image_id: str) -> DeleteAccepted:
        """Delete the original, then mark the record deleted, drop its vector from this
        instance's index and delete its thumbnail, so nothing serves it from now on
        whatever the ingest backlog (decision 43). The tombstone is the one ingest writes
        for an ObjectRemoved: other embedded instances drop the image at their next
        refresh (the change log), and the S3 event that follows finds it done.

        The original goes first: a failure after it leaves a record that a retried
        DELETE (or the S3 event) still finishes. A record that changed since it was read
        (a concurrent ingest or re-upload) is left to the S3 events, which order it."""
        record = self._record(image_id)
        self._store.delete(record.key)
        if not self._catalog.tombstone(record):
            logger.info("record %s changed during its delete: the S3 events decide", image_id)
            return DeleteAccepted(image_id=record.image_id, key=record.key)
        # The embedded tier: this instance's matrix; the scale tier: DeleteVectors.
        self._view().index.delete([record.image_id])
        self._store.delete(thumbnail_key(record.image_id))
        return DeleteAccepted(image_id=record.image_id, key=record.key)

    def _record(self, image_id: str) -> ImageRecord:
        record = self._catalog.get(image_id) if is_valid_image_id(image_id) else None
        if record is None or record.status == STATUS_DELETED:
            raise NotFound(f"no image with id {image_id}")
        return record

    def _image_out(self, record: ImageRecord) -> ImageOut:
        fields = record.public_fields()
        thumbnail = self._thumbnail_url(record) if record.status == STATUS_INDEXED else None
        return ImageOut(**fields, url=self._original_url(record), thumbnail_url=thumbnail)

    def _original_url(self, record: ImageRecord) -> str:
        """Only an indexed image, whose type our decoder found, is served inline, as
        that type; anything else (a rejected SVG with a script, an HTML file, an image
        whose stored Content-Type lies) downloads as opaque bytes."""
        if record.status == STATUS_INDEXED and record.content_type in UPLOAD_CONTENT_TYPES:
            return self._store.presign_get(
                record.key,
                expires_in=self.url_ttl,
                content_type=record.content_type,
                version=record.etag,
            )
        return self._store.presign_get(
            record.key,
            expires_in=self.url_ttl,
            content_type=_OPAQUE,
            attachment=True,
            version=record.etag,
        )

    def _thumbnail_url(self, record: ImageRecord) -> str:
        # Thumbnails are JPEGs we wrote ourselves, from the image of this ETag.
        return self._store.presign_get(
            thumbnail_key(record.image_id),
            expires_in=self.url_ttl,
            content_type="image/jpeg",
            version=record.etag,
        )

    # --- uploads and health -------------------------------------------------------

    def create_upload(self, request: UploadRequest) -> UploadResponse:
        if self.max_upload_bytes is not None and request.size > self.max_upload_bytes:
            raise UploadTooLarge(
                f"size is {request.size} bytes; uploads are limited to"
                f" {self.max_upload_bytes} bytes"
            )
        key = self.upload_prefix + request.filename
        key_bytes = len(key.encode("utf-8"))
        if key_bytes > MAX_KEY_BYTES:
            raise InvalidRequest(
                f"filename makes a key of {key_bytes} bytes in UTF-8 ({key[:40]!r}...);"
                f" S3 keys are at most {MAX_KEY_BYTES} bytes"
            )
        url, headers = self._store.presign_put(
            key,
            content_type=request.content_type,
            content_length=request.size,
            expires_in=self.url_ttl,
            overwrite=request.overwrite,
        )
        return UploadResponse(key=key, url=url, headers=headers)

    def warm(self) -> None:
        """Load the vector index now (local mode at start: it has no snapshot, and
        /health never loads the index by itself)."""
        refresh = getattr(self._view().index, "refresh", None)
        if callable(refresh):
            refresh()

    def refresh_soon(self) -> None:
        """Ask the serving index's background refresher, if it has one, to run now."""
        nudge = getattr(self._spaces.peek()[1].index, "refresh_soon", None)
        if callable(nudge):
            nudge()

    def forget_published_count(self) -> None:
        """Read /health's published count again on the next call (local mode, once it
        published a new one)."""
        forget = getattr(self._published_count, "forget", None)
        if callable(forget):
            forget()

    def stop_refreshing(self, timeout: float = 10.0) -> None:
        """Stop the serving index's background refresher, if it has one (local mode,
        before it stops moto)."""
        stop = getattr(self._spaces.peek()[1].index, "stop_refreshing", None)
        if callable(stop):
            stop(timeout)

    def health(self) -> HealthResponse:
        """Liveness at constant cost (the route is unauthenticated): never loads the
        index, never queries or scans the table. ``images`` is the newer of this
        instance's loaded index count (embedded tier) and the count the maintenance
        function published (at most one GetItem, cached), with the time it is from."""
        # The space served now, without reading the switch state or loading anything;
        # before the first request, the one this instance would serve first.
        view = self._spaces.peek()[1]
        known: list[ImageCount] = []
        loaded_image_count = getattr(view.index, "loaded_image_count", None)
        if callable(loaded_image_count) and (own := loaded_image_count()) is not None:
            known.append(own)
        if self._published_count is not None:
            published = self._published_count()
            if published is not None and published.counts(
                view.space.model_id, view.space.dimension
            ):
                known.append(published)
        count = max(known, key=lambda known_count: known_count.as_of_ms, default=None)
        images = None if count is None else count.images
        near = (
            self.capacity is not None
            and images is not None
            and images >= EMBEDDED_CAPACITY_WARNING * self.capacity
        )
        return HealthResponse(
            images=images,
            model_id=view.space.model_id,
            dimension=view.space.dimension,
            images_as_of=None if count is None else iso_from_ms(count.as_of_ms),
            capacity=self.capacity,
            near_capacity=near,
            **self._model_state(),
        )

    def _model_state(self) -> dict[str, Any]:
        """/health's model fields: ``degraded`` with the cause while it is unusable (the
        route needs no auth in local mode: no ARNs or account ids)."""
        problem = self.model_health.problem()
        if problem is None:
            return {}
        since = datetime.fromtimestamp(problem.since, UTC).isoformat(timespec="seconds")
        return {
            "status": "degraded",
            "cause": f"the embedding model is unusable: {redact(problem.text())}",
            "model": ModelState(
                state="unusable",
                cause=redact(problem.cause),
                fix=redact(problem.fix) or None,
                since=since,
            ),
        }
