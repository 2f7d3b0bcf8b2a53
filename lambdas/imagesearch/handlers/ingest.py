"""Ingest Lambda: SQS batch of S3 notifications -> IngestService, partial batch failures.

Thin: parse the batch, call the service per object event, log and count the outcome.
Transient and configuration errors fail only their own message (retried by SQS, DLQ
after five receives); everything else ends as a visible record state. A message is
only started while the invocation has the time one image may need; the others are
handed back unstarted, so one hung model call cannot time out the whole batch.
"""

from __future__ import annotations

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
from imagesearch.ingest import IngestOutcome, IngestService
from imagesearch.resources import METRIC_CONFIGURATION_ERRORS, METRICS_NAMESPACE
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
    backoff = sum(min(2.0 ** (n - 1), _SDK_MAX_BACKOFF_SECONDS) for n in range(1, attempts))
    return calls + backoff + IMAGE_WORK_SECONDS


class NotStarted(Exception):
    """Too little time was left in the invocation to start this message."""


class _Clock(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


class _StartGate:
    """Lets a message start only while the invocation has ``need`` seconds left. The
    first one always starts. When the whole invocation is shorter than ``need`` (local
    mode's defaults), no wait could help: every message starts, as without the gate,
    rather than all but one being handed back again and again."""

    def __init__(self, context: Any, need: float | None) -> None:
        clock = context if hasattr(context, "get_remaining_time_in_millis") else None
        self._clock: _Clock | None = clock if need is not None else None
        self._need = need or 0.0
        self._started = 0
        self.handed_back = 0
        self.remaining_at_stop: float | None = None

    def admit(self, record: SQSRecord) -> None:
        if self._clock is not None:
            remaining = self._clock.get_remaining_time_in_millis() / 1000
            if not self._started and remaining < self._need:
                self._clock = None  # the function timeout cannot fit one slow image anyway
            elif self._started and remaining < self._need:
                self.handed_back += 1
                self.remaining_at_stop = remaining
                raise NotStarted(
                    f"{remaining:.1f} s left, one image may need {self._need:.0f} s: "
                    f"message {record.message_id} handed back unstarted"
                )
        self._started += 1


def configure(service: IngestService | None) -> None:
    """Use ``service`` from now on (local mode, tests); None returns to the default."""
    global _configured
    _configured = service
    default_service.cache_clear()


_configured: IngestService | None = None


def current_service() -> IngestService:
    return _configured if _configured is not None else default_service()


def process_record(record: SQSRecord, service: IngestService) -> list[IngestOutcome]:
    try:
        events = parse_message_body(record.body)
    except MalformedEvent as error:
        # Never dropped: it fails until SQS parks it in the DLQ, where the alarm sees it.
        logger.error(
            "malformed message; it will end in the DLQ",
            message_id=record.message_id,
            error=str(error),
        )
        raise
    return [_process_event(event, service) for event in events]


def _process_event(event: ObjectEvent, service: IngestService) -> IngestOutcome:
    try:
        outcome = service.handle(event)
    except EmbedderConfigurationError as error:
        # An operator must act (model access, region, permissions): say so loudly.
        logger.error("embedding model misconfigured", key=event.key, error=str(error))
        metrics.add_metric(name=METRIC_CONFIGURATION_ERRORS, unit=MetricUnit.Count, value=1)
        raise
    except TransientEmbeddingError as error:
        logger.warning(
            "transient model error; message will be retried",
            key=event.key,
            error=str(error),
            throttled=error.throttled,
        )
        metrics.add_metric(name="TransientModelErrors", unit=MetricUnit.Count, value=1)
        raise
    except Exception:
        logger.exception("ingest failed; message will be retried", key=event.key)
        raise
    log = logger.warning if outcome.action == "rejected" else logger.info
    log(
        f"{outcome.action} {outcome.key}",
        action=outcome.action,
        key=outcome.key,
        image_id=outcome.image_id,
        reason=outcome.reason,
    )
    if outcome.action in _OUTCOME_METRICS:
        metrics.add_metric(name=_OUTCOME_METRICS[outcome.action], unit=MetricUnit.Count, value=1)
    return outcome


def handle_batch(
    event: dict[str, Any],
    context: Any,
    service: IngestService,
    *,
    seconds_per_image: float | None = None,
) -> dict[str, Any]:
    """Process the batch in order; with ``seconds_per_image``, a message starts only
    while the context has that much time left, and the rest are reported as batch item
    failures without being touched (SQS redelivers just those)."""
    gate = _StartGate(context, seconds_per_image)

    def record_handler(record: SQSRecord) -> list[IngestOutcome]:
        gate.admit(record)
        return process_record(record, service)

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
            handed_back=gate.handed_back,
            remaining_seconds=gate.remaining_at_stop,
            seconds_per_image=seconds_per_image,
        )
        metrics.add_metric(name="MessagesHandedBack", unit=MetricUnit.Count, value=gate.handed_back)
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
    )
