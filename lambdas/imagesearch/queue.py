"""The ingest queue as the model switch's re-embed path (``switch.Reembed``): backfill
messages shaped like S3 notifications, so the one ingest path handles them and the
queue's ``ingestMaxConcurrency`` sets their pace."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from imagesearch.events import make_backfill_message

SQS_BATCH = 10  # entries per SendMessageBatch
PENDING_ATTRIBUTES = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")


class QueueSendFailed(RuntimeError):
    """SQS refused some messages of a batch."""


class SqsReembed:
    def __init__(self, queue_url: str, bucket: str, *, client: Any | None = None) -> None:
        self._queue_url = queue_url
        self._bucket = bucket
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("sqs")
        return self._client

    def send(self, keys: Sequence[str]) -> None:
        """One forced backfill message per key (forced: a record of the other model is
        re-embedded, not skipped)."""
        for start in range(0, len(keys), SQS_BATCH):
            entries = [
                {"Id": str(n), "MessageBody": make_backfill_message(self._bucket, key, force=True)}
                for n, key in enumerate(keys[start : start + SQS_BATCH])
            ]
            response = self.client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
            failed = response.get("Failed") or []
            if failed:
                codes = sorted({str(entry.get("Code")) for entry in failed})
                raise QueueSendFailed(f"{len(failed)} re-embed messages refused: {codes}")

    def pending(self) -> int:
        """Messages waiting and in flight (received, not yet deleted): both are work
        ingest has not finished, and a message in flight comes back if it fails."""
        attributes = self.client.get_queue_attributes(
            QueueUrl=self._queue_url, AttributeNames=list(PENDING_ATTRIBUTES)
        ).get("Attributes", {})
        return sum(int(attributes.get(name, 0)) for name in PENDING_ATTRIBUTES)
