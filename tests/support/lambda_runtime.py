"""What the Lambda service does around our handlers, for tests: a context object
and the SQS event source poller (receive, invoke, delete successes, retry failures)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeLambdaContext:
    function_name: str = "imagesearch-test"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:imagesearch-test"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/imagesearch-test"
    log_stream_name: str = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """An SQS event exactly as the Lambda event source mapping builds it."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": {
                    "ApproximateReceiveCount": message.get("Attributes", {}).get(
                        "ApproximateReceiveCount", "1"
                    ),
                    "SentTimestamp": message.get("Attributes", {}).get("SentTimestamp", "0"),
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "0",
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
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
        response = handler(sqs_event(received, queue_arn), FakeLambdaContext())
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
