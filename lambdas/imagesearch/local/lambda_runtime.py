"""Just enough of the Lambda runtime to invoke the real handlers in-process."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

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
