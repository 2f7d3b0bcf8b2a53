"""Ingest Lambda: SQS batch of S3 notifications -> IngestService, partial batch failures.

Thin: parse the messages, hand the batch to the service (``handle_batch``: one
multi-image model call where the model allows, one vector sync for all), then report
each message's result through Powertools' BatchProcessor: log and count its outcomes,
or fail it. Transient and configuration errors fail only the messages they concern
(retried by SQS, DLQ after five receives); everything else ends as a visible record
state. A message is only started while the invocation has the time one image may
need; the others are handed back unstarted, so one hung model call cannot time out
the whole batch.

Neither a hand-back nor a batch-mate's crash burns a receive (decision 43): handed-back
messages are sent to the ingest queue again, and a message that comes back from a failed
receive (``ApproximateReceiveCount`` > 1, be it its own failure or a crash of its whole
batch) is moved to the retry queue, whose event source hands it over alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from imagesearch.composition import build_ingest_service
from imagesearch.errors import EmbedderConfigurationError, TransientEmbeddingError
from imagesearch.events import MalformedEvent, ObjectEvent, parse_message_body
from imagesearch.ingest import IngestOutcome, IngestService, MessageResult, NotStarted
from imagesearch.requeue import HAND_BACKS_ATTRIBUTE, MessageMover, Move, SqsMessageMover
from imagesearch.resources import (
    INGEST_MAX_HAND_BACKS,
    METRIC_CONFIGURATION_ERRORS,
    METRICS_NAMESPACE,
)
from imagesearch.settings import CommonSettings, IngestSettings, load_settings

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace=METRICS_NAMESPACE)

_OUTCOME_METRICS = {
    "indexed": "ImagesIndexed",
    "rejected": "ImagesRejected",
    "deleted": "ImagesDeleted",
    "stale": "StaleEventsSkipped",
    "unchanged": "UnchangedSkipped",
    "other_model": "OtherModelSkipped",
}


@lru_cache(maxsize=1)
def default_service() -> IngestService:
    """Built once per container from the function's environment."""
    return build_ingest_service(load_settings(IngestSettings))


# Besides its model call, one image is downloaded (at most the upload cap), decoded
# within the decode budget, encoded, thumbnailed and written to the table: the worst
# inputs of bench/images.py stay under 20 s even on a heavily shared machine.
IMAGE_WORK_SECONDS = 20.0
# botocore's backoff before retry n (standard and adaptive modes): up to 2**(n-1) s, capped.
_SDK_MAX_BACKOFF_SECONDS = 20.0


def seconds_per_image(settings: CommonSettings) -> float:
    """The longest one image may take: every Bedrock attempt running into its connect
    and read timeouts, the SDK's backoff between attempts, and the work on the image."""
    attempts = settings.bedrock_max_attempts
    calls = attempts * (settings.bedrock_connect_timeout + settings.bedrock_read_timeout)
    if settings.previous_space is not None:  # a model switch: both models embed each image
        calls *= 2
    backoff = sum(min(2.0 ** (n - 1), _SDK_MAX_BACKOFF_SECONDS) for n in range(1, attempts))
    return calls + backoff + IMAGE_WORK_SECONDS


