"""Ingest: S3 object events in, exactly one visible state per object out.

Every object under the upload prefix ends ``indexed`` or ``rejected`` (with a
reason) in the catalog; transient and configuration failures raise so the queue
retries the message and, after five receives, parks it in the DLQ (alarmed).

Events are hints, S3 is the truth: a "created" event reads the object as it is
now (gone -> treated as a delete), a "removed" event checks that the key is really
gone. Ordering tokens (S3 ``sequencer``) guard every catalog write, so an older
event can never overwrite a newer state, whatever order the queue delivers in.

A Lambda invocation brings up to ten messages; ``handle_batch`` takes them together:
each message's images are read and prepared in turn (a message starts only while the
time gate allows), the embedder gets them in one multi-image call where it offers one
(``ModelLimits.max_batch`` > 1: Cohere v4), the records are written one by one
(conditional, as ever), and the vector index follows all of them at once
(``VectorSync.sync``: one batched read-after-write). What fails (a model error, a
vector sync that could not finish) fails only the messages whose images it touched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Literal, Protocol

from imagesearch.embedders.base import Embedder, EmbedInput, Vector, embed_images, limits_of
from imagesearch.errors import (
    EmbedderConfigurationError,
    ImageRejected,
    InvalidEmbeddingInput,
    TransientEmbeddingError,
)
from imagesearch.events import ObjectEvent
from imagesearch.images import make_thumbnail, prepare_image, prepare_with_thumbnail
from imagesearch.ports import Catalog, ObjectStore, ObjectTooLarge, StoredObject, VectorSync
from imagesearch.records import ImageRecord, image_id_for_key, ordering_token, utc_now_iso
from imagesearch.resources import (
    STATUS_DELETED,
    STATUS_FAILED,
    STATUS_INDEXED,
    STATUS_REJECTED,
    SWITCH_MAX_REEMBED_FAILURES,
    THUMBNAIL_PREFIX,
    thumbnail_key,
)
from imagesearch.switch import (
    ModelState,
    Space,
    failed_prefix,
    ingest_spaces,
    reembed_failures,
    refused_prefix,
    retrying_prefix,
)

logger = logging.getLogger(__name__)

Action = Literal["indexed", "rejected", "deleted", "stale", "unchanged", "ignored", "other_model"]

# Titan reads at most 128 tokens (older docs; ~4.7 characters each). A caption is
# cut at a word boundary below that rather than failing the whole image.
MAX_CAPTION_EMBED_CHARS = 500
# Below any real sequencer or event-time token: a backfill of a key with no record
# loses against any real event that lands meanwhile.
_BACKFILL_FLOOR_TOKEN = "0"


# Outcomes after which the index must follow the catalog (unchanged: a retried message
# may find the record written but not its vector).
_SYNCED: frozenset[str] = frozenset({"indexed", "rejected", "deleted", "unchanged"})


@dataclass(frozen=True)
class IngestOutcome:
    action: Action
    key: str
    image_id: str
    reason: str | None = None


@dataclass(frozen=True)
class MessageResult:
    """What became of one message: its outcomes, or the error that fails it (the queue
    retries it), or not started at all (handed back by the time gate)."""

    outcomes: list[IngestOutcome]
    error: Exception | None = None
    error_key: str | None = None
    started: bool = True

    @property
    def failed(self) -> bool:
        return self.error is not None or not self.started


class NotStarted(Exception):
    """Too little time was left in the invocation to start this work."""


class TimeGate(Protocol):
    """The invocation's time budget (decision 23), as the ingest handler keeps it."""

    def admit(self, position: int) -> bool:
        """Whether message ``position`` may start (asked once per message, in order)."""
        ...

    def has_time(self) -> bool:
        """Whether one more slow model call still fits (for work already started)."""
        ...


class _NoGate:
    def admit(self, position: int) -> bool:
        return True

    def has_time(self) -> bool:
        return True


