"""Index maintenance: a scheduled function that moves a configured model switch on by one
step (imagesearch.switch), keeps the embedded index's snapshot in the images bucket
current (so search cold starts map it instead of scanning the table) and reports the
number of indexed images (the capacity alarm's metric). Every tier has it: the scale
tier for the switch alone (driving one, or healing one a deploy abandoned)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from imagesearch import resources as r
from stacks.config import AppConfig
from stacks.functions import LoggedFunction, runtime_environment
from stacks.search_api import embedded_environment, embedded_memory_mb

SERVICE_NAME = "imagesearch-maintenance"
# How often it checks (cheaply: a pointer GET and COUNT queries) whether a new snapshot
# is due: after r.SNAPSHOT_AFTER_CHANGES changes, or r.SNAPSHOT_MAX_LAG_SECONDS with any.
SCHEDULE = Duration.minutes(1)
# A Scan of 1M rows (fallback) and a multi-GB upload fit with room to spare.
TIMEOUT = Duration.minutes(10)
# On the scale tier it only runs the switch: a state read, and during one queries,
# messages, deletes.
SWITCH_ONLY_MEMORY_MB = 512


class IndexMaintenance(Construct):
    """Schedule -> maintenance function (same asset, ``r.MAINTENANCE_HANDLER``)."""

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
        self.service_name = SERVICE_NAME
        self.handler = LoggedFunction(
            self,
            "Handler",
            code=code,
            handler=r.MAINTENANCE_HANDLER,
            description=("Index maintenance: model switch steps, and the index snapshot when due"),
            # The loaded index plus the snapshot's metadata while it is written.
            memory_mb=(
                embedded_memory_mb(config.embedded_max_images, config.embedding_dimension)
                if config.vector_store == "dynamodb"
                else SWITCH_ONLY_MEMORY_MB
            ),
            timeout=TIMEOUT,
            environment={
                **runtime_environment(
                    config,
                    bucket_name=bucket.bucket_name,
                    table_name=table.table_name,
                    service_name=SERVICE_NAME,
                    bedrock_timeouts=("2", "8", "2"),  # unused: it never calls a model
                ),
                **embedded_environment(config),
            },
        )
        self.function = self.handler.function
        self.rule = events.Rule(
            self,
            "Schedule",
            description="Keep the embedded index snapshot current",
            schedule=events.Schedule.rate(SCHEDULE),
            # A missed run is harmless (the next one catches up): no retries.
            targets=[targets.LambdaFunction(self.function, retry_attempts=0)],
        )
