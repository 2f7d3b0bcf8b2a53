"""The template's resources against SPEC sections 3-6 and the shared resource shapes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from aws_cdk.assertions import Match

from imagesearch import resources as r
from stacks.ingest import RETRY_MAX_CONCURRENCY
from tests.infra.conftest import Synthesized


def one(app: Synthesized, resource_type: str) -> dict[str, Any]:
    found = app.resources(resource_type)
    assert len(found) == 1, f"{len(found)} x {resource_type}"
    return next(iter(found.values()))


def resource_of(app: Synthesized, construct: Any) -> dict[str, Any]:
    return app.json["Resources"][app.logical_id(construct)]


# --- storage -----------------------------------------------------------------


def test_table_matches_the_shared_definition(any_app: Synthesized) -> None:
    definition = r.table_definition("any")
    table = one(any_app, "AWS::DynamoDB::Table")["Properties"]

    assert table["KeySchema"] == definition["KeySchema"]
    assert sorted(table["AttributeDefinitions"], key=json.dumps) == sorted(
        definition["AttributeDefinitions"], key=json.dumps
    )
    assert table["BillingMode"] == definition["BillingMode"] == "PAY_PER_REQUEST"

    def by_name(indexes: list[dict[str, Any]]) -> dict[str, Any]:
        return {index["IndexName"]: index for index in indexes}

    assert by_name(table["GlobalSecondaryIndexes"]) == by_name(definition["GlobalSecondaryIndexes"])
    assert set(by_name(table["GlobalSecondaryIndexes"])) == {
        r.INDEX_CHANGES,
        r.INDEX_BY_STATUS,
    }
    changes = by_name(table["GlobalSecondaryIndexes"])[r.INDEX_CHANGES]
    assert r.ATTR_VECTOR not in changes["Projection"]["NonKeyAttributes"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": r.ATTR_EXPIRES_AT, "Enabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert "TableName" not in table  # CloudFormation names it: several stacks can coexist


def test_images_bucket_is_private_encrypted_tls_only_and_logged(default_app: Synthesized) -> None:
    storage = default_app.stack.storage
    bucket = resource_of(default_app, storage.bucket)["Properties"]

    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["BucketEncryption"] == {
        "ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
        ]
    }
    assert bucket["LoggingConfiguration"]["DestinationBucketName"] == {
        "Ref": default_app.logical_id(storage.access_logs_bucket)
    }
    # No corsOrigins by default: no browser page may use presigned URLs cross-origin.
    assert "CorsConfiguration" not in bucket

    policy = next(
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in default_app.resources("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": default_app.logical_id(storage.bucket)}
    )
    bucket_arn = {"Fn::GetAtt": [default_app.logical_id(storage.bucket), "Arn"]}
    assert {
        "Action": "s3:*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Resource": [bucket_arn, {"Fn::Join": ["", [bucket_arn, "/*"]]}],
    } in policy
    # The images bucket policy grants nothing to anyone (access is through roles).
    assert [s for s in policy if s["Effect"] == "Allow"] == []


def test_cors_origins_from_context_are_the_only_ones_allowed(cli_app: Synthesized) -> None:
    bucket = resource_of(cli_app, cli_app.stack.storage.bucket)["Properties"]

    (rule,) = bucket["CorsConfiguration"]["CorsRules"]
    assert rule["AllowedOrigins"] == ["https://photos.example.com", "http://localhost:5173"]
    assert set(rule["AllowedMethods"]) == {"GET", "HEAD", "PUT"}
    assert "ETag" in rule["ExposedHeaders"]


def _lifecycle_from_api_rules(noncurrent_days: int) -> list[dict[str, Any]]:
    """The shared S3 API rules as CloudFormation writes them."""
    rendered = []
    for rule in r.images_bucket_lifecycle_rules(noncurrent_days):
        cfn: dict[str, Any] = {"Id": rule["ID"], "Status": rule["Status"]}
        if "AbortIncompleteMultipartUpload" in rule:
            cfn["AbortIncompleteMultipartUpload"] = rule["AbortIncompleteMultipartUpload"]
        if "NoncurrentVersionExpiration" in rule:
            cfn["NoncurrentVersionExpiration"] = rule["NoncurrentVersionExpiration"]
        if rule["Filter"]["Prefix"]:
            cfn["Prefix"] = rule["Filter"]["Prefix"]
        if "ExpiredObjectDeleteMarker" in rule.get("Expiration", {}):
            cfn["ExpiredObjectDeleteMarker"] = rule["Expiration"]["ExpiredObjectDeleteMarker"]
        if "Days" in rule.get("Expiration", {}):
            cfn["ExpirationInDays"] = rule["Expiration"]["Days"]
        rendered.append(cfn)
    return rendered


@pytest.mark.parametrize(("app_name", "days"), [("default", 30), ("cli", 7)])
def test_images_bucket_is_versioned_and_old_versions_expire(
    request: pytest.FixtureRequest, app_name: str, days: int
) -> None:
    app: Synthesized = request.getfixturevalue(f"{app_name}_app")
    bucket = resource_of(app, app.stack.storage.bucket)["Properties"]

    # Overwrites and DELETE /images/{id} keep the previous version for `days` days.
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = bucket["LifecycleConfiguration"]["Rules"]
    assert rules == _lifecycle_from_api_rules(days)
    assert {"NoncurrentDays": days} in [rule.get("NoncurrentVersionExpiration") for rule in rules]


def test_access_log_bucket_is_private_and_expires_logs(default_app: Synthesized) -> None:
    logs_bucket = resource_of(default_app, default_app.stack.storage.access_logs_bucket)
    properties = logs_bucket["Properties"]
    assert properties["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    assert properties["LifecycleConfiguration"]["Rules"][0]["ExpirationInDays"] == 90


def test_data_is_retained_by_default(default_app: Synthesized) -> None:
    storage = default_app.stack.storage
    for construct in (storage.bucket, storage.table, storage.access_logs_bucket):
        resource = resource_of(default_app, construct)
        assert resource["DeletionPolicy"] == "Retain"
        assert resource["UpdateReplacePolicy"] == "Retain"
    assert default_app.resources("Custom::S3AutoDeleteObjects") == {}


def test_data_is_destroyed_and_emptied_when_not_retained(cli_app: Synthesized) -> None:
    storage = cli_app.stack.storage
    for construct in (storage.bucket, storage.table, storage.access_logs_bucket):
        assert resource_of(cli_app, construct)["DeletionPolicy"] == "Delete"
    emptied = {
        resource["Properties"]["BucketName"]["Ref"]
        for resource in cli_app.resources("Custom::S3AutoDeleteObjects").values()
    }
    assert emptied == {
        cli_app.logical_id(storage.bucket),
        cli_app.logical_id(storage.access_logs_bucket),
    }


# --- ingest ------------------------------------------------------------------


def test_bucket_notifies_the_queue_for_created_and_removed_under_the_prefix(
    any_app: Synthesized,
) -> None:
    notifications = one(any_app, "Custom::S3BucketNotifications")["Properties"]
    prefix = any_app.stack.config.upload_prefix
    queue_arn = {"Fn::GetAtt": [any_app.logical_id(any_app.stack.ingest.queue), "Arn"]}

    assert notifications["BucketName"] == {"Ref": any_app.logical_id(any_app.stack.storage.bucket)}
    configuration = notifications["NotificationConfiguration"]
    assert set(configuration) == {"QueueConfigurations"}
    assert sorted(
        (c["Events"], c["Filter"], c["QueueArn"] == queue_arn)
        for c in configuration["QueueConfigurations"]
    ) == [
        (
            ["s3:ObjectCreated:*"],
            {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
            True,
        ),
        (
            ["s3:ObjectRemoved:*"],
            {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
            True,
        ),
    ]


def test_queue_and_dead_letter_queue(any_app: Synthesized) -> None:
    ingest = any_app.stack.ingest
    queue = resource_of(any_app, ingest.queue)["Properties"]
    dlq = resource_of(any_app, ingest.dead_letter_queue)["Properties"]
    function = resource_of(any_app, ingest.function)["Properties"]

    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {
            "Fn::GetAtt": [any_app.logical_id(ingest.dead_letter_queue), "Arn"]
        },
        "maxReceiveCount": 5,
    }
    assert queue["SqsManagedSseEnabled"] is True
    assert dlq["SqsManagedSseEnabled"] is True
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert queue["VisibilityTimeout"] >= 6 * function["Timeout"]
    # Both queues refuse plain HTTP.
    for queue_construct in (ingest.queue, ingest.retry_queue, ingest.dead_letter_queue):
        statements = next(
            p["Properties"]["PolicyDocument"]["Statement"]
            for p in any_app.resources("AWS::SQS::QueuePolicy").values()
            if p["Properties"]["Queues"] == [{"Ref": any_app.logical_id(queue_construct)}]
        )
        assert {
            "Action": "sqs:*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Resource": {"Fn::GetAtt": [any_app.logical_id(queue_construct), "Arn"]},
        } in statements


def _mapping_of(app: Synthesized, queue: Any) -> dict[str, Any]:
    source = {"Fn::GetAtt": [app.logical_id(queue), "Arn"]}
    [mapping] = [
        m["Properties"]
        for m in app.resources("AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["EventSourceArn"] == source
    ]
    return mapping


def test_event_source_mappings(any_app: Synthesized) -> None:
    ingest = any_app.stack.ingest
    assert len(any_app.resources("AWS::Lambda::EventSourceMapping")) == 2

    assert _mapping_of(any_app, ingest.queue) == {
        "BatchSize": 10,
        "MaximumBatchingWindowInSeconds": 5,
        "ScalingConfig": {"MaximumConcurrency": any_app.stack.config.ingest_max_concurrency},
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "EventSourceArn": {"Fn::GetAtt": [any_app.logical_id(ingest.queue), "Arn"]},
        "FunctionName": {"Ref": any_app.logical_id(ingest.function)},
    }
    # The retry queue hands each message over alone (decision 43).
    assert _mapping_of(any_app, ingest.retry_queue) == {
        "BatchSize": 1,
        "ScalingConfig": {"MaximumConcurrency": 2},
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "EventSourceArn": {"Fn::GetAtt": [any_app.logical_id(ingest.retry_queue), "Arn"]},
        "FunctionName": {"Ref": any_app.logical_id(ingest.function)},
    }


def test_retry_queue_parks_in_the_dead_letter_queue_after_four_receives(
    any_app: Synthesized,
) -> None:
    ingest = any_app.stack.ingest
    retry = resource_of(any_app, ingest.retry_queue)["Properties"]
    queue = resource_of(any_app, ingest.queue)["Properties"]
    assert retry["RedrivePolicy"] == {
        "deadLetterTargetArn": {
            "Fn::GetAtt": [any_app.logical_id(ingest.dead_letter_queue), "Arn"]
        },
        "maxReceiveCount": 4,  # after one receive on the ingest queue: five in all
    }
    assert retry["SqsManagedSseEnabled"] is True
    assert retry["VisibilityTimeout"] == queue["VisibilityTimeout"]


def test_concurrency_from_the_command_line(cli_app: Synthesized) -> None:
    mapping = _mapping_of(cli_app, cli_app.stack.ingest.queue)
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 7}


# --- functions -----------------------------------------------------------------


def _expected_environment(app: Synthesized, kind: str) -> dict[str, Any]:
    config = app.stack.config
    storage = app.stack.storage
    common = {
        r.ENV_BUCKET: {"Ref": app.logical_id(storage.bucket)},
        r.ENV_TABLE: {"Ref": app.logical_id(storage.table)},
        r.ENV_UPLOAD_PREFIX: config.upload_prefix,
        r.ENV_MODEL_ID: config.model_id,
        r.ENV_EMBEDDING_DIMENSION: str(config.embedding_dimension),
        r.ENV_VECTOR_STORE: config.vector_store,
        "POWERTOOLS_METRICS_NAMESPACE": r.METRICS_NAMESPACE,
        "LOG_LEVEL": "INFO",
        r.ENV_BEDROCK_CONNECT_TIMEOUT: Match.any_value(),
        r.ENV_BEDROCK_READ_TIMEOUT: Match.any_value(),
        r.ENV_BEDROCK_MAX_ATTEMPTS: Match.any_value(),
    }
    if kind == "ingest":
        return {
            **common,
            r.ENV_CAPTION_MODE: config.caption_mode,
            "POWERTOOLS_SERVICE_NAME": "imagesearch-ingest",
            r.ENV_INGEST_QUEUE_URL: {"Ref": app.logical_id(app.stack.ingest.queue)},
            r.ENV_INGEST_RETRY_QUEUE_URL: {"Ref": app.logical_id(app.stack.ingest.retry_queue)},
        }
    return {
        **common,
        r.ENV_CAPTION_MODE: config.caption_mode,
        "POWERTOOLS_SERVICE_NAME": "imagesearch-api",
        r.ENV_SNAPSHOT_PREFIX: r.SNAPSHOT_PREFIX,
        r.ENV_EMBEDDED_MAX_IMAGES: str(config.embedded_max_images),
    }


@pytest.mark.parametrize(
    ("kind", "handler", "memory", "timeout"),
    [("ingest", r.INGEST_HANDLER, 1024, 300), ("search", r.API_HANDLER, 2048, 29)],
)
def test_functions(
    any_app: Synthesized, kind: str, handler: str, memory: int, timeout: int
) -> None:
    component = any_app.stack.ingest if kind == "ingest" else any_app.stack.search
    logical_id = any_app.logical_id(component.function)

    any_app.template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Runtime": "python3.11",
            "Architectures": ["arm64"],
            "Handler": handler,
            "MemorySize": memory,
            "Timeout": timeout,
            "TracingConfig": {"Mode": "Active"},
            "LoggingConfig": {"LogGroup": {"Ref": any_app.logical_id(component.handler.log_group)}},
            "Environment": {"Variables": Match.exact(_expected_environment(any_app, kind))},
        },
    )
    environment = any_app.json["Resources"][logical_id]["Properties"]["Environment"]["Variables"]
    assert environment[r.ENV_EMBEDDING_DIMENSION] == str(any_app.stack.config.embedding_dimension)


def test_bedrock_call_budget_fits_the_function_timeouts(default_app: Synthesized) -> None:
    for component in (default_app.stack.ingest, default_app.stack.search):
        resource = resource_of(default_app, component.function)["Properties"]
        env = resource["Environment"]["Variables"]
        budget = int(env[r.ENV_BEDROCK_MAX_ATTEMPTS]) * (
            float(env[r.ENV_BEDROCK_CONNECT_TIMEOUT]) + float(env[r.ENV_BEDROCK_READ_TIMEOUT])
        )
        assert budget < resource["Timeout"]


def test_a_whole_batch_of_heavy_images_starts_within_the_ingest_timeout(
    default_app: Synthesized,
) -> None:
    # The handler starts a message only while one worst-case image (every Bedrock attempt
    # timing out, the SDK's backoff, the work on the image) still fits in the time left.
    from imagesearch.handlers.ingest import IMAGE_WORK_SECONDS, seconds_per_image
    from imagesearch.settings import IngestSettings, load_settings
    from stacks.ingest import BATCH_SIZE

    resource = resource_of(default_app, default_app.stack.ingest.function)["Properties"]
    env = {
        name: value
        for name, value in resource["Environment"]["Variables"].items()
        if isinstance(value, str)  # bucket and table names are references
    }
    need = seconds_per_image(
        load_settings(IngestSettings, {**env, r.ENV_BUCKET: "b-x", r.ENV_TABLE: "t-x"})
    )
    # A batch of images that each take the full work allowance must all start
    assert need + (BATCH_SIZE - 1) * IMAGE_WORK_SECONDS <= resource["Timeout"]


def test_cli_context_reaches_the_functions(cli_app: Synthesized) -> None:
    ingest = resource_of(cli_app, cli_app.stack.ingest.function)["Properties"]
    variables = ingest["Environment"]["Variables"]
    assert variables[r.ENV_EMBEDDING_DIMENSION] == "384"
    assert variables[r.ENV_CAPTION_MODE] == "joint"
    assert variables[r.ENV_UPLOAD_PREFIX] == "drop/photos/"
    search = resource_of(cli_app, cli_app.stack.search.function)["Properties"]
    assert search["Environment"]["Variables"][r.ENV_CAPTION_MODE] == "joint"


def test_both_functions_share_one_asset(default_app: Synthesized) -> None:
    codes = [
        resource_of(default_app, c.function)["Properties"]["Code"]
        for c in (default_app.stack.ingest, default_app.stack.search)
    ]
    assert codes[0] == codes[1]


def test_log_groups_have_retention(any_app: Synthesized) -> None:
    groups = any_app.resources("AWS::Logs::LogGroup")
    # ingest, search, API access logs, API execution logs
    assert len(groups) == 5
    for group in groups.values():
        assert group["Properties"]["RetentionInDays"] == 30
        assert group["DeletionPolicy"] == "Delete"


# --- API -----------------------------------------------------------------------


def _method_paths(app: Synthesized) -> dict[tuple[str, str], dict[str, Any]]:
    resources = app.resources("AWS::ApiGateway::Resource")
    api_id = app.logical_id(app.stack.search.api)

    def path_of(reference: Any) -> str:
        if reference == {"Fn::GetAtt": [api_id, "RootResourceId"]}:
            return ""
        resource = resources[reference["Ref"]]["Properties"]
        return f"{path_of(resource['ParentId'])}/{resource['PathPart']}"

    return {
        (path_of(m["Properties"]["ResourceId"]), m["Properties"]["HttpMethod"]): m["Properties"]
        for m in app.resources("AWS::ApiGateway::Method").values()
    }


def test_api_routes_and_authorization(default_app: Synthesized) -> None:
    methods = _method_paths(default_app)
    function_id = default_app.logical_id(default_app.stack.search.function)

    assert {route: m["AuthorizationType"] for route, m in methods.items()} == {
        ("/search", "POST"): "AWS_IAM",
        ("/images", "GET"): "AWS_IAM",
        ("/images/{image_id}", "GET"): "AWS_IAM",
        ("/images/{image_id}", "DELETE"): "AWS_IAM",
        ("/uploads", "POST"): "AWS_IAM",
        ("/health", "GET"): "NONE",
        ("/openapi.json", "GET"): "AWS_IAM",
    }
    for method in methods.values():
        integration = method["Integration"]
        assert integration["Type"] == "AWS_PROXY"
        assert integration["IntegrationHttpMethod"] == "POST"
        assert function_id in json.dumps(integration["Uri"])
    paths = {
        p["Properties"]["PathPart"]
        for p in default_app.resources("AWS::ApiGateway::Resource").values()
    }
    assert not any(part.startswith("{proxy") for part in paths)


def test_api_stage(default_app: Synthesized) -> None:
    stage = one(default_app, "AWS::ApiGateway::Stage")["Properties"]
    access_log_group = default_app.logical_id(default_app.stack.search.access_log_group)

    assert stage["TracingEnabled"] is True
    settings = _method_settings(default_app)[("/*", "*")]
    assert settings["MetricsEnabled"] is True
    # Throttling comes from context (apiRateLimit / apiBurstLimit), defaults in cdk.json.
    assert settings["ThrottlingRateLimit"] == r.CONTEXT_DEFAULTS["apiRateLimit"] == 50
    assert settings["ThrottlingBurstLimit"] == r.CONTEXT_DEFAULTS["apiBurstLimit"] == 100
    assert settings["DataTraceEnabled"] is False
    fields = json.loads(stage["AccessLogSetting"]["Format"])
    assert fields["requestId"] == "$context.requestId"
    assert fields["status"] == "$context.status"
    assert access_log_group in json.dumps(stage["AccessLogSetting"]["DestinationArn"])
    rest_api = one(default_app, "AWS::ApiGateway::RestApi")["Properties"]
    assert rest_api["EndpointConfiguration"] == {"Types": ["REGIONAL"]}


def test_stage_throttling_from_the_command_line(cli_app: Synthesized) -> None:
    settings = _method_settings(cli_app)[("/*", "*")]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (12.5, 25)


def _method_settings(app: Synthesized) -> dict[tuple[str, str], dict[str, Any]]:
    stage = one(app, "AWS::ApiGateway::Stage")["Properties"]
    return {(m["ResourcePath"], m["HttpMethod"]): m for m in stage["MethodSettings"]}


def test_health_has_its_own_low_method_throttle(any_app: Synthesized) -> None:
    from stacks.search_api import HEALTH_BURST_LIMIT, HEALTH_RATE_LIMIT

    # Unauthenticated: anonymous callers get a few requests per second of it, not the
    # stage's limit (API Gateway's resource paths escape "/" as "~1")
    settings = _method_settings(any_app)
    assert set(settings) == {("/*", "*"), ("/~1health", "GET")}
    health = settings[("/~1health", "GET")]
    assert (
        (health["ThrottlingRateLimit"], health["ThrottlingBurstLimit"])
        == (
            HEALTH_RATE_LIMIT,
            HEALTH_BURST_LIMIT,
        )
        == (5, 10)
    )
    stage = settings[("/*", "*")]
    assert health["ThrottlingRateLimit"] < stage["ThrottlingRateLimit"]
    assert health["ThrottlingBurstLimit"] < stage["ThrottlingBurstLimit"]


def test_health_throttle_never_exceeds_the_stage_throttle(
    synth: Callable[..., Synthesized],
) -> None:
    app = synth(apiRateLimit="2", apiBurstLimit="3")
    health = _method_settings(app)[("/~1health", "GET")]
    assert (health["ThrottlingRateLimit"], health["ThrottlingBurstLimit"]) == (2, 3)


def test_api_is_named_after_the_stack_and_the_5xx_alarm_watches_that_name(
    any_app: Synthesized,
) -> None:
    rest_api = one(any_app, "AWS::ApiGateway::RestApi")["Properties"]
    alarm = _alarms(any_app)["Api5xxErrors"]

    # Not CDK's default "RestApi", which every API made the same way in the account shares.
    assert rest_api["Name"] == any_app.stack.stack_name == r.DEFAULT_STACK_NAME
    assert alarm["Dimensions"] == [{"Name": "ApiName", "Value": rest_api["Name"]}]


def test_gateway_responses_are_json_messages(default_app: Synthesized) -> None:
    responses = {
        g["Properties"]["ResponseType"]: g["Properties"]
        for g in default_app.resources("AWS::ApiGateway::GatewayResponse").values()
    }
    expected_status = {
        "ACCESS_DENIED": "403",
        "MISSING_AUTHENTICATION_TOKEN": "403",
        "INVALID_SIGNATURE": "403",
        "EXPIRED_TOKEN": "403",
        "REQUEST_TOO_LARGE": "413",
        "THROTTLED": "429",
        "QUOTA_EXCEEDED": "429",
        "INTEGRATION_FAILURE": "502",
        "INTEGRATION_TIMEOUT": "504",
        "API_CONFIGURATION_ERROR": "500",
        "DEFAULT_4XX": None,
        "DEFAULT_5XX": None,
    }
    assert set(responses) == set(expected_status)
    for response_type, status in expected_status.items():
        response = responses[response_type]
        assert response.get("StatusCode") == status
        assert set(response["ResponseTemplates"]) == {"application/json"}
        template = response["ResponseTemplates"]["application/json"]
        assert template.startswith('{"message": ')
        # Static messages are valid JSON as they stand; the others use the quoted
        # $context.error.messageString.
        if "$context" not in template:
            assert isinstance(json.loads(template)["message"], str)
        else:
            assert template == '{"message": $context.error.messageString}'

    def message(response_type: str) -> str:
        text: str = json.loads(responses[response_type]["ResponseTemplates"]["application/json"])[
            "message"
        ]
        return text

    # The limit a client can really use is Lambda's 6 MB, not API Gateway's 10 MB:
    # bodies in between fail at the invoke, and that failure says so too.
    for response_type in ("REQUEST_TOO_LARGE", "INTEGRATION_FAILURE", "DEFAULT_5XX"):
        assert "6 MB" in message(response_type) and "10 MB" not in message(response_type)
        assert "POST /uploads" in message(response_type)
    assert responses["THROTTLED"]["ResponseParameters"] == {
        "gatewayresponse.header.Retry-After": "'1'"
    }


def test_api_invokes_only_the_search_function_per_route(default_app: Synthesized) -> None:
    permissions = default_app.resources("AWS::Lambda::Permission")
    function_arn = {
        "Fn::GetAtt": [default_app.logical_id(default_app.stack.search.function), "Arn"]
    }
    permissions = {
        name: p
        for name, p in permissions.items()
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
    }
    assert len(permissions) == 7  # one per method, no test-invoke permissions
    for permission in permissions.values():
        assert permission["Properties"]["FunctionName"] == function_arn
        assert permission["Properties"]["Principal"] == "apigateway.amazonaws.com"


# --- monitoring and outputs ------------------------------------------------------


def _alarms(app: Synthesized) -> dict[str, dict[str, Any]]:
    return {
        alarm_id: resource_of(app, alarm)["Properties"]
        for alarm_id, alarm in app.stack.monitoring.alarms.items()
    }


def test_alarms(default_app: Synthesized) -> None:
    alarms = _alarms(default_app)
    stack = default_app.stack
    ids = {
        "dlq": default_app.logical_id(stack.ingest.dead_letter_queue),
        "ingest": default_app.logical_id(stack.ingest.function),
        "search": default_app.logical_id(stack.search.function),
    }

    assert len(default_app.resources("AWS::CloudWatch::Alarm")) == len(alarms) == 9
    for alarm_id, alarm in alarms.items():
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        # Silence is failure only where a metric is reported on a schedule
        breaching = alarm_id == "EmbeddedIndexNearCapacity"
        assert alarm["TreatMissingData"] == ("breaching" if breaching else "notBreaching")
        assert alarm["EvaluationPeriods"] == 1
        assert alarm["AlarmDescription"]

    dlq = alarms["DeadLetterQueueNotEmpty"]
    assert (dlq["Namespace"], dlq["MetricName"], dlq["Threshold"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        0,
    )
    assert dlq["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [ids["dlq"], "QueueName"]}}
    ]
    ingest = alarms["IngestFunctionErrors"]
    assert (ingest["Namespace"], ingest["MetricName"], ingest["Threshold"]) == (
        "AWS/Lambda",
        "Errors",
        0,
    )
    assert ingest["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": ids["ingest"]}}]
    config = alarms["EmbedderConfigurationErrors"]
    assert (config["Namespace"], config["MetricName"], config["Threshold"]) == (
        r.METRICS_NAMESPACE,
        r.METRIC_CONFIGURATION_ERRORS,
        0,
    )
    assert config["Dimensions"] == [{"Name": "service", "Value": "imagesearch-ingest"}]
    search = alarms["SearchFunctionErrors"]
    assert search["MetricName"] == "Errors"
    assert search["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": ids["search"]}}]
    api = alarms["Api5xxErrors"]
    assert (api["Namespace"], api["MetricName"]) == ("AWS/ApiGateway", "5XXError")
    capacity = alarms["EmbeddedIndexNearCapacity"]
    assert (capacity["Namespace"], capacity["MetricName"], capacity["Threshold"]) == (
        r.METRICS_NAMESPACE,
        r.METRIC_INDEXED_IMAGES,
        0.8 * r.CONTEXT_DEFAULTS["embeddedMaxImages"] - 1,
    )
    assert capacity["Dimensions"] == [{"Name": "index", "Value": "embedded"}]
    assert "maintenance function reports every minute" in capacity["AlarmDescription"]
    maintenance = alarms["MaintenanceFunctionErrors"]
    assert (maintenance["Namespace"], maintenance["MetricName"], maintenance["Threshold"]) == (
        "AWS/Lambda",
        "Errors",
        0,
    )
    maintenance_id = default_app.logical_id(stack.maintenance.function)
    assert maintenance["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": maintenance_id}}]
    fallbacks = alarms["IndexSnapshotFallbacks"]
    assert (fallbacks["Namespace"], fallbacks["MetricName"], fallbacks["Threshold"]) == (
        r.METRICS_NAMESPACE,
        r.METRIC_SNAPSHOT_FALLBACKS,
        0,
    )
    # The dimensions the search function emits the metric with (imagesearch.metrics)
    assert fallbacks["Dimensions"] == [{"Name": "index", "Value": "embedded"}]
    assert fallbacks["Statistic"] == "Sum"


def test_maintenance_runs_on_a_schedule_with_the_memory_its_build_was_measured_against(
    default_app: Synthesized,
) -> None:
    from stacks.maintenance import memory_mb
    from stacks.sizing import maintenance_memory_mb

    stack = default_app.stack
    function = resource_of(default_app, stack.maintenance.function)["Properties"]
    assert function["Handler"] == r.MAINTENANCE_HANDLER
    # tests/integration/test_maintenance_memory.py measures against memory_mb
    assert function["MemorySize"] == memory_mb(stack.config)
    assert function["MemorySize"] == maintenance_memory_mb(250_000, 1024)
    variables = function["Environment"]["Variables"]
    assert variables[r.ENV_SNAPSHOT_PREFIX] == r.SNAPSHOT_PREFIX
    rule = resource_of(default_app, stack.maintenance.rule)["Properties"]
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    assert rule["Targets"][0]["Arn"] == {
        "Fn::GetAtt": [default_app.logical_id(stack.maintenance.function), "Arn"]
    }


def _reserved_concurrency(app: Synthesized, function: Any) -> Any:
    return resource_of(app, function)["Properties"].get("ReservedConcurrentExecutions")


def test_every_function_of_the_service_has_reserved_concurrency(any_app: Synthesized) -> None:
    # checkov CKV_AWS_115; and so a flood of searches cannot starve ingest (decision 39)
    stack, config = any_app.stack, any_app.stack.config
    assert _reserved_concurrency(any_app, stack.maintenance.function) == 1
    assert _reserved_concurrency(any_app, stack.search.function) == config.search_max_concurrency
    # Ingest: exactly what its two queues' event sources may run at once (a throttled
    # SQS poller's batch would burn a receive)
    mappings = any_app.resources("AWS::Lambda::EventSourceMapping").values()
    maxima = sorted(m["Properties"]["ScalingConfig"]["MaximumConcurrency"] for m in mappings)
    assert maxima == sorted([config.ingest_max_concurrency, RETRY_MAX_CONCURRENCY])
    assert _reserved_concurrency(any_app, stack.ingest.function) == sum(maxima)


def test_reserved_concurrency_from_the_command_line(
    default_app: Synthesized, cli_app: Synthesized
) -> None:
    assert _reserved_concurrency(default_app, default_app.stack.search.function) == 50
    assert _reserved_concurrency(cli_app, cli_app.stack.search.function) == 20
    assert (
        _reserved_concurrency(cli_app, cli_app.stack.ingest.function) == 7 + RETRY_MAX_CONCURRENCY
    )


def test_maintenance_runs_never_pile_up(default_app: Synthesized) -> None:
    # Reserved concurrency 1 throttles a run while another one runs; Lambda drops the
    # throttled event after a minute instead of queueing it for hours, and retries none
    config = one(default_app, "AWS::Lambda::EventInvokeConfig")["Properties"]
    assert config["FunctionName"] == {
        "Ref": default_app.logical_id(default_app.stack.maintenance.function)
    }
    assert (config["MaximumEventAgeInSeconds"], config["MaximumRetryAttempts"]) == (60, 0)


def test_search_memory_follows_embedded_capacity() -> None:
    from stacks.search_api import embedded_memory_mb

    assert embedded_memory_mb(100_000, 1024) == 2048  # the floor (CPU)
    at_million = embedded_memory_mb(1_000_000, 1024)
    assert 4 * 1.125 * 1024 < at_million < 10240  # matrix + headroom + overhead
    assert embedded_memory_mb(1_000_000, 4096) == 10240  # capped (config refuses it)


def test_configuration_alarm_watches_the_service_name_the_function_reports(
    default_app: Synthesized,
) -> None:
    ingest = resource_of(default_app, default_app.stack.ingest.function)["Properties"]
    alarm = _alarms(default_app)["EmbedderConfigurationErrors"]
    assert (
        alarm["Dimensions"][0]["Value"]
        == ingest["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    )
    assert alarm["Namespace"] == ingest["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]


def test_outputs(any_app: Synthesized) -> None:
    outputs = any_app.json["Outputs"]
    stack = any_app.stack
    assert set(outputs) == {
        r.OUTPUT_API_URL,
        r.OUTPUT_BUCKET,
        r.OUTPUT_UPLOAD_PREFIX,
        r.OUTPUT_TABLE,
        r.OUTPUT_QUEUE_URL,
        r.OUTPUT_DLQ_URL,
        r.OUTPUT_MODEL_ID,
        r.OUTPUT_DIMENSION,
        r.OUTPUT_VECTOR_STORE,
        r.OUTPUT_EMBEDDED_MAX_IMAGES,
    }
    value = {name: output["Value"] for name, output in outputs.items()}
    assert value[r.OUTPUT_BUCKET] == {"Ref": any_app.logical_id(stack.storage.bucket)}
    assert value[r.OUTPUT_TABLE] == {"Ref": any_app.logical_id(stack.storage.table)}
    assert value[r.OUTPUT_QUEUE_URL] == {"Ref": any_app.logical_id(stack.ingest.queue)}
    assert value[r.OUTPUT_DLQ_URL] == {"Ref": any_app.logical_id(stack.ingest.dead_letter_queue)}
    assert value[r.OUTPUT_UPLOAD_PREFIX] == stack.config.upload_prefix
    assert value[r.OUTPUT_MODEL_ID] == stack.config.model_id
    assert value[r.OUTPUT_DIMENSION] == str(stack.config.embedding_dimension)
    api_url = json.dumps(value[r.OUTPUT_API_URL])
    assert any_app.logical_id(stack.search.api) in api_url
    assert ".execute-api." in api_url
    stage = one(any_app, "AWS::ApiGateway::Stage")
    assert stage["Properties"]["StageName"] == "v1"
    assert any_app.logical_id(stack.search.api.deployment_stage) in api_url
