"""Index maintenance: a scheduled function, on both tiers, that moves a model switch on
by one step (imagesearch.switch: driving one configured with previousModelId, or healing
one a deploy abandoned), keeps the embedded index's snapshot in the images bucket current
(so search cold starts map it instead of scanning the table), publishes GET /health's
image count (imagesearch.health; the scale tier recounts every
``r.SCALE_COUNT_INTERVAL_SECONDS``) and reports the number of indexed images (the
capacity alarm's metric). Reserved concurrency 1: two runs never overlap."""

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
from stacks.search_api import embedded_environment
from stacks.sizing import maintenance_memory_mb

SERVICE_NAME = "imagesearch-maintenance"
# How often it checks (cheaply: a pointer GET and COUNT queries) whether a new snapshot
# is due: after r.SNAPSHOT_AFTER_CHANGES changes, or r.SNAPSHOT_MAX_LAG_SECONDS with any.
SCHEDULE = Duration.minutes(1)
# A Scan of 1M rows (fallback) and a multi-GB upload fit with room to spare.
TIMEOUT = Duration.minutes(10)
# The scale tier holds no index: counts, and during a model switch queries, messages,
# deletes.
SCALE_TIER_MEMORY_MB = 512
# One run at a time: while a run outlasts the schedule's minute, the next one is
# throttled instead of overlapping it. Lambda retries a throttled asynchronous event
# until it is this old, then drops it (the next scheduled run catches up).
RESERVED_CONCURRENCY = 1
MAX_EVENT_AGE = Duration.minutes(1)


def memory_mb(config: AppConfig) -> int:
    """The function's memory: the loaded index of the serving model (during a switch the
    previous one's until the flip, so the larger dimension) and a snapshot write,
    measured against it by tests/integration/test_maintenance_memory.py."""
    if config.vector_store != "dynamodb":
        return SCALE_TIER_MEMORY_MB
    return maintenance_memory_mb(config.embedded_max_images, serving_dimension(config))


def serving_dimension(config: AppConfig) -> int:
    """The largest dimension the maintenance function may load: either model's."""
    previous = config.previous_space
    return max(config.embedding_dimension, previous[1] if previous is not None else 0)


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
            description=(
                "Index maintenance: model switch steps, the index snapshot when due, "
                "the image count of GET /health"
            ),
            memory_mb=memory_mb(config),
            timeout=TIMEOUT,
            reserved_concurrency=RESERVED_CONCURRENCY,
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
        # A failed run is not retried either: the next one does the same work.
        self.function.configure_async_invoke(max_event_age=MAX_EVENT_AGE, retry_attempts=0)
        self.rule = events.Rule(
            self,
            "Schedule",
            description="Index maintenance: model switch, index snapshot, image count",
            schedule=events.Schedule.rate(SCHEDULE),
            # A missed run is harmless (the next one catches up): no retries.
            targets=[targets.LambdaFunction(self.function, retry_attempts=0)],
        )
