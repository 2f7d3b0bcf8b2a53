"""Monitoring component: alarms for the failure modes SPEC section 5 promises to surface.

Alarms have no actions: subscribe them to your own SNS topic or chat channel (an
encrypted topic needs a customer managed KMS key, a monthly cost we do not impose).
Missing data is not breaching where an idle service has no datapoints and is healthy;
it is breaching where silence means failure: the maintenance function reports the
embedded index's size every minute, so no report means it stopped working.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from imagesearch import resources as r

PERIOD = Duration.minutes(5)
# A backlog older than this means ingest is stuck or far behind (throttling, errors).
MAX_QUEUE_AGE_SECONDS = 3600


class Monitoring(Construct):
    """One alarm per condition an operator must act on."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        queue: sqs.IQueue,
        dead_letter_queue: sqs.IQueue,
        ingest_function: lambda_.IFunction,
        ingest_service_name: str,
        search_function: lambda_.IFunction,
        api: apigw.RestApi,
        embedded_max_images: int | None = None,
        maintenance_function: lambda_.IFunction | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.alarms: dict[str, cloudwatch.Alarm] = {}

        self._above(
            "DeadLetterQueueNotEmpty",
            dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic="Maximum"
            ),
            0,
            "Ingest gave up on at least one S3 event (in the dead-letter queue): read the "
            "ingest logs, fix the cause, then redrive the messages to the ingest queue.",
        )
        self._above(
            "IngestQueueBacklogOld",
            queue.metric_approximate_age_of_oldest_message(period=PERIOD, statistic="Maximum"),
            MAX_QUEUE_AGE_SECONDS,
            "The oldest S3 event waiting for ingest is over an hour old: ingest is stuck or "
            "throttled (Bedrock quota, ingestMaxConcurrency too low).",
        )
        self._above(
            "IngestFunctionErrors",
            ingest_function.metric_errors(period=PERIOD, statistic="Sum"),
            0,
            "The ingest function failed whole invocations (crash or timeout).",
        )
        self._above(
            "EmbedderConfigurationErrors",
            cloudwatch.Metric(
                namespace=r.METRICS_NAMESPACE,
                metric_name=r.METRIC_CONFIGURATION_ERRORS,
                dimensions_map={"service": ingest_service_name},
                period=PERIOD,
                statistic="Sum",
            ),
            0,
            "Bedrock refused the embedding model (access not granted, unknown model or "
            "region): enable model access in the Bedrock console or fix modelId.",
        )
        self._above(
            "SearchFunctionErrors",
            search_function.metric_errors(period=PERIOD, statistic="Sum"),
            0,
            "The search function failed invocations (crash, timeout or out of memory).",
        )
        self._above(
            "Api5xxErrors",
            api.metric_server_error(period=PERIOD, statistic="Sum"),
            0,
            "The search API answered 5XX (function errors or timeouts, model unavailable).",
        )
        if maintenance_function is not None:
            self._above(
                "MaintenanceFunctionErrors",
                maintenance_function.metric_errors(period=PERIOD, statistic="Sum"),
                0,
                "The index maintenance function failed runs (crash, timeout or out of "
                "memory): no new snapshot or model switch step; read its logs.",
            )
        if embedded_max_images is not None:
            warn_at = int(r.EMBEDDED_CAPACITY_WARNING * embedded_max_images)
            self._above(
                "EmbeddedIndexNearCapacity",
                cloudwatch.Metric(
                    namespace=r.METRICS_NAMESPACE,
                    metric_name=r.METRIC_INDEXED_IMAGES,
                    dimensions_map=dict(r.EMBEDDED_METRIC_DIMENSIONS),
                    period=Duration.minutes(30),
                    statistic="Maximum",
                ),
                warn_at - 1,
                f"The embedded index holds at least {warn_at} images, 80 % of "
                f"embeddedMaxImages ({embedded_max_images}): raise embeddedMaxImages (memory) "
                "or move to vectorStore=s3vectors before search instances run out of memory. "
                "No data counts too: the maintenance function reports every minute, so "
                "silence means it stopped (see MaintenanceFunctionErrors and its logs).",
                missing=cloudwatch.TreatMissingData.BREACHING,
            )
            self._above(
                "IndexSnapshotFallbacks",
                cloudwatch.Metric(
                    namespace=r.METRICS_NAMESPACE,
                    metric_name=r.METRIC_SNAPSHOT_FALLBACKS,
                    dimensions_map=dict(r.EMBEDDED_METRIC_DIMENSIONS),
                    period=PERIOD,
                    statistic="Sum",
                ),
                0,
                "Search instances loaded the index by a table Scan: the snapshot was "
                "missing, corrupt, stale or of another model (the search logs say which). "
                "Cold starts are slow and read the whole table; check the maintenance "
                "function.",
            )

    def _above(
        self,
        alarm_id: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        description: str,
        *,
        missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
    ) -> None:
        self.alarms[alarm_id] = cloudwatch.Alarm(
            self,
            alarm_id,
            metric=metric,
            threshold=threshold,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=missing,
            alarm_description=description,
        )
