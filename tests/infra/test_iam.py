"""Least privilege, read from the template: every grant of both functions, exactly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from imagesearch import resources as r
from tests.infra.conftest import Synthesized

XRAY = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _key(resource: Any) -> str:
    return json.dumps(resource, sort_keys=True)


def role_grants(app: Synthesized, role_id: str) -> set[tuple[str, str]]:
    """(action, resource) pairs allowed by every policy attached to the role."""
    role = app.json["Resources"][role_id]
    assert "ManagedPolicyArns" not in role["Properties"], "no managed policies on function roles"
    assert "Policies" not in role["Properties"]
    grants: set[tuple[str, str]] = set()
    attached = [
        policy
        for policy in app.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
    ]
    assert attached, f"no policy attached to {role_id}"
    for policy in attached:
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            assert "NotAction" not in statement and "NotResource" not in statement
            condition = statement.get("Condition")
            for action in _as_list(statement["Action"]):
                for resource in _as_list(statement["Resource"]):
                    grants.add((action, _key(When(resource, condition) if condition else resource)))
    return grants


class When(dict[str, Any]):
    """A resource granted only under a condition (how ``role_grants`` reports it)."""

    def __init__(self, resource: Any, condition: dict[str, Any]) -> None:
        super().__init__(resource=resource, condition=condition)


def expand(*entries: tuple[set[str] | str, list[Any]]) -> set[tuple[str, str]]:
    grants = set()
    for actions, resources in entries:
        for action in {actions} if isinstance(actions, str) else actions:
            for resource in resources:
                grants.add((action, _key(resource)))
    return grants


class Arns:
    """The ARN expressions the stack is expected to grant on, as CloudFormation renders them."""

    def __init__(self, app: Synthesized) -> None:
        stack = app.stack
        self.app = app
        self.bucket = {"Fn::GetAtt": [app.logical_id(stack.storage.bucket), "Arn"]}
        self.table = {"Fn::GetAtt": [app.logical_id(stack.storage.table), "Arn"]}
        self.queue = {"Fn::GetAtt": [app.logical_id(stack.ingest.queue), "Arn"]}
        self.retry_queue = {"Fn::GetAtt": [app.logical_id(stack.ingest.retry_queue), "Arn"]}
        self.prefix = stack.config.upload_prefix
        self.model = {
            "Fn::Join": [
                "",
                [
                    "arn:",
                    {"Ref": "AWS::Partition"},
                    ":bedrock:",
                    {"Ref": "AWS::Region"},
                    f"::foundation-model/{stack.config.model_id}",
                ],
            ]
        }

    def objects(self, prefix: str) -> dict[str, Any]:
        return {"Fn::Join": ["", [self.bucket, f"/{prefix}*"]]}

    def table_indexes(self) -> dict[str, Any]:
        return {"Fn::Join": ["", [self.table, "/index/*"]]}

    def log_group(self, handler: Any) -> dict[str, Any]:
        return {"Fn::GetAtt": [self.app.logical_id(handler.log_group), "Arn"]}


def image_count_item(arns: Arns) -> When:
    """The table, only for GET /health's published count item (decision 39)."""
    return When(
        arns.table,
        {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [r.IMAGE_COUNT_ID]}},
    )


def ingest_grants(arns: Arns, ingest: Any) -> tuple[tuple[Any, list[Any]], ...]:
    """The ingest role's grants on every tier (the scale tier adds its index's)."""
    return (
        ({"logs:CreateLogStream", "logs:PutLogEvents"}, [arns.log_group(ingest)]),
        (XRAY, ["*"]),
        (
            {
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
                "sqs:GetQueueAttributes",
            },
            [arns.queue, arns.retry_queue],
        ),
        # Hand-backs to the ingest queue, retries alone to the retry queue (decision 43).
        ("sqs:SendMessage", [arns.queue, arns.retry_queue]),
        # GetObject on thumbnails: HeadObject before re-creating a missing thumbnail.
        ("s3:GetObject", [arns.objects(arns.prefix), arns.objects(r.THUMBNAIL_PREFIX)]),
        # Listing only under the upload prefix (S3's 404 for a missing upload).
        (
            "s3:ListBucket",
            [When(arns.bucket, {"StringLike": {"s3:prefix": [f"{arns.prefix}*"]}})],
        ),
        ({"s3:PutObject", "s3:DeleteObject"}, [arns.objects(r.THUMBNAIL_PREFIX)]),
        ("bedrock:InvokeModel", [arns.model]),
        ({"dynamodb:GetItem", "dynamodb:PutItem"}, [arns.table]),
    )


