"""Just enough of the Lambda runtime to invoke the real handlers in-process."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

from imagesearch.local.moto_env import DEFAULT_REGION

_ACCOUNT = "123456789012"  # moto's default account


@dataclass
class FakeLambdaContext:
    """The context attributes Powertools (``inject_lambda_context``, batch
    processing) reads; a fresh one per invocation, like Lambda."""

    function_name: str
    memory_limit_in_mb: int = 1024
    timeout_seconds: float = 60.0
    region: str = DEFAULT_REGION
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _deadline: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{_ACCOUNT}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def trace_nothing() -> None:
    """Give the handlers' Powertools ``Tracer`` a provider that records nothing.

    Tracing is off in local mode (``POWERTOOLS_TRACE_DISABLED``), yet a ``Tracer``
    without a provider imports the X-Ray SDK, whose recorder builds a botocore session
    and an X-Ray client outside Lambda: a third of a second of every start. Tracer
    instances share their configuration, so one made first with this provider serves
    the handlers' module-level ``Tracer()`` too (call before importing them).
    """
    Tracer(provider=NoTracing(), disabled=True, auto_patch=False)


class NoSegment(BaseSegment):
    """A trace segment that records nothing."""

    def close(self, end_time: int | None = None) -> None:
        pass

    def add_subsegment(self, subsegment: Any) -> None:
        pass

    def remove_subsegment(self, subsegment: Any) -> None:
        pass

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        pass


class NoTracing(BaseProvider):
    """A Powertools tracing provider that records nothing (local mode)."""

    @contextmanager
    def in_subsegment(self, name: Any = None, **kwargs: Any) -> Iterator[NoSegment]:
        yield NoSegment()

    @asynccontextmanager
    async def in_subsegment_async(
        self, name: Any = None, **kwargs: Any
    ) -> AsyncIterator[NoSegment]:
        yield NoSegment()

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def patch(self, modules: Any) -> None:
        pass

    def patch_all(self) -> None:
        pass
