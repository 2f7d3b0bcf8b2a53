"""A model switch in the template (``previousModelId``/``previousEmbeddingDimension``):
InvokeModel on exactly both models while it runs and on the new one only afterwards,
the maintenance function's switch grants, both S3 Vectors indexes under logical ids that
survive every deploy of the switch, and clear synth errors for a switch that is none."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from imagesearch import resources as r
from stacks.config import AppConfig, ConfigError
from tests.infra.conftest import Synthesized
from tests.infra.test_iam import Arns, expand, image_count_item, role_grants
from tests.infra.test_models_config import bedrock_grants, fm, profile

TITAN, NOVA, COHERE = r.TITAN_MODEL_ID, r.NOVA_MODEL_ID, r.COHERE_MODEL_ID
SWITCH = {"modelId": NOVA, "embeddingDimension": "1024", "previousModelId": TITAN}


def env_of(app: Synthesized, function: Any) -> dict[str, Any]:
    resource = app.json["Resources"][app.logical_id(function)]
    variables: dict[str, Any] = resource["Properties"]["Environment"]["Variables"]
    return variables


@pytest.mark.parametrize(
    ("context", "arns"),
    [
        # Titan -> Nova: both foundation models in the stack's region
        (SWITCH, [fm(NOVA), fm(TITAN)]),
        # Titan -> Cohere through the EU profile: the profile, its destinations, Titan
        (
            {"modelId": f"eu.{COHERE}", "embeddingDimension": "1024", "previousModelId": TITAN},
            [
                profile(f"eu.{COHERE}"),
                fm(COHERE),
                fm(COHERE, r.ANY_REGION),
                fm(TITAN),
            ],
        ),
        # The switch done, deployed again without previousModelId: the new model only
        ({"modelId": NOVA, "embeddingDimension": "1024"}, [fm(NOVA)]),
    ],
    ids=["titan-to-nova", "titan-to-cohere-eu", "after-the-switch"],
)
def test_invoke_model_covers_both_models_only_while_switching(
    synth: Callable[..., Synthesized], context: dict[str, str], arns: list[Any]
) -> None:
    app = synth(**context)
    expected = {("bedrock:InvokeModel", json.dumps(arn, sort_keys=True)) for arn in arns}
    for handler in (app.stack.ingest.handler, app.stack.search.handler):
        assert bedrock_grants(app, handler.role) == expected
    switching = "previousModelId" in context
    for function in (app.stack.ingest.function, app.stack.search.function):
        env = env_of(app, function)
        assert env.get(r.ENV_PREVIOUS_MODEL_ID) == (TITAN if switching else None)
        assert env.get(r.ENV_PREVIOUS_EMBEDDING_DIMENSION) == ("1024" if switching else None)


def test_maintenance_gets_the_switch_grants_on_the_embedded_tier(
    synth: Callable[..., Synthesized],
) -> None:
    app = synth(**SWITCH)
    arns = Arns(app)
    maintenance = app.stack.maintenance
    assert maintenance is not None
    grants = role_grants(app, app.logical_id(maintenance.handler.role))
    switch = expand(
        (
            {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Scan"},
            [arns.table],
        ),
        ("dynamodb:Query", [{"Fn::Join": ["", [arns.table, f"/index/{r.INDEX_BY_STATUS}"]]}]),
        ({"sqs:SendMessage", "sqs:GetQueueAttributes"}, [arns.queue]),
    )
    assert switch <= grants
    # Beyond the snapshot grants, nothing else; and no model call from maintenance
    snapshot = expand(
        ({"logs:CreateLogStream", "logs:PutLogEvents"}, [arns.log_group(maintenance.handler)]),
        ({"xray:PutTraceSegments", "xray:PutTelemetryRecords"}, ["*"]),
        ({"dynamodb:Scan", "dynamodb:BatchGetItem"}, [arns.table]),
        ("dynamodb:Query", [{"Fn::Join": ["", [arns.table, f"/index/{r.INDEX_CHANGES}"]]}]),
        (
            {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"},
            [arns.objects(r.SNAPSHOT_PREFIX)],
        ),
        ("dynamodb:PutItem", [image_count_item(arns)]),
    )
    assert grants == switch | snapshot
    env = env_of(app, maintenance.function)
    assert env[r.ENV_INGEST_QUEUE_URL] == {"Ref": app.logical_id(app.stack.ingest.queue)}
    # Search memory holds both matrices while an instance changes over
    search = app.json["Resources"][app.logical_id(app.stack.search.function)]
    plain = synth(modelId=NOVA, embeddingDimension="1024")
    single = plain.json["Resources"][plain.logical_id(plain.stack.search.function)]
    assert search["Properties"]["MemorySize"] > single["Properties"]["MemorySize"]


def _index_ids(app: Synthesized) -> dict[str, str]:
    """IndexName -> logical id of every S3 Vectors index in the template."""
    return {
        resource["Properties"]["IndexName"]: logical_id
        for logical_id, resource in app.resources("AWS::S3Vectors::Index").items()
    }


def test_scale_tier_switch_keeps_each_index_under_one_logical_id(
    synth: Callable[..., Synthesized],
) -> None:
    before = synth(vectorStore="s3vectors")
    during = synth(vectorStore="s3vectors", **SWITCH)
    after = synth(vectorStore="s3vectors", modelId=NOVA, embeddingDimension="1024")
    titan, nova = r.vector_index_name(TITAN, 1024), r.vector_index_name(NOVA, 1024)

    assert set(_index_ids(before)) == {titan}
    assert set(_index_ids(during)) == {titan, nova}
    assert set(_index_ids(after)) == {nova}
    # Same name, same logical id in every deploy: CloudFormation never replaces one
    assert _index_ids(during)[titan] == _index_ids(before)[titan]
    assert _index_ids(during)[nova] == _index_ids(after)[nova]
    # The scale tier's maintenance function runs before, during and after a switch: it
    # heals a switch abandoned by a deploy without previousModelId (decision 42)
    for app in (before, after):
        maintenance = app.stack.maintenance
        assert maintenance is not None
        grants = role_grants(app, app.logical_id(maintenance.handler.role))
        assert expand(({"sqs:SendMessage", "sqs:GetQueueAttributes"}, [Arns(app).queue])) <= grants
        assert not [action for action, _ in grants if action.startswith(("s3vectors:", "s3:"))]
        env = env_of(app, maintenance.function)
        assert r.ENV_PREVIOUS_MODEL_ID not in env
        assert env[r.ENV_INGEST_QUEUE_URL] == {"Ref": app.logical_id(app.stack.ingest.queue)}


def test_scale_tier_switch_grants_both_indexes_and_removal_of_the_previous_one(
    synth: Callable[..., Synthesized],
) -> None:
    app = synth(vectorStore="s3vectors", **SWITCH)
    vectors = app.stack.vectors
    assert vectors is not None and vectors.previous_index is not None
    ids = _index_ids(app)
    new = {"Fn::GetAtt": [ids[r.vector_index_name(NOVA, 1024)], "IndexArn"]}
    old = {"Fn::GetAtt": [ids[r.vector_index_name(TITAN, 1024)], "IndexArn"]}
    ingest = role_grants(app, app.logical_id(app.stack.ingest.handler.role))
    search = role_grants(app, app.logical_id(app.stack.search.handler.role))
    assert expand(({"s3vectors:PutVectors", "s3vectors:DeleteVectors"}, [new, old])) <= ingest
    searches = {"s3vectors:QueryVectors", "s3vectors:GetVectors", "s3vectors:DeleteVectors"}
    assert expand((searches, [new, old])) <= search

    maintenance = app.stack.maintenance
    assert maintenance is not None
    grants = role_grants(app, app.logical_id(maintenance.handler.role))
    s3v = {(action, resource) for action, resource in grants if action.startswith("s3vectors:")}
    assert s3v == expand(({"s3vectors:ListVectors", "s3vectors:DeleteVectors"}, [old]))
    # No snapshot grants on the scale tier
    assert not [action for action, _ in grants if action.startswith("s3:")]
    env = env_of(app, maintenance.function)
    assert env[r.ENV_VECTOR_INDEX] == r.vector_index_name(NOVA, 1024)
    assert env[r.ENV_PREVIOUS_MODEL_ID] == TITAN


@pytest.mark.parametrize("store", ["dynamodb", "s3vectors"])
def test_a_switch_is_nag_and_cfn_lint_clean(synth: Callable[..., Synthesized], store: str) -> None:
    from aws_cdk.assertions import Match
    from cfnlint.api import lint
    from cfnlint.config import ManualArgs

    from tests.infra.test_compliance import ACCEPTED_CFN_LINT_WARNINGS, LINT_REGIONS

    app = synth(vectorStore=store, **SWITCH)
    nag = Match.string_like_regexp("AwsSolutions-.*")
    assert app.annotations.find_error("*", nag) == []
    assert app.annotations.find_warning("*", nag) == []
    matches = lint(json.dumps(app.json), config=ManualArgs(regions=LINT_REGIONS))
    assert [m for m in matches if m.rule.id not in ACCEPTED_CFN_LINT_WARNINGS] == []


@pytest.mark.parametrize(
    ("context", "message"),
    [
        (
            {"previousModelId": TITAN},
            r"previousModelId amazon.titan-embed-image-v1 with dimension 1024 is the deployed"
            r" modelId and embeddingDimension: there is nothing to switch from",
        ),
        (
            {"modelId": NOVA, "previousModelId": TITAN, "previousEmbeddingDimension": "3072"},
            r"previousEmbeddingDimension 3072 is not supported by amazon.titan-embed-image-v1",
        ),
        (
            {"modelId": NOVA, "previousModelId": "amazon.titan-embed-text-v2:0"},
            r"previousModelId 'amazon.titan-embed-text-v2:0' is not supported",
        ),
        (
            {"previousEmbeddingDimension": "256"},
            r"previousEmbeddingDimension is set without previousModelId",
        ),
    ],
    ids=["same-model-and-dimension", "bad-dimension", "unknown-model", "dimension-alone"],
)
def test_a_switch_that_is_none_is_a_clear_synth_error(
    context: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        AppConfig.from_context(context)


def test_same_model_at_another_dimension_is_a_switch() -> None:
    config = AppConfig.from_context(
        {"embeddingDimension": "256", "previousModelId": TITAN, "previousEmbeddingDimension": 1024}
    )
    assert config.previous_space == (TITAN, 1024)
    assert config.model_ids == (TITAN,)
    # An empty value on the command line (-c previousModelId=) is no switch
    assert AppConfig.from_context({"previousModelId": ""}).previous_space is None


def test_both_models_must_be_offered_in_the_region() -> None:
    # Nova is in us-east-1 only; Titan also elsewhere: a switch needs both
    with pytest.raises(ConfigError, match="not offered in region eu-west-1"):
        AppConfig.from_context({"modelId": TITAN, "previousModelId": NOVA}, region="eu-west-1")
    assert AppConfig.from_context(SWITCH).allowed_model_regions == ("us-east-1",)
