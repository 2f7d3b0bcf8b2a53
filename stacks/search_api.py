"""Search API component: REST API Gateway (IAM auth) in front of the search function."""

from __future__ import annotations

import json

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from imagesearch import resources as r
from stacks.config import AppConfig
from stacks.functions import LOG_RETENTION, LoggedFunction, runtime_environment
from stacks.sizing import embedded_memory_mb

SERVICE_NAME = "imagesearch-api"
# The search function's memory at the default configuration (250k x 1024).
MEMORY_MB = embedded_memory_mb(
    r.CONTEXT_DEFAULTS["embeddedMaxImages"], r.CONTEXT_DEFAULTS["embeddingDimension"]
)


# API Gateway's default integration timeout is 29 s: a longer function would be cut off.
TIMEOUT = Duration.seconds(29)
# Each Bedrock call must fit the API timeout with a retry: 2 attempts x 8 s read.
BEDROCK_CONNECT_TIMEOUT_S = "2"
BEDROCK_READ_TIMEOUT_S = "8"
BEDROCK_MAX_ATTEMPTS = "2"
STAGE_NAME = "v1"
# GET /health's method throttle (requests per second, steady and burst): a status page
# or load balancer polls it a few times a minute; anonymous callers get no more.
HEALTH_RATE_LIMIT = 5
HEALTH_BURST_LIMIT = 10
# CDK's method options key: the resource path, then the method.
HEALTH_THROTTLE_PATH = "/health/GET"
# API Gateway REST takes bodies up to 10 MB, but a synchronous Lambda invoke carries at
# most 6 MB (6,291,456 bytes for the whole event): between the two, API Gateway accepts
# the request and the invoke fails. 6 MB is the limit a client can really use.
PAYLOAD_LIMIT = r.API_PAYLOAD_LIMIT_TEXT
_UPLOAD_HINT = "upload images larger than that with POST /uploads"

_ERROR_MESSAGE = '{"message": $context.error.messageString}'


def _static(message: str) -> str:
    return json.dumps({"message": message})


# (id, response type, status code, body template, extra headers). Every response API
# Gateway answers by itself is a JSON {"message"}, like the function's own errors.
GATEWAY_RESPONSES: tuple[tuple[str, apigw.ResponseType, str | None, str, dict[str, str]], ...] = (
    ("AccessDenied", apigw.ResponseType.ACCESS_DENIED, "403", _ERROR_MESSAGE, {}),
    (
        "MissingAuthenticationToken",
        apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN,
        "403",
        _static(
            "Missing authentication token or unknown route: requests must be "
            "SigV4-signed (execute-api) and use a route of the API"
        ),
        {},
    ),
    ("InvalidSignature", apigw.ResponseType.INVALID_SIGNATURE, "403", _ERROR_MESSAGE, {}),
    ("ExpiredToken", apigw.ResponseType.EXPIRED_TOKEN, "403", _ERROR_MESSAGE, {}),
    (
        "RequestTooLarge",
        apigw.ResponseType.REQUEST_TOO_LARGE,
        "413",
        _static(f"Request body too large: the API accepts at most {PAYLOAD_LIMIT}; {_UPLOAD_HINT}"),
        {},
    ),
    (
        "Throttled",
        apigw.ResponseType.THROTTLED,
        "429",
        _static("Too many requests: slow down and retry"),
        {"Retry-After": "'1'"},
    ),
    (
        "QuotaExceeded",
        apigw.ResponseType.QUOTA_EXCEEDED,
        "429",
        _static("Request quota exceeded"),
        {"Retry-After": "'60'"},
    ),
    # The search function could not be invoked. A request body between 6 and 10 MB
    # passes API Gateway's own limit and fails here, so the message names the limit.
    (
        "IntegrationFailure",
        apigw.ResponseType.INTEGRATION_FAILURE,
        "502",
        _static(
            "The search function could not be invoked; request bodies over "
            f"{PAYLOAD_LIMIT} never reach it: {_UPLOAD_HINT}"
        ),
        {},
    ),
    (
        "IntegrationTimeout",
        apigw.ResponseType.INTEGRATION_TIMEOUT,
        "504",
        _static("The search function did not answer in time; retry later"),
        {"Retry-After": "'5'"},
    ),
    (
        "ApiConfigurationError",
        apigw.ResponseType.API_CONFIGURATION_ERROR,
        "500",
        _static(
            "The API could not invoke the search function (request bodies over "
            f"{PAYLOAD_LIMIT} never reach it: {_UPLOAD_HINT}); otherwise the "
            "deployment needs attention"
        ),
        {},
    ),
    ("Default4xx", apigw.ResponseType.DEFAULT_4_XX, None, _ERROR_MESSAGE, {}),
    (
        "Default5xx",
        apigw.ResponseType.DEFAULT_5_XX,
        None,
        _static(
            "The API could not complete the request (request bodies over "
            f"{PAYLOAD_LIMIT} never reach the search function: {_UPLOAD_HINT})"
        ),
        {},
    ),
)