def test_ingest_role_grants_exactly(any_app: Synthesized) -> None:
    arns = Arns(any_app)
    ingest = any_app.stack.ingest.handler

    grants = role_grants(any_app, any_app.logical_id(ingest.role))

    assert grants == expand(*ingest_grants(arns, ingest))


def test_search_role_grants_exactly(any_app: Synthesized) -> None:
    arns = Arns(any_app)
    search = any_app.stack.search.handler

    grants = role_grants(any_app, any_app.logical_id(search.role))

    assert grants == expand(
        ({"logs:CreateLogStream", "logs:PutLogEvents"}, [arns.log_group(search)]),
        (XRAY, ["*"]),
        (
            {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan"},
            [arns.table, arns.table_indexes()],
        ),
        (
            "s3:GetObject",
            [
                arns.objects(arns.prefix),
                arns.objects(r.THUMBNAIL_PREFIX),
                arns.objects(r.SNAPSHOT_PREFIX),
            ],
        ),
        ({"s3:PutObject", "s3:DeleteObject"}, [arns.objects(arns.prefix)]),
        # DELETE /images/{image_id}: the tombstone and the thumbnail, at once.
        ("dynamodb:PutItem", [arns.table]),
        ("s3:DeleteObject", [arns.objects(r.THUMBNAIL_PREFIX)]),
        ("bedrock:InvokeModel", [arns.model]),
    )


def test_maintenance_role_grants_exactly(any_app: Synthesized) -> None:
    arns = Arns(any_app)
    maintenance = any_app.stack.maintenance.handler

    grants = role_grants(any_app, any_app.logical_id(maintenance.role))

    assert grants == expand(
        ({"logs:CreateLogStream", "logs:PutLogEvents"}, [arns.log_group(maintenance)]),
        (XRAY, ["*"]),
        ({"dynamodb:Scan", "dynamodb:BatchGetItem"}, [arns.table]),
        (
            {"dynamodb:Query", "dynamodb:Scan"},
            [{"Fn::Join": ["", [arns.table, f"/index/{r.INDEX_CHANGES}"]]}],
        ),
        # The reconciliation's re-announcement: the change-log stamp only.
        (
            "dynamodb:UpdateItem",
            [
                When(
                    arns.table,
                    {"ForAllValues:StringEquals": {"dynamodb:Attributes": list(r.REANNOUNCED)}},
                )
            ],
        ),
        (
            {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"},
            [arns.objects(r.SNAPSHOT_PREFIX)],
        ),
        # Publishing GET /health's count: a PutItem of that one item, nothing else.
        ("dynamodb:PutItem", [image_count_item(arns)]),
        # The model switch's state read, and the healing of an abandoned one (decision 42)
        (
            {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Scan"},
            [arns.table],
        ),
        ("dynamodb:Query", [{"Fn::Join": ["", [arns.table, f"/index/{r.INDEX_BY_STATUS}"]]}]),
        ({"sqs:SendMessage", "sqs:GetQueueAttributes"}, [arns.queue]),
    )


def test_upload_prefix_from_context_is_what_the_roles_get(cli_app: Synthesized) -> None:
    # The CLI-style context moved the drop folder: the grants follow it.
    arns = Arns(cli_app)
    assert arns.prefix == "drop/photos/"
    grants = role_grants(cli_app, cli_app.logical_id(cli_app.stack.ingest.handler.role))
    assert ("s3:GetObject", _key(arns.objects("drop/photos/"))) in grants
    assert ("s3:GetObject", _key(arns.objects("uploads/"))) not in grants
    listing = When(arns.bucket, {"StringLike": {"s3:prefix": ["drop/photos/*"]}})
    assert ("s3:ListBucket", _key(listing)) in grants


def test_functions_run_under_their_own_roles(default_app: Synthesized) -> None:
    stack = default_app.stack
    for handler in (stack.ingest.handler, stack.search.handler, stack.maintenance.handler):
        function = default_app.json["Resources"][default_app.logical_id(handler.function)]
        assert function["Properties"]["Role"] == {
            "Fn::GetAtt": [default_app.logical_id(handler.role), "Arn"]
        }


def _statements(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM statement anywhere in the template (roles, policies, resource policies)."""
    if isinstance(node, dict):
        if "Statement" in node and isinstance(node["Statement"], list):
            for statement in node["Statement"]:
                yield where, statement
        for key, value in node.items():
            yield from _statements(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _statements(value, f"{where}/{index}")


def _is_tls_enforcement(statement: dict[str, Any]) -> bool:
    """enforce_ssl / minimum TLS: Deny everything to anyone over plain HTTP or old TLS."""
    condition = statement.get("Condition", {})
    return statement["Effect"] == "Deny" and (
        condition.get("Bool", {}).get("aws:SecureTransport") == "false"
        or "s3:TlsVersion" in condition.get("NumericLessThan", {})
    )


# CDK's auto_delete_objects (retainData=false only) lets its custom resource role empty
# the bucket on destroy; the statement is CDK's, scoped to that role and bucket.
AUTO_DELETE_ACTIONS = {"s3:DeleteObject*", "s3:GetBucket*", "s3:List*", "s3:PutBucketPolicy"}


def _is_cdk_auto_delete(statement: dict[str, Any]) -> bool:
    principal = json.dumps(statement.get("Principal", {}))
    return (
        set(_as_list(statement["Action"])) == AUTO_DELETE_ACTIONS
        and "CustomS3AutoDeleteObjectsCustomResourceProviderRole" in principal
    )


def test_no_wildcards_but_the_documented_ones(any_app: Synthesized) -> None:
    """No action wildcard and no Resource "*", except:

    - X-Ray PutTraceSegments/PutTelemetryRecords on "*" (no resource-level permissions);
    - TLS-enforcement Deny statements (``s3:*`` / ``sqs:*`` denied over insecure transport);
    - CDK's auto-delete grant when retainData is false.
    """
    offenders = []
    statements = list(_statements(any_app.json["Resources"]))
    assert len(statements) > 10
    for where, statement in statements:
        if _is_tls_enforcement(statement) or _is_cdk_auto_delete(statement):
            continue
        actions = _as_list(statement.get("Action", []))
        resources = _as_list(statement.get("Resource", []))
        assert "NotAction" not in statement and "NotResource" not in statement, where
        if any("*" in action for action in actions):
            offenders.append((where, statement))
        if "*" in resources and not set(actions) <= XRAY:
            offenders.append((where, statement))
        if statement.get("Principal") == "*" or statement.get("Principal") == {"AWS": "*"}:
            assert statement["Effect"] == "Deny", where
    assert offenders == []


def test_auto_delete_grant_only_when_data_is_not_retained(
    default_app: Synthesized, cli_app: Synthesized
) -> None:
    def auto_delete(app: Synthesized) -> list[Any]:
        return [s for _, s in _statements(app.json["Resources"]) if _is_cdk_auto_delete(s)]

    assert auto_delete(default_app) == []
    assert len(auto_delete(cli_app)) == 2  # images bucket and access-log bucket


@pytest.mark.parametrize("queue_attr", ["queue", "dead_letter_queue"])
def test_queue_policies_only_let_s3_of_this_bucket_send(
    default_app: Synthesized, queue_attr: str
) -> None:
    queue_id = default_app.logical_id(getattr(default_app.stack.ingest, queue_attr))
    bucket_arn = {"Fn::GetAtt": [default_app.logical_id(default_app.stack.storage.bucket), "Arn"]}
    policies = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in default_app.resources("AWS::SQS::QueuePolicy").values()
        if p["Properties"]["Queues"] == [{"Ref": queue_id}]
    ]
    assert len(policies) == 1
    allows = [s for s in policies[0] if s["Effect"] == "Allow"]
    if queue_attr == "dead_letter_queue":
        assert allows == []
        return
    assert len(allows) == 1
    assert allows[0]["Principal"] == {"Service": "s3.amazonaws.com"}
    assert allows[0]["Condition"] == {"ArnLike": {"aws:SourceArn": bucket_arn}}
    assert "sqs:SendMessage" in allows[0]["Action"]
