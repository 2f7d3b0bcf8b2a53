"""Moving ingest messages to a queue again, instead of failing them (decision 43).

A message that fails counts a receive: after five, SQS parks it in the dead-letter
queue. Two kinds of "failure" must not count: a message the time budget handed back
unstarted, and a message that only shared a batch with one that crashed the whole
invocation. The ingest handler moves such messages: it sends a copy (same body) to a
queue, then deletes the original, and reports it processed. The copy starts with a
receive count of zero. Ingest is idempotent and ordered by S3 sequencers, so a copy
delivered out of order, or twice, changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger(__name__)

# How many times a message was handed back unstarted (a String attribute holding a number).
HAND_BACKS_ATTRIBUTE = "imagesearch-hand-backs"
_SQS_BATCH = 10  # entries per SendMessageBatch / DeleteMessageBatch


@dataclass(frozen=True)
class Move:
    """One received message to move: sent again, then its original deleted."""

    message_id: str
    receipt_handle: str
    body: str
    hand_backs: int | None = None  # carried as HAND_BACKS_ATTRIBUTE when set


class MessageMover(Protocol):
    def move(self, messages: Sequence[Move], *, source: str, destination: str) -> dict[str, str]:
        """Send ``messages`` to the ``destination`` queue, then delete their originals
        from ``source``; returns message id -> why, for those that could not be sent
        (still in ``source``: the caller fails them as before)."""
        ...


class SqsMessageMover:
    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("sqs")
        return self._client

    def move(self, messages: Sequence[Move], *, source: str, destination: str) -> dict[str, str]:
        unsent: dict[str, str] = {}
        for start in range(0, len(messages), _SQS_BATCH):
            group = messages[start : start + _SQS_BATCH]
            sent, refused = self._send(group, destination)
            unsent.update(refused)
            # Deleted by us, not only by the event source mapping after the response:
            # should the invocation crash later, the original must not come back.
            self._delete(sent, source)
        return unsent

    def _send(self, group: Sequence[Move], destination: str) -> tuple[list[Move], dict[str, str]]:
        entries = [_entry(str(number), message) for number, message in enumerate(group)]
        try:
            response = self.client.send_message_batch(QueueUrl=destination, Entries=entries)
        except (BotoCoreError, ClientError) as error:
            return [], {message.message_id: f"not re-sent: {error}" for message in group}
        refused = {
            group[int(entry["Id"])].message_id: f"not re-sent: {entry.get('Code')}"
            for entry in response.get("Failed") or []
        }
        return [message for message in group if message.message_id not in refused], refused

    def _delete(self, sent: Sequence[Move], source: str) -> None:
        if not sent:
            return
        entries = [
            {"Id": str(number), "ReceiptHandle": message.receipt_handle}
            for number, message in enumerate(sent)
        ]
        try:
            response = self.client.delete_message_batch(QueueUrl=source, Entries=entries)
        except (BotoCoreError, ClientError) as error:
            # The event source mapping deletes them after the response anyway; only a
            # crash before that brings an original back: a duplicate, which ingest absorbs.
            logger.warning("could not delete %d moved messages: %s", len(sent), error)
            return
        for entry in response.get("Failed") or []:
            logger.warning("could not delete a moved message: %s", entry.get("Code"))


def _entry(entry_id: str, message: Move) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": entry_id, "MessageBody": message.body}
    if message.hand_backs is not None:
        entry["MessageAttributes"] = {
            HAND_BACKS_ATTRIBUTE: {"DataType": "Number", "StringValue": str(message.hand_backs)}
        }
    return entry
