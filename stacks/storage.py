"""Storage component: the images bucket (drop folder + thumbnails; versioned, with
lifecycle rules from ``resources.images_bucket_lifecycle_rules``), its access-log bucket,
and the images table built from ``resources.table_definition``."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from imagesearch import resources as r
from stacks.config import AppConfig

_ATTRIBUTE_TYPES = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}
_PROJECTIONS = {
    "ALL": dynamodb.ProjectionType.ALL,
    "KEYS_ONLY": dynamodb.ProjectionType.KEYS_ONLY,
    "INCLUDE": dynamodb.ProjectionType.INCLUDE,
}
ACCESS_LOGS_PREFIX = "images-bucket/"
ACCESS_LOGS_EXPIRATION = Duration.days(90)
# Browsers PUT (presigned upload) and GET (presigned image URLs) straight to S3.
CORS_MAX_AGE_SECONDS = 3000


class Storage(Construct):
    """Images bucket and table; ``retainData`` decides whether they survive a destroy,
    ``noncurrentVersionDays`` how long overwritten and deleted images stay recoverable,
    ``corsOrigins`` which web pages may use presigned URLs from a browser."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        auto_delete = not config.retain_data

        self.access_logs_bucket = s3.Bucket(
            self,
            "AccessLogsBucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            # Server access logs can only be delivered to SSE-S3 buckets.
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(expiration=ACCESS_LOGS_EXPIRATION)],
            removal_policy=removal,
            auto_delete_objects=auto_delete,
        )
        self.bucket = s3.Bucket(
            self,
            "ImagesBucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix=ACCESS_LOGS_PREFIX,
            # A presigned URL in a page's script is usable by that page only when its
            # origin is listed: no CORS rule at all unless corsOrigins names some.
            cors=_cors_rules(config.cors_origins),
            # DELETE /images/{id} and overwrites keep the old version for a while.
            versioned=True,
            lifecycle_rules=[
                _lifecycle_rule(rule)
                for rule in r.images_bucket_lifecycle_rules(config.noncurrent_version_days)
            ],
            removal_policy=removal,
            auto_delete_objects=auto_delete,
        )
        self.table = images_table(
            self,
            "ImagesTable",
            removal=removal,
            legacy_change_index=config.keep_legacy_change_index,
        )


def _cors_rules(origins: tuple[str, ...]) -> list[s3.CorsRule] | None:
    if not origins:
        return None
    return [
        s3.CorsRule(
            allowed_origins=list(origins),
            allowed_methods=[s3.HttpMethods.GET, s3.HttpMethods.HEAD, s3.HttpMethods.PUT],
            # Whatever POST /uploads asks the browser to send; the signature binds them.
            allowed_headers=["*"],
            exposed_headers=["ETag"],
            max_age=CORS_MAX_AGE_SECONDS,
        )
    ]


def _lifecycle_rule(rule: dict[str, Any]) -> s3.LifecycleRule:
    """A CDK rule from the shared S3 API shape (enabled, a prefix filter or none)."""
    known = {"ID", "Status", "Filter", "AbortIncompleteMultipartUpload"}
    known |= {"NoncurrentVersionExpiration", "Expiration"}
    if set(rule) - known or rule["Status"] != "Enabled" or set(rule["Filter"]) != {"Prefix"}:
        raise ValueError(f"unsupported lifecycle rule {rule}")
    abort = rule.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation")
    noncurrent = rule.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays")
    marker = rule.get("Expiration", {}).get("ExpiredObjectDeleteMarker")
    days = rule.get("Expiration", {}).get("Days")
    return s3.LifecycleRule(
        id=rule["ID"],
        prefix=rule["Filter"]["Prefix"] or None,
        abort_incomplete_multipart_upload_after=Duration.days(abort) if abort else None,
        noncurrent_version_expiration=Duration.days(noncurrent) if noncurrent else None,
        expired_object_delete_marker=marker,
        expiration=Duration.days(days) if days else None,
    )


def images_table(
    scope: Construct,
    construct_id: str,
    *,
    removal: RemovalPolicy,
    legacy_change_index: bool = False,
) -> dynamodb.Table:
    """The images table, built from the shared definition (no shapes retyped here)."""
    # the physical name is CloudFormation's
    definition = r.table_definition("unused", legacy_change_index=legacy_change_index)
    types = {a["AttributeName"]: a["AttributeType"] for a in definition["AttributeDefinitions"]}
    if definition["BillingMode"] != "PAY_PER_REQUEST":
        raise ValueError(f"unexpected billing mode {definition['BillingMode']}")
    table = dynamodb.Table(
        scope,
        construct_id,
        **_key_schema(definition["KeySchema"], types),
        billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
        point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        time_to_live_attribute=r.ATTR_EXPIRES_AT,
        removal_policy=removal,
    )
    for index in definition.get("GlobalSecondaryIndexes", []):
        projection = index["Projection"]
        non_key = projection.get("NonKeyAttributes")
        table.add_global_secondary_index(
            index_name=index["IndexName"],
            **_key_schema(index["KeySchema"], types),
            projection_type=_PROJECTIONS[projection["ProjectionType"]],
            non_key_attributes=list(non_key) if non_key else None,
        )
    return table


def _key_schema(key_schema: list[dict[str, str]], types: dict[str, str]) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for element in key_schema:
        name = element["AttributeName"]
        attribute = dynamodb.Attribute(name=name, type=_ATTRIBUTE_TYPES[types[name]])
        keys["partition_key" if element["KeyType"] == "HASH" else "sort_key"] = attribute
    return keys