@dataclass(frozen=True)
class _Prepared:
    """An image read and prepared for the model, its record waiting for the vector."""

    record: ImageRecord
    token: str
    image: bytes = field(repr=False)
    text: str | None
    thumbnail: bytes = field(repr=False)
    # During a model switch: the previous model's input (prepared from its own limits)
    # when that model must embed it too, or its vector kept from the stored record.
    previous_image: bytes | None = field(default=None, repr=False)
    previous_vector: Vector | None = field(default=None, repr=False)
    # A switch's re-embed: the stored record (with its vectors) it started from.
    stored: ImageRecord | None = field(default=None, repr=False)


@dataclass(frozen=True)
class _Waiting:
    """A prepared image of message ``position`` (event ``slot`` of the batch)."""

    position: int
    slot: int
    prepared: _Prepared


class _Run:
    """Results of one ``handle_batch`` call as they come in."""

    def __init__(self, messages: Sequence[Sequence[ObjectEvent]]) -> None:
        self.messages = messages
        self.started = [False] * len(messages)
        self.outcomes: list[dict[int, IngestOutcome]] = [{} for _ in messages]
        self.errors: dict[int, tuple[str, Exception]] = {}
        # image id -> (message position, key) of every catalog write to sync
        self.written: dict[str, list[tuple[int, str]]] = {}

    def add(self, position: int, slot: int, outcome: IngestOutcome) -> None:
        self.outcomes[position][slot] = outcome

    def fail(self, position: int, key: str, error: Exception) -> None:
        self.errors.setdefault(position, (key, error))  # the first error names the message

    def wrote(self, position: int, key: str, image_id: str) -> None:
        self.written.setdefault(image_id, []).append((position, key))

    def results(self) -> list[MessageResult]:
        results = []
        for position, outcomes in enumerate(self.outcomes):
            ordered = [outcomes[slot] for slot in sorted(outcomes)]
            if not self.started[position]:
                results.append(MessageResult([], started=False))
            elif position in self.errors:
                key, error = self.errors[position]
                results.append(MessageResult(ordered, error=error, error_key=key))
            else:
                results.append(MessageResult(ordered))
        return results


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
        previous_embedder: Embedder | None = None,
        switch_state: Callable[[], ModelState | None] | None = None,
    ) -> None:
        self._store = store
        # During a model switch (docs/decisions.md 22): the model being replaced, and the
        # catalog's switch state (read once per batch). Until the flip, new images are
        # embedded by both models (primary slot: the new one's vector).
        self._previous = previous_embedder
        self._switch_state = switch_state
        self._switching = False
        self._catalog = catalog
        # The vector index follows the catalog writes of a batch through this (ports.VectorSync).
        self._vectors = vectors
        self._embedder = embedder
        self._upload_prefix = upload_prefix
        self._joint_caption = caption_mode == "joint"
        self._max_object_bytes = max_object_bytes

    def handle(self, event: ObjectEvent) -> IngestOutcome:
        """One event on its own (a batch of one message); raises what fails it."""
        [result] = self.handle_batch([[event]])
        if result.error is not None:
            raise result.error
        return result.outcomes[0]

    def handle_batch(
        self, messages: Sequence[Sequence[ObjectEvent]], gate: TimeGate | None = None
    ) -> list[MessageResult]:
        """The events of a batch of messages, one result per message, in order.

        Messages start in order while ``gate`` admits them; one that is not admitted
        is not touched (no read, no model call). Images wait for the model together
        when it takes several per call; a second event for an image already waiting
        sends the waiting ones to the model first, so events of one key still apply
        in order. Errors fail only the messages they concern."""
        gate = gate if gate is not None else _NoGate()
        self._switching = self._switch_in_progress()
        batching = limits_of(self._embedder).max_batch > 1
        run = _Run(messages)
        waiting: list[_Waiting] = []
        slot = 0
        for position, events in enumerate(messages):
            if not gate.admit(position):
                continue
            run.started[position] = True
            for event in events:
                slot += 1
                image_id = image_id_for_key(event.key)
                if any(item.prepared.record.image_id == image_id for item in waiting):
                    self._embed_and_write(waiting, run, gate)
                    waiting = []
                note = partial(run.wrote, position, event.key)
                try:
                    step = self._start(event, image_id, note)
                except Exception as error:  # noqa: BLE001  (fails its message: raised by the handler)
                    run.fail(position, event.key, error)
                    continue
                if isinstance(step, IngestOutcome):
                    run.add(position, slot, step)
                    continue
                waiting.append(_Waiting(position, slot, step))
                if not batching:  # one call per image anyway: made before the next starts
                    self._embed_and_write(waiting, run, gate)
                    waiting = []
        self._embed_and_write(waiting, run, gate)
        self._sync(run)
        return run.results()

    def _switch_in_progress(self) -> bool:
        """Whether new vectors need the previous model's too (before the flip)."""
        if self._previous is None or self._switch_state is None:
            return False
        deployed = Space(self._embedder.model_id, self._embedder.dimension)
        previous = Space(self._previous.model_id, self._previous.dimension)
        return len(ingest_spaces(deployed, previous, self._switch_state())) > 1

    def _holds(self, record: ImageRecord, embedder: Embedder) -> bool:
        space = (embedder.model_id, embedder.dimension)
        return (record.model_id, record.dimension) == space or (
            record.alt_model_id,
            record.alt_dimension,
        ) == space

    # --- reading and preparing ------------------------------------------------------

    def _start(
        self, event: ObjectEvent, image_id: str, note: Callable[[str], None]
    ) -> IngestOutcome | _Prepared:
        if not event.key.startswith(self._upload_prefix) or event.key.startswith(THUMBNAIL_PREFIX):
            # Not ours (the notification filter should already prevent this).
            return IngestOutcome("ignored", event.key, image_id, "outside the upload prefix")
        if event.key.endswith("/"):
            return IngestOutcome("ignored", event.key, image_id, "folder placeholder")

        # Tombstones too: an event older than a delete (the API's included) is stale
        # before it costs a download and a model call.
        existing = self._catalog.get(image_id, include_deleted=True)
        if event.backfill:
            # A backfill carries no sequencer: it re-asserts the stored state's token
            # (none for a deleted image, so it cannot undo the delete).
            if existing is not None and existing.status == STATUS_DELETED:
                existing = None
            token = existing.sequencer if existing and existing.sequencer else _BACKFILL_FLOOR_TOKEN
        else:
            token = ordering_token(event.sequencer, event.event_time)
            if existing is not None and existing.sequencer and existing.sequencer > token:
                return IngestOutcome("stale", event.key, image_id, "a newer event was applied")

        if event.kind == "removed" and self._store.head(event.key) is None:
            return self._delete(event.key, image_id, token, note)
        # A removal whose key still exists: uploaded again since, or (versioned bucket)
        # a noncurrent version was deleted, or the current one, so that an older version
        # is current again. Reading the object as it is now covers all three: same
        # ETag as indexed -> unchanged, another one -> indexed anew.
        return self._create(event, image_id, token, existing, note)

    def _create(
        self,
        event: ObjectEvent,
        image_id: str,
        token: str,
        existing: ImageRecord | None,
        note: Callable[[str], None],
    ) -> IngestOutcome | _Prepared:
        key = event.key
        try:
            obj = self._store.get(key, max_bytes=self._max_object_bytes)
        except ObjectTooLarge as error:
            return self._reject(
                ImageRecord(image_id=image_id, key=key, status=STATUS_REJECTED, size=error.size),
                token,
                f"file is {error.size} bytes; the limit is {error.limit} bytes",
                note,
            )
        if obj is None:
            # Deleted since the event was sent: the delete is the state to record.
            return self._delete(key, image_id, token, note)

        settled = existing is not None and existing.status not in (STATUS_DELETED, STATUS_FAILED)
        keep: Vector | None = None  # the previous model's vector, kept from the record
        stored: ImageRecord | None = None
        if existing is not None and settled and existing.etag == obj.etag:
            same_model = (
                existing.model_id == self._embedder.model_id
                and existing.dimension == self._embedder.dimension
            )
            if (
                self._switching
                and self._previous is not None
                and existing.status == STATUS_INDEXED
                and self._holds(existing, self._previous)
            ):
                if same_model:  # both models' vectors already stored
                    note(image_id)
                    self._ensure_thumbnail(existing, obj)
                    return IngestOutcome("unchanged", key, image_id)
                # The switch's re-embed: the new model's call only, the old vector kept.
                stored = self._catalog.get(image_id, with_vector=True)
                if stored is not None and stored.revision == existing.revision:
                    keep = stored.vector_for(self._previous.model_id, self._previous.dimension)
                if keep is None:
                    stored = None
            # backfill --force asks the model again about an image it refused (decision 33);
            # a rejection by our own checks (no model involved) stays unchanged.
            retry_refusal = (
                event.force and existing.status == STATUS_REJECTED and existing.model_id is not None
            )
            own_rejection = existing.status == STATUS_REJECTED and existing.model_id is None
            if not retry_refusal and (same_model or own_rejection):
                # A retried message may find the record written but not what follows it.
                note(image_id)
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
            return self._reject(record, token, rejected.reason, note)
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
        previous_image = None
        if self._switching and keep is None and self._previous is not None:
            previous_image = self._previous_input(obj.body)
        return _Prepared(
            record,
            token,
            prepared.model_bytes,
            text,
            thumbnail,
            previous_image=previous_image,
            previous_vector=keep,
            stored=stored,
        )

    def _previous_input(self, body: bytes) -> bytes | None:
        """The image prepared from the previous model's own limits (None: it cannot
        take it, so the record waits for the flip to be found)."""
        assert self._previous is not None
        limits = limits_of(self._previous)
        try:
            return prepare_image(
                body,
                max_side=limits.max_side,
                max_bytes=limits.max_bytes,
                native_formats=limits.native_formats,
                max_area=limits.max_area,
            ).model_bytes
        except ImageRejected as rejected:
            logger.warning("the previous model cannot take an image: %s", rejected.reason)
            return None

    # --- embedding and writing --------------------------------------------------------

    def _embed_and_write(self, waiting: list[_Waiting], run: _Run, gate: TimeGate) -> None:
        if not waiting:
            return
        results = self._embed([item.prepared for item in waiting], gate)
        for item, result in zip(waiting, results, strict=True):
            key = item.prepared.record.key
            try:
                outcome = self._finish(
                    item.prepared, result, partial(run.wrote, item.position, key)
                )
            except Exception as error:  # noqa: BLE001  (fails its message: raised by the handler)
                run.fail(item.position, key, error)
            else:
                run.add(item.position, item.slot, outcome)

    def _embed(self, items: list[_Prepared], gate: TimeGate) -> list[Vector | Exception]:
        """Each item's vector or the error that stopped it, in as few calls as the model
        allows (groups of its ``max_batch``, so that a failed call costs only its own)."""
        size = limits_of(self._embedder).max_batch
        if len(items) == 1 or size <= 1:
            return [self._embed_one(item) for item in items]
        results: list[Vector | Exception] = []
        for start in range(0, len(items), size):
            results.extend(self._embed_together(items[start : start + size], gate))
        return results

    def _embed_together(self, items: list[_Prepared], gate: TimeGate) -> list[Vector | Exception]:
        """A multi-image request fails whole: a refusal (one bad image) is retried one
        image per call, so that only the bad one ends rejected; any other error is every
        item's (throttling: their messages retry)."""
        try:
            vectors = embed_images(self._embedder, [EmbedInput(i.image, i.text) for i in items])
            return list(vectors)
        except InvalidEmbeddingInput as refused:
            logger.info(
                "the model refused a batch of %d images (%s): one call each", len(items), refused
            )
        except Exception as error:  # noqa: BLE001  (each item's message fails with it)
            return [error] * len(items)
        results: list[Vector | Exception] = []
        for item in items:
            if gate.has_time():
                results.append(self._embed_one(item))
            else:  # the invocation could time out in the next call: the message retries
                results.append(NotStarted("not enough time left for another model call"))
        return results

    def _embed_one(self, item: _Prepared) -> Vector | Exception:
        try:
            return self._embedder.embed(text=item.text, image=item.image, purpose="document")
        except Exception as error:  # noqa: BLE001  (its message fails with it)
            return error

    def _finish(
        self, item: _Prepared, result: Vector | Exception, note: Callable[[str], None]
    ) -> IngestOutcome:
        record, token = item.record, item.token
        previous: Vector | None = None
        if self._switching and isinstance(result, Exception):
            kept = self._keep_serving(item, result, note)
            if kept is not None:
                return kept
            # The serving model has no vector for it either: handled as outside a switch.
        else:
            previous = self._switch_previous_vector(item, note)
        if isinstance(result, InvalidEmbeddingInput):
            return self._reject(
                record, token, f"the model refused the image: {result.reason}", note
            )
        if isinstance(result, EmbedderConfigurationError | TransientEmbeddingError):
            # Visible as failed with the cause while the queue retries; then raised.
            self._record_failure(record, token, result.reason, note)
            raise result
        if isinstance(result, Exception):
            raise result
        record = replace(record, vector=result, indexed_at=utc_now_iso())
        if previous is not None and self._previous is not None:
            record = replace(
                record,
                alt_model_id=self._previous.model_id,
                alt_dimension=self._previous.dimension,
                alt_vector=previous,
            )
        if not self._catalog.put(record):
            return IngestOutcome("stale", record.key, record.image_id, "a newer event was applied")
        note(record.image_id)
        # Written after the record so that only the winning version writes it; a
        # failure here retries the message, which then finds the record unchanged
        # and restores the thumbnail without another model call.
        self._store.put(thumbnail_key(record.image_id), item.thumbnail, content_type="image/jpeg")
        return IngestOutcome("indexed", record.key, record.image_id)

    def _switch_previous_vector(
        self, item: _Prepared, note: Callable[[str], None]
    ) -> Vector | None:
        """During a switch: the serving model's vector to store beside the new one."""
        if not self._switching:
            return None
        try:
            return self._previous_vector(item)
        except InvalidEmbeddingInput as refusal:
            # The serving model refuses what the new one takes: the record holds the new
            # model's vector alone and is found once search changes over (decision 33).
            logger.warning(
                "the serving model refused %s (%s): indexed for the new model only",
                item.record.key,
                refusal,
            )
            return None
        except (EmbedderConfigurationError, TransientEmbeddingError) as error:
            # The serving model failed: visible as failed while the queue retries.
            self._record_failure(item.record, item.token, error.reason, note)
            raise

    def _keep_serving(
        self, item: _Prepared, error: Exception, note: Callable[[str], None]
    ) -> IngestOutcome | None:
        """During a switch the new model failed or refused: the image stays (or becomes)
        searchable with the serving model's vector (decision 42). A refusal, or the
        ``SWITCH_MAX_REEMBED_FAILURES``-th failure that may be about the image, gives
        the record up for the new model (its reason says why; the switch no longer
        waits for it, and after the flip it ends rejected or failed); an earlier one is
        counted on the record and raised, so the queue retries it; other errors are
        raised (a new image is written with the serving model's vector first). None:
        the serving model has no vector for it either (handled as outside a switch)."""
        assert self._previous is not None
        base = item.stored
        if base is None:
            try:
                vector = self._previous_vector(item)
            except InvalidEmbeddingInput:
                return None  # both models refuse it: rejected as ever
            except (EmbedderConfigurationError, TransientEmbeddingError) as serving_error:
                self._record_failure(item.record, item.token, serving_error.reason, note)
                raise
            if vector is None:  # the serving model cannot take it by our own checks
                return None
            base = replace(
                item.record,
                model_id=self._previous.model_id,
                dimension=self._previous.dimension,
                vector=vector,
                indexed_at=utc_now_iso(),
            )
        target = Space(self._embedder.model_id, self._embedder.dimension)
        failures = reembed_failures(base.reason, base.reembed_failures, target)
        give_up = False
        if isinstance(error, InvalidEmbeddingInput):
            reason: str | None = (
                f"{refused_prefix(target)}the model refused the image: {error.reason}"
            )
            give_up = True
        elif isinstance(error, EmbedderConfigurationError) and error.maybe_input:
            # Counted: an answer no rule knows may be about this image. Throttling,
            # outages and named deployment faults are the model's for every image: they
            # are never counted (a model-wide failure must not give every record up).
            failures += 1
            give_up = failures >= SWITCH_MAX_REEMBED_FAILURES
            prefix = failed_prefix(target) if give_up else retrying_prefix(target)
            reason = f"{prefix}{error.reason}"
        elif item.stored is not None:  # nothing to record on the stored record: retried
            raise error
        else:  # a new image: written with the serving model's vector, then retried
            reason = None
        written = replace(base, reason=reason, reembed_failures=failures or None)
        if not self._catalog.put(written):
            return IngestOutcome(
                "stale", written.key, written.image_id, "a newer event was applied"
            )
        note(written.image_id)
        if item.stored is None:
            self._store.put(
                thumbnail_key(written.image_id), item.thumbnail, content_type="image/jpeg"
            )
        if not give_up:
            raise error
        logger.warning("model switch: %s given up by %s: %s", written.key, target, error)
        return IngestOutcome("indexed", written.key, written.image_id, reason)

    def _previous_vector(self, item: _Prepared) -> Vector | None:
        """The previous model's vector of a new image (one call), or the one kept."""
        if item.previous_vector is not None or item.previous_image is None:
            return item.previous_vector
        assert self._previous is not None
        # Errors of the serving model fail the message like any model error.
        return self._previous.embed(text=item.text, image=item.previous_image, purpose="document")

    def _sync(self, run: _Run) -> None:
        """The vector index follows every catalog write of the batch at once; the
        messages of the images it could not sync fail (their retry syncs again)."""
        if not run.written:
            return
        for image_id, error in self._vectors.sync(list(run.written)).items():
            for position, key in run.written.get(image_id, []):
                run.fail(position, key, error)

    # --- record states ---------------------------------------------------------------

    def _record_failure(
        self, record: ImageRecord, token: str, cause: str, note: Callable[[str], None]
    ) -> None:
        """Record ``failed`` with the last cause (ordered like every write: a newer
        state wins). Best effort: the model's error is what the caller must see."""
        failed = replace(
            record, status=STATUS_FAILED, reason=cause, vector=None, indexed_at=utc_now_iso()
        )
        try:
            if self._catalog.put(failed):
                note(record.image_id)
        except Exception as error:  # noqa: BLE001  (adapter errors of any kind)
            # Not swallowed: logged, and the model's error is raised by the caller.
            logger.warning("could not record %s as failed: %s", record.key, error)

    def _reject(
        self, record: ImageRecord, token: str, reason: str, note: Callable[[str], None]
    ) -> IngestOutcome:
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
        note(record.image_id)
        self._store.delete(thumbnail_key(record.image_id))
        return IngestOutcome("rejected", record.key, record.image_id, reason)

    def _delete(
        self, key: str, image_id: str, token: str, note: Callable[[str], None]
    ) -> IngestOutcome:
        if not self._catalog.delete(image_id, key=key, sequencer=token):
            return IngestOutcome("stale", key, image_id, "a newer event was applied")
        note(image_id)
        self._store.delete(thumbnail_key(image_id))
        return IngestOutcome("deleted", key, image_id)

    def _ensure_thumbnail(self, record: ImageRecord, obj: StoredObject) -> None:
        """A retried message may find the record written but the thumbnail missing."""
        if record.status != STATUS_INDEXED or self._store.head(thumbnail_key(record.image_id)):
            return
        self._store.put(
            thumbnail_key(record.image_id), make_thumbnail(obj.body), content_type="image/jpeg"
        )
