"""A recorded AWS call as the IAM requests AWS authorises it by.

Most operations are authorised by the action of the same name on the resource the
request names. The exceptions below are AWS's documented ones (S3's action mapping in
the S3 user guide, "Actions, resources, and condition keys" for each service, and
S3 Vectors' note that a filtered or metadata-returning query also needs GetVectors).
Each request is (action, resource ARN, condition context).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from imagesearch import resources as r

ACCOUNT = "123456789012"  # moto's default account, which the tests' resources live in
PARTITION = "aws"


@dataclass(frozen=True)
class IamRequest:
    action: str
    resource: str
    # Condition keys: a string, or a tuple for a multivalued key (dynamodb:LeadingKeys).
    context: tuple[tuple[str, str | tuple[str, ...]], ...] = field(default=())

    def describe(self) -> str:
        suffix = "".join(f" [{key}={value}]" for key, value in self.context)
        return f"{self.action} on {self.resource}{suffix}"


# S3 operations whose IAM action differs from their name. A VersionId turns the object
# read/delete into its *Version action.
_S3_ACTIONS = {
    "HeadObject": "s3:GetObject",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "ListObjectVersions": "s3:ListBucketVersions",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "UploadPartCopy": "s3:PutObject",
    "ListParts": "s3:ListMultipartUploadParts",
    "DeleteObjects": "s3:DeleteObject",
    "GetObjectAttributes": "s3:GetObjectAttributes",
}
_S3_BUCKET_OPERATIONS = frozenset(
    {"ListObjectsV2", "ListObjects", "HeadBucket", "ListObjectVersions"}
)
_SQS_ACTIONS = {
    "SendMessageBatch": "sqs:SendMessage",
    "DeleteMessageBatch": "sqs:DeleteMessage",
    "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}


def iam_requests(call: dict[str, Any]) -> list[IamRequest]:
    """Every (action, resource) the call needs allowed."""
    service = call["service"]
    operation = call["operation"]
    params = call["params"]
    region = call["region"] or "us-east-1"
    if service == "s3":
        return _s3(operation, params)
    if service == "dynamodb":
        return _dynamodb(operation, params, region)
    if service == "sqs":
        return _sqs(operation, params, region)
    if service == "bedrock":  # bedrock-runtime signs as "bedrock"
        return _bedrock(operation, params, region)
    if service == "s3vectors":
        return _s3vectors(operation, params, region)
    return [IamRequest(f"{service}:{operation}", "*")]


def _s3(operation: str, params: dict[str, Any]) -> list[IamRequest]:
    bucket = params.get("Bucket", "")
    if operation in _S3_BUCKET_OPERATIONS:
        context = (("s3:prefix", params["Prefix"]),) if "Prefix" in params else ()
        action = _S3_ACTIONS[operation]
        return [IamRequest(action, f"arn:{PARTITION}:s3:::{bucket}", context)]
    action = _S3_ACTIONS.get(operation, f"s3:{operation}")
    if "VersionId" in params and action in ("s3:GetObject", "s3:DeleteObject"):
        action += "Version"
    keys = params.get("Keys") if operation == "DeleteObjects" else [params.get("Key", "")]
    return [IamRequest(action, f"arn:{PARTITION}:s3:::{bucket}/{key}") for key in keys or []]


def table_arn(region: str, table: str) -> str:
    return f"arn:{PARTITION}:dynamodb:{region}:{ACCOUNT}:table/{table}"


def _dynamodb(operation: str, params: dict[str, Any], region: str) -> list[IamRequest]:
    action = f"dynamodb:{operation}"
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [IamRequest(action, table_arn(region, t)) for t in params.get("RequestItems", [])]
    if operation == "TransactWriteItems":
        return [IamRequest(action, table_arn(region, t)) for t in params.get("TransactItems", [])]
    arn = table_arn(region, params.get("TableName", ""))
    if params.get("IndexName"):
        arn += f"/index/{params['IndexName']}"
    # A single-item call names its partition key: what a dynamodb:LeadingKeys condition
    # (a grant limited to one item, decision 39) is evaluated against.
    # (The recorder keeps a PutItem's key as Key: never the item's attributes.)
    partition = (params.get("Key") or {}).get(r.ATTR_IMAGE_ID, {}).get("S")
    if operation in _DYNAMODB_ITEM_OPERATIONS and partition is not None:
        return [IamRequest(action, arn, (("dynamodb:LeadingKeys", (partition,)),))]
    return [IamRequest(action, arn)]


_DYNAMODB_ITEM_OPERATIONS = frozenset({"GetItem", "PutItem", "UpdateItem", "DeleteItem"})


def _sqs(operation: str, params: dict[str, Any], region: str) -> list[IamRequest]:
    """The queue's ARN from its URL's last two path segments (``.../<account>/<name>``;
    local mode's moto puts its own segments before them)."""
    segments = urlparse(params.get("QueueUrl", "")).path.strip("/").split("/")
    account, name = (segments[-2], segments[-1]) if len(segments) >= 2 else (ACCOUNT, "")
    action = _SQS_ACTIONS.get(operation, f"sqs:{operation}")
    return [IamRequest(action, f"arn:{PARTITION}:sqs:{region}:{account}:{name}")]


def foundation_model_arn(region: str, model: str) -> str:
    return f"arn:{PARTITION}:bedrock:{region}::foundation-model/{model}"


def _bedrock(operation: str, params: dict[str, Any], region: str) -> list[IamRequest]:
    """A foundation model id: that model here. An inference profile: the profile here
    and the foundation model in every region the profile may route the request to (IAM
    checks the routed one; each must be allowed or the call fails intermittently)."""
    action = f"bedrock:{operation}"
    model_id = params.get("modelId", "")
    geo, base = r.split_model_id(model_id)
    if geo is None:
        return [IamRequest(action, foundation_model_arn(region, base))]
    profile = f"arn:{PARTITION}:bedrock:{region}:{ACCOUNT}:inference-profile/{model_id}"
    destinations = profile_destinations(model_id, region)
    return [IamRequest(action, profile)] + [
        IamRequest(action, foundation_model_arn(destination, base)) for destination in destinations
    ]


def profile_destinations(model_id: str, source_region: str) -> tuple[str, ...]:
    """Regions AWS may route a profile's request to, by the product's sourced table
    (``resources.INFERENCE_PROFILES``), with the source region itself. Where AWS publishes
    no list, the geography's regions stand in (the grant must allow any of them); a
    ``global.`` profile routes to any commercial region, which IAM names with an empty
    region field."""
    profile = r.INFERENCE_PROFILES[model_id]
    destinations: list[str] = [source_region]
    for region in profile.destinations:
        if region == r.ANY_REGION:
            destinations.extend(r.GEO_SOURCE_REGIONS.get(profile.geography, ()))
        else:
            destinations.append(region)
    return tuple(dict.fromkeys(destinations))


def _s3vectors(operation: str, params: dict[str, Any], region: str) -> list[IamRequest]:
    action = f"s3vectors:{operation}"
    if params.get("indexArn"):
        arn = params["indexArn"]
    elif params.get("indexName"):
        arn = (
            f"arn:{PARTITION}:s3vectors:{region}:{ACCOUNT}:bucket/"
            f"{params.get('vectorBucketName', '')}/index/{params['indexName']}"
        )
    elif params.get("vectorBucketArn"):
        arn = params["vectorBucketArn"]
    else:
        bucket = params.get("vectorBucketName", "")
        arn = f"arn:{PARTITION}:s3vectors:{region}:{ACCOUNT}:bucket/{bucket}"
    needed = [IamRequest(action, arn)]
    if operation == "QueryVectors" and (params.get("filter") or params.get("returnMetadata")):
        needed.append(IamRequest("s3vectors:GetVectors", arn))
    return needed
