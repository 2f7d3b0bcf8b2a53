"""What the Lambda service does around our handlers, for tests: a context object
and the SQS event source poller (receive, invoke, delete successes, retry failures)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from imagesearch import resources as r
from imagesearch.local.lambda_runtime import FakeLambdaContext as LocalLambdaContext
from imagesearch.local.worker import lambda_sqs_record


def FakeLambdaContext() -> LocalLambdaContext:
    return LocalLambdaContext(function_name="imagesearch-test")


def _ingest_context() -> LocalLambdaContext:
    """A context with the deployed ingest function's timeout: the handler starts a
    message only while the time one slow image needs is left (docs/decisions.md)."""
    from stacks.ingest import TIMEOUT

    return LocalLambdaContext(
        function_name="imagesearch-test-ingest", timeout_seconds=TIMEOUT.to_seconds()
    )


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """An SQS event exactly as the Lambda event source mapping (and local mode) builds it."""
    return {
        "Records": [
            lambda_sqs_record(message, queue_arn=queue_arn, region="us-east-1")
            for message in messages
        ]
    }


@dataclass
class DrainStats:
    invocations: int = 0
    messages: int = 0
    failures: int = 0
    crashes: int = 0


def drain_queue(
    sqs: Any,
    queue_url: str,
    handler: Callable[[dict[str, Any], Any], dict[str, Any]],
    *,
    batch_size: int = 10,
    max_invocations: int = 2_000,
    retry_queue_url: str | None = None,
    crashes: tuple[type[BaseException], ...] = (),
) -> DrainStats:
    """Feed the queue to ``handler`` like the event source mapping until it is empty,
    and the retry queue (``retry_queue_url``, by default the function environment's)
    like its own mapping, one message per invocation.

    Failed messages are made visible again at once (instead of after the visibility
    timeout) so retries happen without waiting; the queues' redrive policies still
    move a message to the DLQ after maxReceiveCount receives. An exception of
    ``crashes`` is an invocation error (the process died): the whole batch comes back.
    """
    if retry_queue_url is None:
        retry_queue_url = os.environ.get(r.ENV_INGEST_RETRY_QUEUE_URL)
    sources = [(queue_url, batch_size)]
    if retry_queue_url:
        sources.append((retry_queue_url, 1))
    stats = DrainStats()
    while stats.invocations < max_invocations:
        for url, size in sources:
            received = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=size,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                VisibilityTimeout=30,
            ).get("Messages", [])
            if received:
                _invoke(sqs, url, received, handler, stats, crashes)
                break
        else:
            return stats
    raise AssertionError(f"queue not drained after {max_invocations} invocations")


def _invoke(
    sqs: Any,
    queue_url: str,
    received: list[dict[str, Any]],
    handler: Callable[[dict[str, Any], Any], dict[str, Any]],
    stats: DrainStats,
    crashes: tuple[type[BaseException], ...],
) -> None:
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    stats.invocations += 1
    stats.messages += len(received)
    try:
        response = handler(sqs_event(received, queue_arn), _ingest_context())
    except crashes:
        stats.crashes += 1
        response = {"batchItemFailures": [{"itemIdentifier": m["MessageId"]} for m in received]}
    failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
    stats.failures += len(failed)
    for message in received:
        if message["MessageId"] in failed:
            sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        else:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