# JSON access log lines (one per request); no bodies, no query strings.
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "extendedRequestId": "$context.extendedRequestId",
    "requestTime": "$context.requestTime",
    "ip": "$context.identity.sourceIp",
    "caller": "$context.identity.caller",
    "userArn": "$context.identity.userArn",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "protocol": "$context.protocol",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationStatus": "$context.integration.status",
    "integrationLatency": "$context.integration.latency",
    "errorMessage": "$context.error.message",
    "xrayTraceId": "$context.xrayTraceId",
}


def switch_dimensions(config: AppConfig) -> int:
    """The dimensions held in memory at once: during a model switch an instance loads
    the new model's matrix before it lets the previous one go."""
    previous = config.previous_space
    return config.embedding_dimension + (previous[1] if previous is not None else 0)


def embedded_environment(config: AppConfig) -> dict[str, str]:
    """The embedded tier's settings (search and maintenance functions)."""
    if config.vector_store != "dynamodb":
        return {}
    return {
        r.ENV_SNAPSHOT_PREFIX: r.SNAPSHOT_PREFIX,
        r.ENV_EMBEDDED_MAX_IMAGES: str(config.embedded_max_images),
    }


class SearchApi(Construct):
    """Search function and the REST API routing every route of SPEC section 6 to it."""

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
            handler=r.API_HANDLER,
            description=(
                "Image search API: embeds queries, approximate search in Amazon S3 Vectors"
                if config.vector_store == "s3vectors"
                else "Image search API: embeds queries, exact cosine search in memory"
            ),
            memory_mb=embedded_memory_mb(config.embedded_max_images, switch_dimensions(config)),
            timeout=TIMEOUT,
            # A flood of requests cannot take the account's concurrency from ingest.
            reserved_concurrency=config.search_max_concurrency,
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
                **embedded_environment(config),
                # Nova 2 picks its query purpose by what the index holds (decision 33).
                r.ENV_CAPTION_MODE: config.caption_mode,
            },
        )
        self.function = self.handler.function

        self.access_log_group = logs.LogGroup(
            self,
            "AccessLogs",
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # Named after the stack: API Gateway's metrics (and the 5XX alarm) are keyed by
        # the API's name, and CDK's default name "RestApi" is shared by every API
        # deployed with it in the account.
        self.api_name = Stack.of(self).stack_name
        self.api = apigw.RestApi(
            self,
            "RestApi",
            rest_api_name=self.api_name,
            description="Serverless multimodal image search (SigV4 / IAM auth)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # API Gateway writes access and execution logs through the account-wide
            # CloudWatch role of the region; a fresh account has none and the stage
            # would fail to deploy. Kept on destroy: other APIs may rely on it.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE_NAME,
                # Cost guard: every request may cost a Bedrock call and Lambda time.
                throttling_rate_limit=config.api_rate_limit,
                throttling_burst_limit=config.api_burst_limit,
                # GET /health is unauthenticated: its own low limit, so anonymous calls
                # cannot use up the stage's (never above the stage's own).
                method_options={
                    HEALTH_THROTTLE_PATH: apigw.MethodDeploymentOptions(
                        throttling_rate_limit=min(HEALTH_RATE_LIMIT, config.api_rate_limit),
                        throttling_burst_limit=min(HEALTH_BURST_LIMIT, config.api_burst_limit),
                    )
                },
                access_log_destination=apigw.LogGroupLogDestination(self.access_log_group),
                access_log_format=apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT)),
                tracing_enabled=True,
                metrics_enabled=True,
                # Execution logs for errors only, never request or response bodies.
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,
            ),
        )
        # Pre-create the execution log group API Gateway would otherwise create without
        # retention; the stage (which starts logging) waits for it.
        self.execution_log_group = logs.LogGroup(
            self,
            "ExecutionLogs",
            log_group_name=f"API-Gateway-Execution-Logs_{self.api.rest_api_id}/{STAGE_NAME}",
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.api.deployment_stage.node.add_dependency(self.execution_log_group)

        integration = apigw.LambdaIntegration(self.function, proxy=True, allow_test_invoke=False)
        self.methods: dict[tuple[str, str], apigw.Method] = {}
        # No greedy proxy: an unknown route never reaches the function (API Gateway
        # answers 403 itself).
        for path, http_method, iam_auth in r.API_ROUTES:
            resource = self.api.root.resource_for_path(path)
            self.methods[(path, http_method)] = resource.add_method(
                http_method,
                integration,
                authorization_type=(
                    apigw.AuthorizationType.IAM if iam_auth else apigw.AuthorizationType.NONE
                ),
            )

        for response_id, response_type, status, template, headers in GATEWAY_RESPONSES:
            self.api.add_gateway_response(
                response_id,
                type=response_type,
                status_code=status,
                templates={"application/json": template},
                response_headers=headers or None,
            )
