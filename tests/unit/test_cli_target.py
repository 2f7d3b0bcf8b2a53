"""Finding the target: CloudFormation stack outputs, local mode's resources, AWS errors."""

from __future__ import annotations

import io
from typing import Any

import boto3
import pytest
from botocore.credentials import Credentials
from botocore.exceptions import NoRegionError, ProfileNotFound
from botocore.stub import Stubber

from imagesearch import resources as r
from imagesearch.cli.errors import CliError, from_aws
from imagesearch.cli.main import run
from imagesearch.cli.target import Context, read_stack
from tests.unit.test_cli_http import fake_http, verify_sigv4

REGION = "eu-central-1"
API_URL = "https://q1w2e3.execute-api.eu-central-1.amazonaws.com/prod/"
OUTPUTS = {
    r.OUTPUT_API_URL: API_URL,
    r.OUTPUT_BUCKET: "imagesearch-images-123",
    r.OUTPUT_UPLOAD_PREFIX: "uploads/",
    r.OUTPUT_TABLE: "ImageSearch-Images",
    r.OUTPUT_QUEUE_URL: "https://sqs.eu-central-1.amazonaws.com/123456789012/ingest",
    r.OUTPUT_DLQ_URL: "https://sqs.eu-central-1.amazonaws.com/123456789012/ingest-dlq",
    r.OUTPUT_MODEL_ID: "amazon.titan-embed-image-v1",
    r.OUTPUT_DIMENSION: "1024",
}


def describe_response(outputs: dict[str, str], status: str = "CREATE_COMPLETE") -> dict[str, Any]:
    return {
        "Stacks": [
            {
                "StackName": r.DEFAULT_STACK_NAME,
                "CreationTime": "2026-01-01T00:00:00Z",
                "StackStatus": status,
                "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()],
            }
        ]
    }


def cloudformation() -> Any:
    return boto3.client("cloudformation", region_name=REGION)


def test_stack_outputs_give_the_api_url_and_the_resources() -> None:
    client = cloudformation()
    with Stubber(client) as stub:
        stub.add_response(
            "describe_stacks", describe_response(OUTPUTS), {"StackName": "ImageSearch"}
        )
        stack = read_stack(client, "ImageSearch", REGION)
        stub.assert_no_pending_responses()

    assert stack.api_url == API_URL
    assert stack.region == REGION
    backend = stack.backend
    assert backend.bucket == "imagesearch-images-123"
    assert backend.upload_prefix == "uploads/"
    assert backend.table == "ImageSearch-Images"
    assert backend.queue_url.endswith("/ingest")
    assert backend.dlq_url.endswith("/ingest-dlq")
    assert backend.model_id == "amazon.titan-embed-image-v1"
    assert backend.dimension == 1024
    assert backend.endpoint_url is None


def test_missing_stack_names_the_stack_and_region_and_how_to_fix_it() -> None:
    client = cloudformation()
    with Stubber(client) as stub:
        stub.add_client_error(
            "describe_stacks",
            service_error_code="ValidationError",
            service_message="Stack with id Nope does not exist",
            http_status_code=400,
        )
        with pytest.raises(CliError) as raised:
            read_stack(client, "Nope", REGION)

    assert str(raised.value) == (
        "stack Nope not found in region eu-central-1: deploy it with make deploy or pass --url"
    )


def test_a_stack_without_outputs_says_which_are_missing() -> None:
    client = cloudformation()
    partial = {k: v for k, v in OUTPUTS.items() if k not in (r.OUTPUT_API_URL, r.OUTPUT_TABLE)}
    with Stubber(client) as stub:
        stub.add_response("describe_stacks", describe_response(partial, "ROLLBACK_COMPLETE"))
        with pytest.raises(CliError) as raised:
            read_stack(client, "ImageSearch", REGION)

    message = str(raised.value)
    assert "ROLLBACK_COMPLETE" in message
    assert f"{r.OUTPUT_API_URL}, {r.OUTPUT_TABLE}" in message


def test_access_denied_by_cloudformation_is_one_line_exit_1() -> None:
    client = cloudformation()
    err = io.StringIO()
    with Stubber(client) as stub:
        stub.add_client_error(
            "describe_stacks",
            service_error_code="AccessDenied",
            service_message="User: bob is not authorized to perform: cloudformation:DescribeStacks",
            http_status_code=403,
        )
        code = run(
            ["--region", REGION, "search", "red"], clients={"cloudformation": client}, stderr=err
        )

    assert code == 1
    assert err.getvalue() == (
        "imagesearch: error: access denied (DescribeStacks): User: bob is not authorized to"
        " perform: cloudformation:DescribeStacks\n"
    )


