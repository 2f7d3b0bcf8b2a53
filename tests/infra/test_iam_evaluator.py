"""The IAM conformance machinery itself: calls recorded and attributed to the right
function, turned into the IAM requests AWS authorises them by, and judged by
iam-simulate against the synthesized roles (refusing what the old policy refused)."""

from __future__ import annotations

import copy
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from imagesearch import resources as r
from tests.infra.conftest import Synthesized
from tests.support.iam import recorder
from tests.support.iam.conformance import evaluate
from tests.support.iam.requests import iam_requests

TABLE = "images-test"
BUCKET = "images-test-bucket"
ENV = {
    r.ENV_BUCKET: BUCKET,
    r.ENV_TABLE: TABLE,
    r.ENV_UPLOAD_PREFIX: "uploads/",
    r.ENV_MODEL_ID: r.CONTEXT_DEFAULTS["modelId"],
    r.ENV_EMBEDDING_DIMENSION: "1024",
}
S3V_ENV = {
    **ENV,
    r.ENV_VECTOR_STORE: "s3vectors",
    r.ENV_VECTOR_BUCKET: "vb",
    r.ENV_VECTOR_INDEX: "ix",
}


def call(function: str, service: str, operation: str, env: dict[str, str], **params: Any) -> dict:
    return {
        "function": function,
        "site": "test",
        "service": service,
        "operation": operation,
        "params": params,
        "region": "us-east-1",
        "env": env,
    }


@pytest.fixture(scope="module")
def s3v_template(synth: Any) -> dict[str, Any]:
    app: Synthesized = synth(vectorStore="s3vectors")
    return app.json


def results(calls: list[dict], template: dict[str, Any]) -> list[str]:
    report = evaluate(calls, lambda context: template)
    return [v.result for v in report.verdicts]


