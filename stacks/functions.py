"""A Lambda function with its own role, its own log group and nothing implicit.

The role starts empty (no AWSLambdaBasicExecutionRole): the only logs permission is
writing to the function's explicit log group, so every grant is visible in the template.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from imagesearch import resources as r
from stacks.config import AppConfig

# python3.11, the version the suite runs on and the asset's bytecode is compiled with
# (stacks.bundling.RUNTIME_PYTHON): see docs/decisions.md.
RUNTIME = lambda_.Runtime.PYTHON_3_11
ARCHITECTURE = lambda_.Architecture.ARM_64
LOG_RETENTION = logs.RetentionDays.ONE_MONTH
LOG_LEVEL = "INFO"


def runtime_environment(
    config: AppConfig,
    *,
    bucket_name: str,
    table_name: str,
    service_name: str,
    bedrock_timeouts: tuple[str, str, str],
) -> dict[str, str]:
    """Environment both functions share (names from imagesearch.resources)."""
    connect, read, attempts = bedrock_timeouts
    previous = config.previous_space
    switch = (
        {}
        if previous is None
        else {
            r.ENV_PREVIOUS_MODEL_ID: previous[0],
            r.ENV_PREVIOUS_EMBEDDING_DIMENSION: str(previous[1]),
        }
    )
    return {
        **switch,
        r.ENV_BUCKET: bucket_name,
        r.ENV_TABLE: table_name,
        r.ENV_UPLOAD_PREFIX: config.upload_prefix,
        r.ENV_MODEL_ID: config.model_id,
        r.ENV_EMBEDDING_DIMENSION: str(config.embedding_dimension),
        r.ENV_VECTOR_STORE: config.vector_store,
        r.ENV_BEDROCK_CONNECT_TIMEOUT: connect,
        r.ENV_BEDROCK_READ_TIMEOUT: read,
        r.ENV_BEDROCK_MAX_ATTEMPTS: attempts,
        "POWERTOOLS_SERVICE_NAME": service_name,
        "POWERTOOLS_METRICS_NAMESPACE": r.METRICS_NAMESPACE,
        "LOG_LEVEL": LOG_LEVEL,
    }


class LoggedFunction(Construct):
    """``Function`` + ``Role`` + ``LogGroup`` (retention set, deleted with the stack)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        handler: str,
        description: str,
        memory_mb: int,
        timeout: Duration,
        environment: Mapping[str, str],
        reserved_concurrency: int,
    ) -> None:
        """``reserved_concurrency``: every function has one (decision 39): what it may
        use at most, and what no other function of the account can take from it."""
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self,
            "LogGroup",
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role: {description}",
        )
        # The log group exists before the function, so CreateLogGroup is not needed.
        # Its Arn attribute ends in ":*", which covers the log streams inside it.
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="WriteOwnLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            code=code,
            handler=handler,
            description=description,
            memory_size=memory_mb,
            timeout=timeout,
            role=self.role,
            log_group=self.log_group,
            # Adds xray:PutTraceSegments and xray:PutTelemetryRecords on "*" to the role:
            # X-Ray has no resource-level permissions for these actions.
            tracing=lambda_.Tracing.ACTIVE,
            environment=dict(environment),
            reserved_concurrent_executions=reserved_concurrency,
        )

    def add_to_role_policy(self, statement: iam.PolicyStatement) -> None:
        self.role.add_to_principal_policy(statement)
