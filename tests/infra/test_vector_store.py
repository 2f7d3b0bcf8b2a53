"""The scale tier in the template (``-c vectorStore=s3vectors``): vector bucket and index,
the functions' settings, exact IAM on the index, outputs, cdk-nag and cfn-lint; and the
default (``dynamodb``) without any of it."""

from __future__ import annotations

from typing import Any

import pytest

from imagesearch import resources as r
from tests.infra import test_compliance as compliance
from tests.infra.conftest import Synthesized
from tests.infra.test_iam import (
    XRAY,
    Arns,
    expand,
    image_count_item,
    ingest_grants,
    role_grants,
)


# One full synth of the scale tier (the slow part); the retained variant is checked on
# the construct alone.
@pytest.fixture(scope="module")
def s3v_app(synth: Any) -> Synthesized:
    return synth(vectorStore="s3vectors", retainData="false", embeddingDimension="256")


def _id(app: Synthesized, resource: Any) -> str:
    return str(app.stack.resolve(resource.logical_id))


def _index_arn(app: Synthesized) -> dict[str, Any]:
    assert app.stack.vectors is not None
    return {"Fn::GetAtt": [_id(app, app.stack.vectors.index), "IndexArn"]}


def test_vector_bucket_and_index(s3v_app: Synthesized) -> None:
    assert s3v_app.stack.vectors is not None
    (bucket,) = s3v_app.resources("AWS::S3Vectors::VectorBucket").values()
    assert bucket["Properties"]["EncryptionConfiguration"] == {"SseType": "AES256"}
    (index,) = s3v_app.resources("AWS::S3Vectors::Index").values()
    assert index["Properties"] == {
        "VectorBucketArn": {
            "Fn::GetAtt": [_id(s3v_app, s3v_app.stack.vectors.bucket), "VectorBucketArn"]
        },
        "IndexName": "amazon-titan-embed-image-v1-256",  # named from model and dimension
        "DataType": "float32",
        "Dimension": 256,
        "DistanceMetric": "cosine",
        "MetadataConfiguration": {"NonFilterableMetadataKeys": ["key"]},
    }
    # retainData=false
    assert bucket["DeletionPolicy"] == "Delete" and index["DeletionPolicy"] == "Delete"


def test_retained_by_default() -> None:
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from stacks.config import AppConfig
    from stacks.vectors import VectorStore

    stack = cdk.Stack(cdk.App())
    VectorStore(stack, "Vectors", config=AppConfig(vector_store="s3vectors"))
    template = Template.from_stack(stack).to_json()["Resources"]
    assert {resource["DeletionPolicy"] for resource in template.values()} == {"Retain"}
    assert {resource["UpdateReplacePolicy"] for resource in template.values()} == {"Retain"}


def test_both_functions_know_the_vector_index(s3v_app: Synthesized) -> None:
    stack = s3v_app.stack
    for handler in (stack.ingest.handler, stack.search.handler):
        function = s3v_app.json["Resources"][s3v_app.logical_id(handler.function)]
        env = function["Properties"]["Environment"]["Variables"]
        assert env[r.ENV_VECTOR_STORE] == "s3vectors"
        assert env[r.ENV_VECTOR_INDEX] == "amazon-titan-embed-image-v1-256"
        assert "Fn::Select" in env[r.ENV_VECTOR_BUCKET]


def test_outputs_name_the_vector_store(s3v_app: Synthesized, default_app: Synthesized) -> None:
    outputs = s3v_app.json["Outputs"]
    assert outputs[r.OUTPUT_VECTOR_STORE]["Value"] == "s3vectors"
    assert outputs[r.OUTPUT_VECTOR_INDEX]["Value"] == "amazon-titan-embed-image-v1-256"
    assert r.OUTPUT_VECTOR_BUCKET in outputs
    assert default_app.json["Outputs"][r.OUTPUT_VECTOR_STORE]["Value"] == "dynamodb"
    assert r.OUTPUT_VECTOR_BUCKET not in default_app.json["Outputs"]


def test_the_default_tier_has_no_vector_store(default_app: Synthesized) -> None:
    assert default_app.stack.vectors is None
    assert default_app.resources("AWS::S3Vectors::VectorBucket") == {}
    assert default_app.resources("AWS::S3Vectors::Index") == {}
    for handler in (default_app.stack.ingest.handler, default_app.stack.search.handler):
        grants = role_grants(default_app, default_app.logical_id(handler.role))
        assert not [action for action, _ in grants if action.startswith("s3vectors:")]


