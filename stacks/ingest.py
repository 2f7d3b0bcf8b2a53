"""Ingest component: S3 notifications -> SQS queue (+ DLQ) -> ingest function."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from imagesearch import resources as r
from stacks.config import AppConfig
from stacks.functions import LoggedFunction, runtime_environment

SERVICE_NAME = "imagesearch-ingest"
MEMORY_MB = 1024
# A batch is up to 10 images: download, decode (HEIC/TIFF up to tens of MB), resize,
# one Bedrock call each (bounded below), a thumbnail and a DynamoDB write. The handler
# starts a message only while one worst-case image still fits (all Bedrock attempts
# timing out + backoff + 20 s of work = 92 s) and hands the rest back unstarted; five
# minutes lets a whole batch of heavy images start after all (92 + 9 x 20 s).
TIMEOUT = Duration.seconds(300)
BATCH_SIZE = 10
MAX_BATCHING_WINDOW = Duration.seconds(5)
MAX_RECEIVE_COUNT = r.INGEST_MAX_RECEIVE_COUNT
# The retry queue (decision 43): a message back from a failed receive is moved there and
# handed over alone, so a message that kills its invocation fails without its batch-mates.
# One receive on the ingest queue + four there = five attempts, as before.
RETRY_MAX_RECEIVE_COUNT = r.INGEST_RETRY_MAX_RECEIVE_COUNT
RETRY_BATCH_SIZE = 1
# Retries are few and often throttling: two at a time (the mapping's minimum).
RETRY_MAX_CONCURRENCY = 2
DLQ_RETENTION = Duration.days(14)
QUEUE_RETENTION = Duration.days(4)
# AWS guidance for SQS event sources: visibility >= 6x the function timeout plus the
# batching window, so a message is not redelivered while a retried invocation runs.
VISIBILITY_TIMEOUT = Duration.seconds(6 * TIMEOUT.to_seconds() + MAX_BATCHING_WINDOW.to_seconds())
# Bound each Bedrock call so a hung connection costs seconds, not the whole timeout:
# 3 attempts x (3 s + 20 s) is what the handler reserves before starting an image.
BEDROCK_CONNECT_TIMEOUT_S = "3"
BEDROCK_READ_TIMEOUT_S = "20"
BEDROCK_MAX_ATTEMPTS = "3"


class Ingest(Construct):
    """Queue, dead-letter queue, ingest function and the bucket notifications feeding them.

    Grants on the bucket, table and model are made by the stack; this construct only
    grants what is its own (consuming its queue, writing its logs).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        code: lambda_.Code,
        bucket: s3.IBucket,
        table: dynamodb.ITable,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=DLQ_RETENTION,
        )
        self.queue = self._ingest_queue("Queue", MAX_RECEIVE_COUNT)
        self.retry_queue = self._ingest_queue("RetryQueue", RETRY_MAX_RECEIVE_COUNT)

        self.service_name = SERVICE_NAME
        self.handler = LoggedFunction(
            self,
            "Handler",
            code=code,
            handler=r.INGEST_HANDLER,
            description="Image search ingest: S3 events via SQS -> Bedrock embedding -> table",
            memory_mb=MEMORY_MB,
            timeout=TIMEOUT,
            # As many as both queues' event sources may run together (their maximum
            # concurrency), so searches or other functions of the account never take
            # them, and no poller is throttled (a throttled SQS batch burns a receive).
            reserved_concurrency=config.ingest_max_concurrency + RETRY_MAX_CONCURRENCY,
            environment={
                **runtime_environment(
                    config,
                    bucket_name=bucket.bucket_name,
                    table_name=table.table_name,
                    service_name=SERVICE_NAME,
                    bedrock_timeouts=(
                        BEDROCK_CONNECT_TIMEOUT_S,
                        BEDROCK_READ_TIMEOUT_S,
                        BEDROCK_MAX_ATTEMPTS,
                    ),
                ),
                r.ENV_CAPTION_MODE: config.caption_mode,
                r.ENV_INGEST_QUEUE_URL: self.queue.queue_url,
                r.ENV_INGEST_RETRY_QUEUE_URL: self.retry_queue.queue_url,
            },
        )
        self.function = self.handler.function

        # Written out instead of queue.grant_consume_messages() so the template lists
        # exactly what the event source mapping needs (no GetQueueUrl).
        self.handler.add_to_role_policy(
            iam.PolicyStatement(
                sid="ConsumeIngestQueue",
                actions=[
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes",
                ],
                resources=[self.queue.queue_arn, self.retry_queue.queue_arn],
            )
        )
        # The handler moves messages instead of failing them (decision 43): handed-back
        # ones to the ingest queue again, those back from a failed receive to the retry
        # queue. It deletes the originals itself (DeleteMessage, granted above).
        self.handler.add_to_role_policy(
            iam.PolicyStatement(
                sid="RequeueIngestMessages",
                actions=["sqs:SendMessage"],
                resources=[self.queue.queue_arn, self.retry_queue.queue_arn],
            )
        )
        # The function resource depends on its role and the role's policy, and the
        # mapping references the function, so the grant exists before polling starts.
        self.event_source = lambda_.EventSourceMapping(
            self,
            "QueueEvents",
            target=self.function,
            event_source_arn=self.queue.queue_arn,
            batch_size=BATCH_SIZE,
            max_batching_window=MAX_BATCHING_WINDOW,
            max_concurrency=config.ingest_max_concurrency,
            report_batch_item_failures=True,
        )
        self.retry_event_source = lambda_.EventSourceMapping(
            self,
            "RetryQueueEvents",
            target=self.function,
            event_source_arn=self.retry_queue.queue_arn,
            batch_size=RETRY_BATCH_SIZE,
            max_concurrency=RETRY_MAX_CONCURRENCY,
            report_batch_item_failures=True,
        )

        destination = s3n.SqsDestination(self.queue)
        key_filter = s3.NotificationKeyFilter(prefix=config.upload_prefix)
        for event in (s3.EventType.OBJECT_CREATED, s3.EventType.OBJECT_REMOVED):
            bucket.add_event_notification(event, destination, key_filter)

    def _ingest_queue(self, construct_id: str, max_receive_count: int) -> sqs.Queue:
        """A queue the ingest function consumes: encrypted, TLS only, dead letters after
        ``max_receive_count`` receives (both queues share one DLQ)."""
        return sqs.Queue(
            self,
            construct_id,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=QUEUE_RETENTION,
            visibility_timeout=VISIBILITY_TIMEOUT,
            dead_letter_queue=sqs.DeadLetterQueue(
                max_receive_count=max_receive_count, queue=self.dead_letter_queue
            ),
        )
