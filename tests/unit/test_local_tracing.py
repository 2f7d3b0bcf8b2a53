"""Local mode's handlers trace nothing, without loading the X-Ray SDK (whose recorder
builds a botocore session and an X-Ray client at import outside Lambda)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from imagesearch import resources as r

SCRIPT = textwrap.dedent(
    """
    import sys
    from imagesearch.local.lambda_runtime import NoTracing, trace_nothing

    trace_nothing()
    from imagesearch.handlers import api, ingest

    assert isinstance(api.tracer.provider, NoTracing), api.tracer.provider
    assert isinstance(ingest.tracer.provider, NoTracing), ingest.tracer.provider

    @ingest.tracer.capture_lambda_handler(capture_response=False)
    def answer(event, context):
        if event == "fail":
            raise ValueError("the handler's own error")
        return {"echo": event}

    assert answer("hello", None) == {"echo": "hello"}
    try:
        answer("fail", None)
    except ValueError as error:
        assert str(error) == "the handler's own error"
    else:
        raise AssertionError("the error was swallowed")
    print("xray" if "aws_xray_sdk.core" in sys.modules else "no xray")
    """
)


def test_the_handlers_trace_nothing_and_leave_the_xray_sdk_unloaded() -> None:
    env = {
        **os.environ,
        r.ENV_BUCKET: "bucket",
        r.ENV_TABLE: "table",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "no xray"