def without_statement(template: dict[str, Any], sid: str) -> dict[str, Any]:
    old = copy.deepcopy(template)
    for resource in old["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy":
            statements = resource["Properties"]["PolicyDocument"]["Statement"]
            statements[:] = [s for s in statements if s.get("Sid") != sid]
    return old


def test_the_vector_syncs_batch_read_is_allowed_now_and_was_refused_by_the_old_ingest_role(
    s3v_template: dict[str, Any],
) -> None:
    batch_read = call("ingest", "dynamodb", "BatchGetItem", S3V_ENV, RequestItems=[TABLE])
    assert results([batch_read], s3v_template) == ["Allowed"]
    # The role before this grant: GetItem/PutItem only (every upload indexed, no vector).
    assert results([batch_read], without_statement(s3v_template, "ReadRecordsForVectorSync")) == [
        "ImplicitlyDenied"
    ]


def test_maintenance_writes_only_the_published_image_count_item(
    s3v_template: dict[str, Any],
) -> None:
    # The recorder keeps a PutItem's key (never its attributes): dynamodb:LeadingKeys
    def put(image_id: str) -> dict:
        line = recorder._call_line(
            _Client("dynamodb"),
            "maintenance",
            "PutItem",
            {"TableName": TABLE, "Item": {"image_id": {"S": image_id}, "images": {"N": "3"}}},
        )
        return {**line, "env": S3V_ENV}

    count_item, image = put(r.IMAGE_COUNT_ID), put("0" * 32)
    assert count_item["params"] == {
        "TableName": TABLE,
        "Key": {"image_id": {"S": r.IMAGE_COUNT_ID}},
    }
    # The count's own statement lets it write that item only (the model switch's
    # statement, on every tier since decision 42, writes records and the state item)
    count_only = without_statement(s3v_template, "ModelSwitchCatalog")
    assert results([count_item, image], count_only) == ["Allowed", "ImplicitlyDenied"]


class _Client:
    """Just what ``recorder._call_line`` reads of a boto3 client."""

    def __init__(self, service: str) -> None:
        model = type("Model", (), {"signing_name": service, "endpoint_prefix": service})
        self.meta = type("Meta", (), {"service_model": model, "region_name": "us-east-1"})


def test_listing_is_allowed_only_under_the_upload_prefix(s3v_template: dict[str, Any]) -> None:
    inside = call("ingest", "s3", "ListObjectsV2", S3V_ENV, Bucket=BUCKET, Prefix="uploads/a.jpg")
    outside = call("ingest", "s3", "ListObjectsV2", S3V_ENV, Bucket=BUCKET, Prefix="thumbnails/")
    assert results([inside, outside], s3v_template) == ["Allowed", "ImplicitlyDenied"]


def test_a_versioned_read_is_its_own_action(s3v_template: dict[str, Any]) -> None:
    plain = call("ingest", "s3", "GetObject", S3V_ENV, Bucket=BUCKET, Key="uploads/a.jpg")
    versioned = call(
        "ingest", "s3", "GetObject", S3V_ENV, Bucket=BUCKET, Key="uploads/a.jpg", VersionId="v1"
    )
    assert [q.action for q in iam_requests(versioned)] == ["s3:GetObjectVersion"]
    assert results([plain, versioned], s3v_template) == ["Allowed", "ImplicitlyDenied"]


def test_another_tables_or_buckets_resources_are_refused(s3v_template: dict[str, Any]) -> None:
    other_table = call("search", "dynamodb", "GetItem", S3V_ENV, TableName="someone-elses")
    other_index = call(
        "search", "s3vectors", "QueryVectors", S3V_ENV, vectorBucketName="vb", indexName="other"
    )
    own_index = call(
        "search",
        "s3vectors",
        "QueryVectors",
        S3V_ENV,
        vectorBucketName="vb",
        indexName="ix",
        filter=True,
    )
    assert results([other_table, other_index, own_index], s3v_template) == [
        "ImplicitlyDenied",
        "ImplicitlyDenied",
        "Allowed",
        "Allowed",  # a filtered query also needs GetVectors on the index
    ]


def test_an_inference_profile_call_needs_the_profile_and_the_model_where_it_routes() -> None:
    needed = iam_requests(
        call("ingest", "bedrock", "InvokeModel", ENV, modelId="us.cohere.embed-v4:0")
    )
    resources = [q.resource for q in needed]
    assert resources[0] == (
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.cohere.embed-v4:0"
    )
    assert "arn:aws:bedrock:us-west-2::foundation-model/cohere.embed-v4:0" in resources


HANDLER_SOURCE = """
def handler(work):
    return work()
"""


def test_calls_are_attributed_to_the_handler_and_to_the_threads_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module whose file is imagesearch/handlers/ingest.py runs the calls, as the
    # Lambda runtime runs the real handler.
    scope: dict[str, Any] = {}
    filename = str(tmp_path / "imagesearch" / "handlers" / "ingest.py")
    exec(compile(HANDLER_SOURCE, filename, "exec"), scope)
    monkeypatch.setenv(recorder.ENV_RECORD_DIR, str(tmp_path / "calls"))
    monkeypatch.setenv(r.ENV_TABLE, TABLE)
    recorder.install()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)  # the test's own call: no function's

        def work() -> None:
            s3.list_objects_v2(Bucket=BUCKET, Prefix="uploads/")
            with ThreadPoolExecutor(1) as pool:
                pool.submit(s3.head_bucket, Bucket=BUCKET).result()
            thread = threading.Thread(target=s3.list_buckets)
            thread.start()
            thread.join()
            s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "uploads/x"})

        scope["handler"](work)
    calls = recorder.read_calls(tmp_path / "calls")
    assert [(c["function"], c["operation"]) for c in calls] == [
        ("ingest", "ListObjectsV2"),
        ("ingest", "HeadBucket"),
        ("ingest", "ListBuckets"),
        ("ingest", "GetObject"),
    ]
    assert calls[-1]["presigned"] is True
    assert all(c["env"][r.ENV_TABLE] == TABLE for c in calls)
    assert json.dumps(calls[0]["params"]) == json.dumps({"Bucket": BUCKET, "Prefix": "uploads/"})


@pytest.mark.parametrize(
    "url",
    [
        "https://sqs.us-east-1.amazonaws.com/123456789012/images-ingest",
        "http://127.0.0.1:5000/123456789012/images-ingest",  # moto
        "http://127.0.0.1:5000/s3cr3t/123456789012/images-ingest",  # local mode's guarded moto
    ],
)
def test_a_queue_url_names_its_queue_in_the_callers_region(url: str) -> None:
    sent = call("ingest", "sqs", "SendMessageBatch", ENV, QueueUrl=url)
    assert [(q.action, q.resource) for q in iam_requests(sent)] == [
        ("sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:images-ingest")
    ]