def test_ingest_writes_the_index_and_nothing_more(s3v_app: Synthesized) -> None:
    arns = Arns(s3v_app)
    ingest = s3v_app.stack.ingest.handler
    grants = role_grants(s3v_app, s3v_app.logical_id(ingest.role))
    assert grants == expand(
        *ingest_grants(arns, ingest),
        ({"s3vectors:PutVectors", "s3vectors:DeleteVectors"}, [_index_arn(s3v_app)]),
        # The vector sync reads back a batch's records (index/sync.py): without it every
        # upload is recorded indexed and no vector ever reaches the index.
        ("dynamodb:BatchGetItem", [arns.table]),
    )


def test_search_queries_and_reads_the_index_only(s3v_app: Synthesized) -> None:
    arns = Arns(s3v_app)
    search = s3v_app.stack.search.handler
    grants = role_grants(s3v_app, s3v_app.logical_id(search.role))
    assert grants == expand(
        ({"logs:CreateLogStream", "logs:PutLogEvents"}, [arns.log_group(search)]),
        (XRAY, ["*"]),
        (
            {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan"},
            [arns.table, arns.table_indexes()],
        ),
        ("s3:GetObject", [arns.objects(arns.prefix), arns.objects(r.THUMBNAIL_PREFIX)]),
        ({"s3:PutObject", "s3:DeleteObject"}, [arns.objects(arns.prefix)]),
        ("dynamodb:PutItem", [arns.table]),
        ("s3:DeleteObject", [arns.objects(r.THUMBNAIL_PREFIX)]),
        ("bedrock:InvokeModel", [arns.model]),
        (
            {"s3vectors:QueryVectors", "s3vectors:GetVectors", "s3vectors:DeleteVectors"},
            [_index_arn(s3v_app)],
        ),
    )


def test_maintenance_publishes_the_image_count_and_heals_switches_and_nothing_more(
    s3v_app: Synthesized,
) -> None:
    # The scale tier runs maintenance without a model switch too: GET /health's count
    # (decision 39): reads and writes that one item, counts with a Query on by_status;
    # and the switch's state read and the healing of an abandoned one (decision 42)
    arns = Arns(s3v_app)
    maintenance = s3v_app.stack.maintenance.handler
    grants = role_grants(s3v_app, s3v_app.logical_id(maintenance.role))
    assert grants == expand(
        ({"logs:CreateLogStream", "logs:PutLogEvents"}, [arns.log_group(maintenance)]),
        (XRAY, ["*"]),
        ({"dynamodb:GetItem", "dynamodb:PutItem"}, [image_count_item(arns)]),
        ("dynamodb:Query", [{"Fn::Join": ["", [arns.table, f"/index/{r.INDEX_BY_STATUS}"]]}]),
        (
            {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Scan"},
            [arns.table],
        ),
        ({"sqs:SendMessage", "sqs:GetQueueAttributes"}, [arns.queue]),
    )
    function = s3v_app.json["Resources"][s3v_app.logical_id(maintenance.function)]
    assert function["Properties"]["ReservedConcurrentExecutions"] == 1


def test_cdk_nag_and_cfn_lint_stay_clean(s3v_app: Synthesized) -> None:
    compliance.test_no_unsuppressed_nag_errors_or_warnings(s3v_app)
    compliance.test_nag_ran_and_every_finding_is_compliant_or_suppressed(s3v_app)
    compliance.test_every_suppression_is_scoped_and_explained(s3v_app)
    compliance.test_cfn_lint_finds_no_errors(s3v_app)


def test_the_scale_tier_has_no_embedded_index_alarms(s3v_app: Synthesized) -> None:
    # The maintenance function runs on both tiers (it publishes /health's count), but
    # the scale tier has no snapshot and no capacity metric
    assert s3v_app.stack.maintenance is not None
    assert set(s3v_app.stack.monitoring.alarms) == {
        "DeadLetterQueueNotEmpty",
        "IngestQueueBacklogOld",
        "IngestFunctionErrors",
        "EmbedderConfigurationErrors",
        "SearchFunctionErrors",
        "Api5xxErrors",
        "MaintenanceFunctionErrors",
    }