def test_cli_without_url_searches_the_stack_api_with_signed_requests() -> None:
    # Given a deployed stack whose outputs name its API
    client = cloudformation()
    session, transport = fake_http(lambda sent: (200, {"results": [], "count": 0}))
    out = io.StringIO()
    with Stubber(client) as stub:
        stub.add_response("describe_stacks", describe_response(OUTPUTS), {"StackName": "Other"})
        # When searching with --stack and --region after the subcommand
        code = run(
            ["search", "red", "--stack", "Other", "--region", REGION],
            clients={"cloudformation": client},
            http=session,
            stdout=out,
        )

    # Then the request went to the output's URL, signed for the stack's region
    assert code == 0
    (sent,) = transport.sent
    assert sent.url == API_URL + "search"
    assert sent.json() == {"top_k": 10, "text": "red"}
    verify_sigv4(sent, Credentials("testing", "testing"), REGION)
    assert out.getvalue().startswith("no results")


def test_stack_region_comes_from_the_profile_or_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")
    ctx = Context(url=None)
    assert ctx.aws_region() == "ap-southeast-2"
    assert Context(url=None, region="us-west-2").aws_region() == "us-west-2"


def test_no_region_anywhere_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION")
    err = io.StringIO()

    code = run(["status"], stderr=err)

    assert code == 1
    assert "no AWS region: pass --region or set AWS_REGION" in err.getvalue()


def test_no_credentials_before_any_aws_call(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    err = io.StringIO()

    code = run(["status"], stderr=err)

    assert (code, err.getvalue()) == (
        1,
        "imagesearch: error: no AWS credentials found: set AWS_PROFILE or run aws configure\n",
    )


def test_unknown_profile_is_a_clear_error() -> None:
    err = io.StringIO()

    code = run(["--profile", "nobody", "status"], stderr=err)

    assert code == 1
    assert err.getvalue().startswith("imagesearch: error: The config profile (nobody) could")
    assert err.getvalue().count("\n") == 1


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (NoRegionError(), "no AWS region"),
        (ProfileNotFound(profile="x"), "profile (x) could not be found"),
    ],
)
def test_botocore_errors_translate_to_readable_lines(error: Exception, expected: str) -> None:
    assert expected in str(from_aws(error))


# --- Local mode's resources --------------------------------------------------------------

LOCAL_RESOURCES = {
    "endpoint_url": "http://127.0.0.1:45678",
    "region": "us-east-1",
    "bucket": "imagesearch-local",
    "table": "imagesearch-local-images",
    "queue_url": "http://127.0.0.1:45678/123456789012/ingest",
    "dlq_url": "http://127.0.0.1:45678/123456789012/ingest-dlq",
    "upload_prefix": "uploads/",
}


def test_local_mode_resources_come_from_the_server_and_clients_use_its_moto(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A profile that does not exist must not matter for the local emulator.
    monkeypatch.setenv("AWS_PROFILE", "not-configured-here")

    def handler(sent: Any) -> Any:
        if sent.path == "/local/resources":
            return 200, LOCAL_RESOURCES
        if sent.path == "/health":
            return 200, {"status": "ok", "images": 3, "model_id": "m", "dimension": 256}
        return 404, {"message": "no route"}

    session, transport = fake_http(handler)
    ctx = Context(url="http://127.0.0.1:8000/", http=session)

    backend = ctx.backend()
    s3 = ctx.client("s3")

    assert backend.bucket == "imagesearch-local"
    assert backend.table == "imagesearch-local-images"
    assert backend.endpoint_url == "http://127.0.0.1:45678"
    assert (backend.model_id, backend.dimension) == ("m", 256)
    assert s3.meta.endpoint_url == "http://127.0.0.1:45678"
    assert s3.meta.region_name == "us-east-1"
    # Real credentials never go to the local emulator.
    assert s3._request_signer._credentials.access_key == "local"
    assert [sent.path for sent in transport.sent] == ["/local/resources", "/health"]
    assert all("Authorization" not in sent.headers for sent in transport.sent)


def test_a_url_that_is_not_local_mode_cannot_backfill() -> None:
    session, _ = fake_http(lambda sent: (404, {"message": "no route for GET /local/resources"}))
    err = io.StringIO()

    code = run(["--url", "http://localhost:9000", "backfill"], http=session, stderr=err)

    assert code == 1
    assert "has no /local/resources" in err.getvalue()
