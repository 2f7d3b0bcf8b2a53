"""moto-backed resources shaped like the stack's, for integration tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3

from imagesearch import resources as r
from imagesearch.catalog.dynamodb import DynamoDBCatalog
from imagesearch.local.moto_env import AwsClients, LocalNames
from imagesearch.local.moto_env import create_resources as local_create_resources
from imagesearch.records import ImageRecord, image_id_for_key

REGION = "us-east-1"


@dataclass
class AwsResources:
    s3: Any
    sqs: Any
    dynamodb: Any
    bucket: str
    table: str
    queue_url: str
    dlq_url: str
    upload_prefix: str
    retry_queue_url: str

    def env(self, **overrides: str) -> dict[str, str]:
        """Function environment as the stack sets it."""
        values = {
            r.ENV_BUCKET: self.bucket,
            r.ENV_TABLE: self.table,
            r.ENV_UPLOAD_PREFIX: self.upload_prefix,
            r.ENV_MODEL_ID: r.CONTEXT_DEFAULTS["modelId"],
            r.ENV_EMBEDDING_DIMENSION: str(r.CONTEXT_DEFAULTS["embeddingDimension"]),
            r.ENV_CAPTION_MODE: "none",
            r.ENV_BEDROCK_MAX_ATTEMPTS: "2",
            r.ENV_BEDROCK_READ_TIMEOUT: "2",
            r.ENV_BEDROCK_CONNECT_TIMEOUT: "1",
            r.ENV_INDEX_REFRESH_SECONDS: "0",
            r.ENV_INGEST_QUEUE_URL: self.queue_url,
            r.ENV_INGEST_RETRY_QUEUE_URL: self.retry_queue_url,
        }
        values.update(overrides)
        return values

    def upload(self, name: str, body: bytes, **extra: Any) -> str:
        key = self.upload_prefix + name
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, **extra)
        return key

    @property
    def catalog(self) -> DynamoDBCatalog:
        return DynamoDBCatalog(self.table, client=self.dynamodb)

    def record(self, key: str) -> ImageRecord | None:
        """The catalog's record of ``key`` with its vector, tombstones included."""
        return self.catalog.get(image_id_for_key(key), with_vector=True, include_deleted=True)

    def records(self) -> list[ImageRecord]:
        """Every listed record (indexed and rejected), through the catalog's listing."""
        found: list[ImageRecord] = []
        cursor = None
        while True:
            page = self.catalog.list(prefix=None, status=None, limit=1000, cursor=cursor)
            found.extend(page.items)
            if page.cursor is None:
                return found
            cursor = page.cursor

    def queue_depth(self, url: str) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def object_exists(self, key: str) -> bool:
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=key)
        return any(obj["Key"] == key for obj in listed.get("Contents", []))


def create_resources(
    bucket: str = "images-test-bucket",
    table: str = "images-test",
    upload_prefix: str = r.CONTEXT_DEFAULTS["uploadPrefix"],
) -> AwsResources:
    """Bucket, table, queue + DLQ and the S3 -> SQS notification, inside an active moto
    mock, created by the same code as local mode's (shapes from imagesearch.resources)."""
    session = boto3.session.Session(region_name=REGION)
    clients = AwsClients(
        s3=session.client("s3"), sqs=session.client("sqs"), dynamodb=session.client("dynamodb")
    )
    names = LocalNames(
        bucket=bucket,
        table=table,
        queue=f"{table}-ingest",
        dead_letter_queue=f"{table}-dlq",
        retry_queue=f"{table}-ingest-retry",
        upload_prefix=upload_prefix,
    )
    created = local_create_resources(clients, names, region=REGION)
    return AwsResources(
        clients.s3,
        clients.sqs,
        clients.dynamodb,
        bucket,
        table,
        created.queue_url,
        created.dlq_url,
        upload_prefix,
        created.retry_queue_url,
    )
