"""What the Lambda service does around our handlers, for tests: a context object
and the SQS event source poller (receive, invoke, delete successes, retry failures)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


def drain_queue(
    sqs: Any,
    queue_url: str,
    handler: Callable[[dict[str, Any], Any], dict[str, Any]],
    *,
    batch_size: int = 10,
    max_invocations: int = 2_000,
) -> DrainStats:
    """Feed the queue to ``handler`` like the event source mapping until it is empty.

    Failed messages are made visible again at once (instead of after the visibility
    timeout) so retries happen without waiting; the queue's redrive policy still
    moves a message to the DLQ after maxReceiveCount receives.
    """
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    stats = DrainStats()
    while stats.invocations < max_invocations:
        received = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=batch_size,
            AttributeNames=["All"],
            VisibilityTimeout=30,
        ).get("Messages", [])
        if not received:
            return stats
        response = handler(sqs_event(received, queue_arn), _ingest_context())
        stats.invocations += 1
        stats.messages += len(received)
        failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        stats.failures += len(failed)
        for message in received:
            if message["MessageId"] in failed:
                sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    raise AssertionError(f"queue not drained after {max_invocations} invocations")
