"""The ingest worker: what Lambda's SQS event source mapping does, in one thread.

Long-polls the ingest queue, hands each batch to the real ingest handler as an
SQS event shaped like Lambda's, deletes the messages the handler did not list in
``batchItemFailures`` and leaves the failed ones to reappear after the visibility
timeout. Between polls it takes one message from the retry queue (the stack's second
mapping: the handler moves a message back from a failed receive there, decision 43).
moto's redrive policies park a message in the DLQ after five receives in all.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from imagesearch import resources as r
from imagesearch.events import MalformedEvent, ObjectEvent, parse_message_body
from imagesearch.local.lambda_runtime import FakeLambdaContext
from imagesearch.local.moto_env import MAX_RECEIVE_COUNT, LocalResources
from imagesearch.ports import Catalog
from imagesearch.records import image_id_for_key, utc_now_iso

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]

BATCH_SIZE = 10
WAIT_SECONDS = 1
INGEST_FUNCTION_NAME = "imagesearch-local-ingest"


def lambda_sqs_record(message: dict[str, Any], *, queue_arn: str, region: str) -> dict[str, Any]:
    """One ``Records[]`` entry of the SQS event Lambda builds from a received message."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": {
            name: _lambda_message_attribute(value)
            for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def _lambda_message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    # Lambda spells SQS message attributes in lower camel case, binary as base64.
    binary = value.get("BinaryValue")
    return {
        "stringValue": value.get("StringValue"),
        "binaryValue": base64.b64encode(binary).decode("ascii") if binary else None,
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": value.get("DataType", "String"),
    }


class IngestWorker:
    def __init__(
        self,
        *,
        handler: Handler,
        sqs: Any,
        catalog: Catalog,
        resources: LocalResources,
        after_batch: Callable[[], None] | None = None,
        after_states: Callable[[], None] | None = None,
    ) -> None:
        """``after_batch``: called once each batch is handled (local mode nudges the
        search index's refresher, so that what was indexed is searchable at once).
        ``after_states``: called once ``status_counts`` includes the batch (local mode
        publishes GET /health's count on the scale tier)."""
        self._handler = handler
        self._after_batch = after_batch
        self._after_states = after_states
        self._sqs = sqs
        self._catalog = catalog
        self._resources = resources
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-worker", daemon=True)
        self._lock = threading.Lock()
        self._batches = 0
        self._messages = 0
        self._failures = 0
        self._states: dict[str, str] = {}  # key -> indexed | rejected
        self._arns: dict[str, str] = {}  # queue URL -> ARN (the retry queue's, looked up once)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand (a receive waits at most a second), then return."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "batches": self._batches,
                "messages": self._messages,
                "failures": self._failures,
            }

    def known_states(self) -> dict[str, str]:
        """key -> status as last seen (kept in local mode's saved state)."""
        with self._lock:
            return dict(self._states)

    def restore_states(self, states: dict[str, str]) -> None:
        """The states saved by a previous run (before start)."""
        with self._lock:
            self._states.update(states)

    def status_counts(self) -> dict[str, int]:
        """Images by status, as the worker saw each key last.

        Exact in local mode, where the catalog starts empty and only ingest writes
        it; counting the table instead costs moto ~0.5 s per 1,000 images, and the
        page asks every few seconds.
        """
        with self._lock:
            states = list(self._states.values())
        shown = (r.STATUS_INDEXED, r.STATUS_REJECTED, r.STATUS_FAILED)
        return {status: states.count(status) for status in shown}

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poll(self._resources.queue_url, BATCH_SIZE, WAIT_SECONDS)
            # Like the stack's second mapping: the retry queue, one message at a time.
            self._poll(self._resources.retry_queue_url, 1, 0)

    def _poll(self, queue_url: str, batch_size: int, wait_seconds: int) -> None:
        try:
            response = self._sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=batch_size,
                WaitTimeSeconds=wait_seconds,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        except (BotoCoreError, ClientError) as error:
            if self._stop.is_set():
                return  # moto is going away with us
            logger.warning("could not poll the ingest queues: %s", error)
            self._stop.wait(1.0)
            return
        messages = response.get("Messages") or []
        if not messages:
            return
        try:
            self.process_batch(messages, queue_url=queue_url)
        except Exception:
            # The worker must outlive one bad batch: unacknowledged messages
            # come back after the visibility timeout.
            logger.exception("processing a batch failed; its messages will be retried")

    def _arn_of(self, queue_url: str) -> str:
        if queue_url == self._resources.queue_url:
            return self._resources.queue_arn
        if queue_url not in self._arns:
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=queue_url, AttributeNames=["QueueArn"]
            )
            self._arns[queue_url] = str(attributes["Attributes"]["QueueArn"])
        return self._arns[queue_url]

    def process_batch(
        self, messages: list[dict[str, Any]], *, queue_url: str | None = None
    ) -> set[str]:
        """Invoke the handler on ``messages`` received from ``queue_url`` (the ingest
        queue by default); returns the ids of the failed ones."""
        queue_url = queue_url or self._resources.queue_url
        started = utc_now_iso()
        event = {
            "Records": [
                lambda_sqs_record(
                    message,
                    queue_arn=self._arn_of(queue_url),
                    region=self._resources.region,
                )
                for message in messages
            ]
        }
        context = FakeLambdaContext(INGEST_FUNCTION_NAME, region=self._resources.region)
        all_ids = {message["MessageId"] for message in messages}
        try:
            response = self._handler(event, context)
            failed = {
                item["itemIdentifier"] for item in (response or {}).get("batchItemFailures", [])
            }
        except Exception:
            # Like Lambda: an invocation error returns the whole batch to the queue.
            logger.exception("the ingest handler failed; the batch will be retried")
            failed = all_ids
        done = [message for message in messages if message["MessageId"] not in failed]
        if self._after_batch is not None:
            self._after_batch()
        self._delete(done, queue_url)
        with self._lock:
            self._batches += 1
            self._messages += len(messages)
            self._failures += len(failed & all_ids)
        failures = [m for m in messages if m["MessageId"] in failed]
        if queue_url == self._resources.queue_url:
            # Back from a failed receive: the handler moved it to the retry queue unprocessed.
            moved = [m for m in done if _receives(m) > 1]
            for key in _keys(moved):
                logger.info("retrying %s alone (its last attempt failed)", key)
            done = [m for m in done if _receives(m) == 1]
            self._report(done, failures, started, earlier_receives=0)
        else:
            self._report(done, failures, started, earlier_receives=1)
        if self._after_states is not None:
            self._after_states()
        return failed & all_ids

    def _delete(self, messages: list[dict[str, Any]], queue_url: str) -> None:
        if not messages:
            return
        entries = [
            {"Id": str(number), "ReceiptHandle": message["ReceiptHandle"]}
            for number, message in enumerate(messages)
        ]
        try:
            result = self._sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
        except (BotoCoreError, ClientError) as error:
            logger.warning("could not delete processed messages (they will rerun): %s", error)
            return
        for failure in result.get("Failed", []):
            logger.warning("could not delete a processed message: %s", failure.get("Message"))

    def _report(
        self,
        done: list[dict[str, Any]],
        failed: list[dict[str, Any]],
        started: str,
        *,
        earlier_receives: int,
    ) -> None:
        """One line per file: the state the catalog now holds for its key.
        ``earlier_receives``: attempts made before this queue (one, for the retry queue)."""
        for key in _keys(done):
            logger.info(self._outcome(key, started))
        for message in failed:
            receives = _receives(message) + earlier_receives
            keys = _keys([message]) or ["(unreadable message)"]
            for key in keys:
                cause = self._failed(key)
                because = f": {cause}" if cause else ""
                if receives >= MAX_RECEIVE_COUNT:
                    logger.error(
                        "failed %s %d times: the message goes to the dead-letter queue%s",
                        key,
                        receives,
                        because,
                    )
                else:
                    logger.warning(
                        "failed %s (attempt %d of %d): will retry%s",
                        key,
                        receives,
                        MAX_RECEIVE_COUNT,
                        because,
                    )

    def _failed(self, key: str) -> str | None:
        """The cause ingest recorded for a failed key (counted as failed), if any."""
        if key.startswith("("):
            return None  # no key to look up
        try:
            record = self._catalog.get(image_id_for_key(key))
        except (BotoCoreError, ClientError) as error:
            return f"(state unknown: {error})"
        if record is None or record.status != r.STATUS_FAILED:
            return None
        with self._lock:
            self._states[key] = r.STATUS_FAILED
        return record.reason

    def _outcome(self, key: str, started: str) -> str:
        try:
            record = self._catalog.get(image_id_for_key(key))
        except (BotoCoreError, ClientError) as error:
            return f"processed {key} (state unknown: {error})"
        status = record.status if record is not None else None
        with self._lock:
            if status in (r.STATUS_INDEXED, r.STATUS_REJECTED, r.STATUS_FAILED):
                self._states[key] = status
            else:
                self._states.pop(key, None)
        if record is not None and status == r.STATUS_INDEXED:
            fresh = (record.indexed_at or "") >= started
            return f"indexed {key}" if fresh else f"unchanged {key} (already indexed)"
        if record is not None and status == r.STATUS_REJECTED:
            return f"rejected {key}: {record.reason or 'no reason given'}"
        return f"removed {key}"


def _receives(message: dict[str, Any]) -> int:
    return int((message.get("Attributes") or {}).get("ApproximateReceiveCount", "1"))


def _keys(messages: list[dict[str, Any]]) -> list[str]:
    """Object keys named by ``messages`` (none for test events), each once."""
    keys: dict[str, None] = {}
    for message in messages:
        try:
            events: list[ObjectEvent] = parse_message_body(message.get("Body", ""))
        except MalformedEvent:
            continue
        keys.update(dict.fromkeys(event.key for event in events))
    return list(keys)
