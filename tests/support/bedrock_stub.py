"""A real bedrock-runtime client whose InvokeModel calls a botocore Stubber answers."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.response import StreamingBody
from botocore.stub import Stubber


class StubbedBedrock:
    """Queue answers with ``respond``/``fail``; ``sent`` holds each request body sent."""

    def __init__(self, region: str = "us-east-1") -> None:
        self.client = boto3.client("bedrock-runtime", region_name=region)
        self.stubber = Stubber(self.client)
        self.sent: list[dict[str, Any]] = []
        self.client.meta.events.register(
            "provide-client-params.bedrock-runtime.InvokeModel",
            lambda params, **_: self.sent.append(json.loads(params["body"])),
        )

    def respond(self, document: dict[str, Any]) -> None:
        raw = json.dumps(document).encode()
        self.stubber.add_response(
            "invoke_model",
            {"body": StreamingBody(io.BytesIO(raw), len(raw)), "contentType": "application/json"},
        )

    def fail(self, code: str, message: str, status: int = 400) -> None:
        self.stubber.add_client_error(
            "invoke_model",
            service_error_code=code,
            service_message=message,
            http_status_code=status,
        )

    def refuse(self, message: str) -> None:
        """A ValidationException with ``message``: Bedrock's answer to most 400s."""
        self.fail("ValidationException", message)


@contextmanager
def stubbed_bedrock(stub: StubbedBedrock) -> Iterator[StubbedBedrock]:
    """Active for the block; every queued answer must have been used by its end."""
    with stub.stubber:
        yield stub
    stub.stubber.assert_no_pending_responses()