class _Clock(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


class _StartGate:
    """Lets a message start only while the invocation has ``need`` seconds left. The
    first one always starts. When the whole invocation is shorter than ``need`` (local
    mode's defaults), no wait could help: every message starts, as without the gate,
    rather than all but one being handed back again and again."""

    def __init__(self, context: Any, records: list[SQSRecord], need: float | None) -> None:
        clock = context if hasattr(context, "get_remaining_time_in_millis") else None
        self._clock: _Clock | None = clock if need is not None else None
        self._records = records
        self._need = need or 0.0
        self._started = 0
        self.handed_back: dict[str, str] = {}  # message id -> why
        self.remaining_at_stop: float | None = None

    def _remaining(self) -> float:
        assert self._clock is not None
        return self._clock.get_remaining_time_in_millis() / 1000

    def admit(self, position: int) -> bool:
        if self._clock is not None:
            remaining = self._remaining()
            if not self._started and remaining < self._need:
                self._clock = None  # the function timeout cannot fit one slow image anyway
            elif self._started and remaining < self._need:
                record = self._records[position]
                self.remaining_at_stop = remaining
                self.handed_back[record.message_id] = (
                    f"{remaining:.1f} s left, one image may need {self._need:.0f} s: "
                    f"message {record.message_id} handed back unstarted"
                )
                return False
        self._started += 1
        return True

    def has_time(self) -> bool:
        return self._clock is None or self._remaining() >= self._need


@dataclass(frozen=True)
class Requeuing:
    """Where messages are moved instead of failed (decision 43)."""

    queue_url: str  # the ingest queue: hand-backs are sent to it again
    retry_queue_url: str  # its event source hands each message over alone
    mover: MessageMover

    def from_ingest_queue(self, record: SQSRecord) -> bool:
        # Queue names end both the ARN and the URL (moto's URLs have their own host).
        return record.event_source_arn.rsplit(":", 1)[-1] == self.queue_url.rsplit("/", 1)[-1]


def requeuing_from(settings: IngestSettings) -> Requeuing | None:
    if not settings.ingest_queue_url or not settings.ingest_retry_queue_url:
        return None
    return Requeuing(settings.ingest_queue_url, settings.ingest_retry_queue_url, SqsMessageMover())


@lru_cache(maxsize=1)
def default_requeuing() -> Requeuing | None:
    return requeuing_from(load_settings(IngestSettings))


def _receives(record: SQSRecord) -> int:
    # Lambda always sends it; a hand-built event may not (then: a first receive).
    count = (record.raw_event.get("attributes") or {}).get("ApproximateReceiveCount", "1")
    return int(count)


def _hand_backs(record: SQSRecord) -> int:
    attribute = record.message_attributes[HAND_BACKS_ATTRIBUTE]
    value = attribute.string_value if attribute is not None else None
    return int(value) if value and value.isdigit() else 0


def _retry_alone(records: list[SQSRecord], requeuing: Requeuing | None) -> set[str]:
    """Move the messages back from a failed receive to the retry queue, before anything
    starts (so a crash of this invocation cannot bring them back); returns their ids.
    One that cannot be moved stays in this batch, as before the retry queue."""
    if requeuing is None:
        return set()
    suspects = [r for r in records if requeuing.from_ingest_queue(r) and _receives(r) > 1]
    if not suspects:
        return set()
    refused = requeuing.mover.move(
        [Move(r.message_id, r.receipt_handle, r.body) for r in suspects],
        source=requeuing.queue_url,
        destination=requeuing.retry_queue_url,
    )
    for message_id, why in refused.items():
        logger.error(
            "could not move a retried message to the retry queue; it is processed with this batch",
            message_id=message_id,
            error=why,
        )
    moved = {r.message_id for r in suspects} - set(refused)
    if moved:
        logger.info("messages back from a failed receive: retried alone", moved=len(moved))
        metrics.add_metric(name="MessagesRetriedAlone", unit=MetricUnit.Count, value=len(moved))
    return moved


def _send_back(records: list[SQSRecord], requeuing: Requeuing | None) -> set[str]:
    """Send the messages handed back unstarted to the ingest queue again (a fresh copy,
    no receive counted); one handed back INGEST_MAX_HAND_BACKS times goes to the retry
    queue, where it starts alone. Returns the ids sent; the others fail as before."""
    if requeuing is None or not records:
        return set()
    again: list[Move] = []
    alone: list[Move] = []
    for record in records:
        if not requeuing.from_ingest_queue(record):
            continue  # alone already: it was not handed back for a batch-mate
        count = _hand_backs(record) + 1
        move = Move(record.message_id, record.receipt_handle, record.body, hand_backs=count)
        (alone if count > INGEST_MAX_HAND_BACKS else again).append(move)
    refused: dict[str, str] = {}
    for moves, destination in ((again, requeuing.queue_url), (alone, requeuing.retry_queue_url)):
        if moves:
            refused |= requeuing.mover.move(
                moves, source=requeuing.queue_url, destination=destination
            )
    for message_id, why in refused.items():
        logger.warning(
            "could not send a handed-back message again; it fails instead",
            message_id=message_id,
            error=why,
        )
    return {move.message_id for move in again + alone} - set(refused)


def configure(service: IngestService | None) -> None:
    """Use ``service`` from now on (local mode, tests); None returns to the default."""
    global _configured
    _configured = service
    default_service.cache_clear()
    default_requeuing.cache_clear()


_configured: IngestService | None = None


def current_service() -> IngestService:
    return _configured if _configured is not None else default_service()


def _parse(record: SQSRecord) -> list[ObjectEvent] | MalformedEvent:
    try:
        return parse_message_body(record.body)
    except MalformedEvent as error:
        # Never dropped: it fails until SQS parks it in the DLQ, where the alarm sees it.
        logger.error(
            "malformed message; it will end in the DLQ",
            message_id=record.message_id,
            error=str(error),
        )
        return error


def _report(result: MessageResult) -> list[IngestOutcome]:
    """Log and count one message's result; raise what fails it."""
    if result.error is not None:
        _log_error(result.error, result.error_key)
        raise result.error
    for outcome in result.outcomes:
        log = logger.warning if outcome.action == "rejected" else logger.info
        log(
            f"{outcome.action} {outcome.key}",
            action=outcome.action,
            key=outcome.key,
            image_id=outcome.image_id,
            reason=outcome.reason,
        )
        if outcome.action in _OUTCOME_METRICS:
            metrics.add_metric(
                name=_OUTCOME_METRICS[outcome.action], unit=MetricUnit.Count, value=1
            )
    return result.outcomes


def _log_error(error: Exception, key: str | None) -> None:
    if isinstance(error, EmbedderConfigurationError):
        # An operator must act (model access, region, permissions): say so loudly.
        logger.error("embedding model misconfigured", key=key, error=str(error))
        metrics.add_metric(name=METRIC_CONFIGURATION_ERRORS, unit=MetricUnit.Count, value=1)
    elif isinstance(error, TransientEmbeddingError):
        logger.warning(
            "transient model error; message will be retried",
            key=key,
            error=str(error),
            throttled=error.throttled,
        )
        metrics.add_metric(name="TransientModelErrors", unit=MetricUnit.Count, value=1)
    elif isinstance(error, NotStarted):
        logger.warning("message will be retried", key=key, error=str(error))
    else:
        logger.error(
            "ingest failed; message will be retried",
            key=key,
            exc_info=(type(error), error, error.__traceback__),
        )


def handle_batch(
    event: dict[str, Any],
    context: Any,
    service: IngestService,
    *,
    seconds_per_image: float | None = None,
    requeuing: Requeuing | None = None,
) -> dict[str, Any]:
    """Process the batch; with ``seconds_per_image``, a message starts only while the
    context has that much time left, and the rest are handed back without being touched.
    With ``requeuing``, messages back from a failed receive are moved to the retry queue
    unprocessed and handed-back ones are sent again, both reported processed; without
    it (or when a move fails), they are batch item failures (SQS redelivers just those)."""
    all_records = [SQSRecord(raw) for raw in event.get("Records", [])]
    moved = _retry_alone(all_records, requeuing)
    records = [record for record in all_records if record.message_id not in moved]
    parsed = [_parse(record) for record in records]
    readable = [
        (record, events)
        for record, events in zip(records, parsed, strict=True)
        if not isinstance(events, MalformedEvent)
    ]
    gate = _StartGate(context, [record for record, _ in readable], seconds_per_image)
    # (Nothing left when every message was moved: the service is not even asked.)
    results = service.handle_batch([events for _, events in readable], gate) if readable else []
    by_id: dict[str, MessageResult | MalformedEvent] = {
        record.message_id: result for (record, _), result in zip(readable, results, strict=True)
    }
    for record, events in zip(records, parsed, strict=True):
        if isinstance(events, MalformedEvent):
            by_id[record.message_id] = events
    unstarted = [
        record for (record, _), result in zip(readable, results, strict=True) if not result.started
    ]
    sent_back = _send_back(unstarted, requeuing)
    moved |= sent_back

    def record_handler(record: SQSRecord) -> list[IngestOutcome]:
        if record.message_id in moved:
            return []  # its copy is in a queue, with no receive counted
        result = by_id[record.message_id]
        if isinstance(result, MalformedEvent):
            raise result
        if not result.started:
            raise NotStarted(gate.handed_back.get(record.message_id, "handed back unstarted"))
        return _report(result)

    # Partial responses even when every record failed: SQS retries just those,
    # and failures stay visible per message instead of as one invocation error.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event,
        record_handler=record_handler,
        processor=processor,
        context=context,
    )
    if gate.handed_back:
        logger.warning(
            "not enough time left for another image; messages handed back unstarted",
            handed_back=len(gate.handed_back),
            sent_again=len(sent_back),
            remaining_seconds=gate.remaining_at_stop,
            seconds_per_image=seconds_per_image,
        )
        metrics.add_metric(
            name="MessagesHandedBack", unit=MetricUnit.Count, value=len(gate.handed_back)
        )
    return dict(response)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_batch(
        event,
        context,
        current_service(),
        seconds_per_image=seconds_per_image(load_settings(IngestSettings)),
        requeuing=default_requeuing(),
    )
