"""The ingest handler's time budget (issue 9.2): a message starts only while the
invocation has the time one image may need; the rest go back to the queue unstarted."""

from __future__ import annotations

import json
from typing import Any

import pytest

from imagesearch.events import ObjectEvent
from imagesearch.handlers import ingest as handler
from imagesearch.ingest import IngestOutcome, MessageResult
from imagesearch.settings import IngestSettings
from tests.support.lambda_runtime import sqs_event
from tests.support.s3events import s3_event_body, sqs_message

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:ingest"


class FakeClock:
    """A Lambda context whose remaining time only moves when the fake service works."""

    def __init__(self, timeout_seconds: float) -> None:
        self.remaining = timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self.remaining * 1000))


class SlowService:
    """Stands in for IngestService: each image takes ``seconds[key]`` of the clock."""

    def __init__(self, clock: FakeClock, seconds: dict[str, float]) -> None:
        self.clock = clock
        self.seconds = seconds
        self.started: list[str] = []

    def handle_batch(
        self, messages: list[list[ObjectEvent]], gate: handler._StartGate
    ) -> list[MessageResult]:
        results = []
        for position, events in enumerate(messages):
            if not gate.admit(position):
                results.append(MessageResult([], started=False))
                continue
            outcomes = []
            for event in events:
                self.started.append(event.key)
                self.clock.remaining -= self.seconds.get(event.key, 1.0)
                outcomes.append(IngestOutcome("indexed", event.key, "id-" + event.key))
            results.append(MessageResult(outcomes))
        return results


def batch(keys: list[str]) -> dict[str, Any]:
    messages = [
        sqs_message(s3_event_body("created", "bucket", key, sequencer=f"{i:04d}"), f"m-{i}")
        for i, key in enumerate(keys)
    ]
    return sqs_event(messages, QUEUE_ARN)


def failed_ids(response: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


KEYS = [f"uploads/{i}.jpg" for i in range(10)]


def test_one_image_needs_every_bedrock_attempt_its_backoff_and_the_work() -> None:
    # The stack's ingest settings: 3 attempts x (3 s connect + 20 s read), backoff 1 + 2 s
    settings = IngestSettings(
        bucket="bucket",
        table="table",
        bedrock_connect_timeout=3,
        bedrock_read_timeout=20,
        bedrock_max_attempts=3,
    )
    expected = 3 * (3 + 20) + (1 + 2) + handler.IMAGE_WORK_SECONDS
    assert handler.seconds_per_image(settings) == expected


def test_messages_not_started_in_time_are_handed_back_unstarted() -> None:
    # Given a batch of ten where the third image hangs in the model for 69 s
    need = 92.0
    clock = FakeClock(120.0)
    service = SlowService(clock, {KEYS[2]: 69.0})
    # When the handler processes it within a 120 s invocation
    response = handler.handle_batch(batch(KEYS), clock, service, seconds_per_image=need)  # type: ignore[arg-type]
    # Then the images before the slow one and the slow one itself ran
    assert service.started == KEYS[:3]
    # And every later message went back to the queue without being started
    assert failed_ids(response) == [f"m-{i}" for i in range(3, 10)]
    assert clock.remaining > 0  # the invocation never ran out of time


def test_healthy_batches_run_whole() -> None:
    clock = FakeClock(120.0)
    service = SlowService(clock, {})
    response = handler.handle_batch(batch(KEYS), clock, service, seconds_per_image=92.0)  # type: ignore[arg-type]
    assert service.started == KEYS
    assert failed_ids(response) == []


def test_an_invocation_shorter_than_one_slow_image_starts_every_message() -> None:
    # Given an invocation that could not fit one slow image even when it starts (local
    # mode's 60 s with the SDK's default timeouts): handing back would only repeat itself
    clock = FakeClock(60.0)
    service = SlowService(clock, {KEYS[0]: 20.0})
    response = handler.handle_batch(batch(KEYS[:3]), clock, service, seconds_per_image=92.0)  # type: ignore[arg-type]
    # Then every message runs, as without the time budget
    assert service.started == KEYS[:3]
    assert failed_ids(response) == []


@pytest.mark.parametrize("context", [None, object()])
def test_without_a_clock_or_a_need_every_message_starts(context: Any) -> None:
    service = SlowService(FakeClock(1.0), {})
    response = handler.handle_batch(batch(KEYS[:4]), context, service, seconds_per_image=92.0)  # type: ignore[arg-type]
    assert service.started == KEYS[:4]
    assert failed_ids(response) == []
    clock = FakeClock(1.0)
    service = SlowService(clock, {})
    handler.handle_batch(batch(KEYS[:4]), clock, service)  # type: ignore[arg-type]
    assert service.started == KEYS[:4]


def test_handing_back_is_logged_and_counted(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(120.0)
    service = SlowService(clock, {KEYS[0]: 60.0})
    handler.metrics.clear_metrics()

    @handler.metrics.log_metrics
    def invoke(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return handler.handle_batch(event, context, service, seconds_per_image=92.0)  # type: ignore[arg-type]

    response = invoke(batch(KEYS[:4]), clock)
    assert failed_ids(response) == ["m-1", "m-2", "m-3"]
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert [r.getMessage() for r in warnings] == [
        "not enough time left for another image; messages handed back unstarted"
    ]
    assert getattr(warnings[0], "handed_back", None) == 3
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    assert [entry.get("MessagesHandedBack") for entry in emitted] in ([3.0], [[3.0]])
