"""Ingest Lambda: SQS batch of S3 notifications -> IngestService, partial batch failures.

Thin: parse the batch, call the service per object event, log and count the outcome.
Transient and configuration errors fail only their own message (retried by SQS, DLQ
after five receives); everything else ends as a visible record state.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

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
from imagesearch.settings import IngestSettings, load_settings

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


def handle_batch(event: dict[str, Any], context: Any, service: IngestService) -> dict[str, Any]:
    # Partial responses even when every record failed: SQS retries just those,
    # and failures stay visible per message instead of as one invocation error.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response = process_partial_response(
        event=event,
        record_handler=lambda record: process_record(record, service),
        processor=processor,
        context=context,
    )
    return dict(response)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_batch(event, context, default_service())
