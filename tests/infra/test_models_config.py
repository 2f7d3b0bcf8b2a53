"""Model configuration at synth: ids and dimensions per model, inference profiles, the
region table (issue 9 finding 15) with its override, and the IAM of each model kind:
InvokeModel on exactly the ARNs Bedrock authorises the call against, nothing wider; a
cross-region inference profile is granted the model wherever AWS may route it (issue 16)."""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from imagesearch import resources as r
from stacks.config import AppConfig, ConfigError
from tests.infra.conftest import SKIP_BUNDLING, Synthesized, synthesize
from tests.infra.test_iam import _as_list, _key


def fm(model: str, region: str | None = None) -> Any:
    """A foundation-model ARN as CloudFormation renders it (region None: the stack's)."""
    if region is None:
        parts: list[Any] = [
            "arn:",
            {"Ref": "AWS::Partition"},
            ":bedrock:",
            {"Ref": "AWS::Region"},
            f"::foundation-model/{model}",
        ]
    else:
        parts = ["arn:", {"Ref": "AWS::Partition"}, f":bedrock:{region}::foundation-model/{model}"]
    return {"Fn::Join": ["", parts]}


def profile(profile_id: str) -> Any:
    return {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":bedrock:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                f":inference-profile/{profile_id}",
            ],
        ]
    }


COHERE = r.COHERE_MODEL_ID
CASES: dict[str, tuple[dict[str, str], list[Any]]] = {
    "titan": ({}, [fm(r.TITAN_MODEL_ID)]),
    "nova": ({"modelId": r.NOVA_MODEL_ID, "embeddingDimension": "3072"}, [fm(r.NOVA_MODEL_ID)]),
    "cohere": ({"modelId": COHERE, "embeddingDimension": "1536"}, [fm(COHERE)]),
    # AWS lists no destinations for the geo profiles: the model in this (source) region
    # and, for routing, in any region ("*"), but no other model (docs/models.md).
    "cohere-eu-profile": (
        {"modelId": f"eu.{COHERE}", "embeddingDimension": "256"},
        [profile(f"eu.{COHERE}"), fm(COHERE), fm(COHERE, "*")],
    ),
    "cohere-us-profile": (
        {"modelId": f"us.{COHERE}", "embeddingDimension": "1024"},
        [profile(f"us.{COHERE}"), fm(COHERE), fm(COHERE, "*")],
    ),
    "cohere-global-profile": (
        {"modelId": f"global.{COHERE}", "embeddingDimension": "512"},
        [profile(f"global.{COHERE}"), fm(COHERE), fm(COHERE, "")],
    ),
}


def bedrock_grants(app: Synthesized, role: Any) -> set[tuple[str, str]]:
    role_id = app.logical_id(role)
    found: set[tuple[str, str]] = set()
    for policy in app.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} not in policy["Properties"]["Roles"]:
            continue
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            actions = _as_list(statement["Action"])
            if any(a.startswith("bedrock:") for a in actions):
                assert actions == ["bedrock:InvokeModel"]
                found |= {
                    (a, _key(res)) for a in actions for res in _as_list(statement["Resource"])
                }
    return found


@pytest.mark.parametrize("case", list(CASES))
def test_invoke_model_is_granted_on_exactly_the_models_arns(
    synth: Callable[..., Synthesized], case: str
) -> None:
    context, arns = CASES[case]
    app = synth(**context)
    expected = {("bedrock:InvokeModel", _key(arn)) for arn in arns}
    for handler in (app.stack.ingest.handler, app.stack.search.handler):
        assert bedrock_grants(app, handler.role) == expected
    # And nothing in either policy mentions another model or a wildcard bedrock resource
    text = json.dumps(app.json["Resources"])
    assert "foundation-model/*" not in text and "inference-profile/*" not in text


def allows(app: Synthesized, role: Any, arn: str, *, region: str, account: str) -> bool:
    """Whether the role's InvokeModel resources match ``arn`` in a stack deployed to
    ``region`` (IAM's ``*`` and ``?`` wildcards; the partition is ``aws``)."""
    for _, resource in bedrock_grants(app, role):
        parts = json.loads(resource)["Fn::Join"][1]
        values = {"AWS::Partition": "aws", "AWS::Region": region, "AWS::AccountId": account}
        pattern = "".join(p if isinstance(p, str) else values[p["Ref"]] for p in parts)
        if fnmatch.fnmatchcase(arn, pattern):
            return True
    return False


@pytest.mark.parametrize("profile_id", list(r.INFERENCE_PROFILES))
def test_each_profile_is_granted_the_model_where_its_table_row_says_it_routes(
    synth: Callable[..., Synthesized], profile_id: str
) -> None:
    row = r.INFERENCE_PROFILES[profile_id]
    app = synth(modelId=profile_id, embeddingDimension="1024")
    arns = [profile(profile_id), fm(row.model_id)]
    arns += [fm(row.model_id, destination) for destination in row.destinations]
    for handler in (app.stack.ingest.handler, app.stack.search.handler):
        assert bedrock_grants(app, handler.role) == {
            ("bedrock:InvokeModel", _key(arn)) for arn in arns
        }


def test_a_profile_reaches_the_model_in_every_region_it_may_route_to(
    synth: Callable[..., Synthesized],
) -> None:
    # Given the EU profile, whose destinations AWS does not list
    app = synth(modelId=f"eu.{COHERE}", embeddingDimension="256")
    role = app.stack.ingest.handler.role

    def model_in(region: str, model: str = COHERE) -> str:
        return f"arn:aws:bedrock:{region}::foundation-model/{model}"

    # Then the model is allowed in regions the old fixed EU list lacked (Zurich, Spain)
    for region in ("eu-central-2", "eu-south-2", "eu-central-1"):
        assert allows(app, role, model_in(region), region="eu-west-1", account="111122223333")
    # and the profile in the stack's own region and account, but no other model or account
    profile_arn = f"arn:aws:bedrock:eu-west-1:111122223333:inference-profile/eu.{COHERE}"
    assert allows(app, role, profile_arn, region="eu-west-1", account="111122223333")
    assert not allows(
        app,
        role,
        profile_arn.replace("111122223333", "444455556666"),
        region="eu-west-1",
        account="111122223333",
    )
    assert not allows(
        app,
        role,
        model_in("eu-central-2", r.TITAN_MODEL_ID),
        region="eu-west-1",
        account="111122223333",
    )


def test_a_source_region_added_with_model_regions_is_granted_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the CLI deploying the EU profile to eu-south-2, accepted through modelRegions
    monkeypatch.setenv("CDK_DEFAULT_REGION", "eu-south-2")
    app = synthesize(tmp_path, **SKIP_BUNDLING, modelId=f"eu.{COHERE}", modelRegions="eu-south-2")

    # Then both functions may call the model in that source region
    model = f"arn:aws:bedrock:eu-south-2::foundation-model/{COHERE}"
    for handler in (app.stack.ingest.handler, app.stack.search.handler):
        assert allows(app, handler.role, model, region="eu-south-2", account="111122223333")
    rule = app.json["Rules"]["ModelOfferedInRegion"]["Assertions"][0]
    assert "eu-south-2" in rule["Assert"]["Fn::Contains"][0]


def test_the_profile_table_is_the_one_docs_models_md_sources() -> None:
    # docs/models.md's table (with its links) is the code's table, row for row
    text = (Path(__file__).resolve().parents[2] / "docs" / "models.md").read_text()
    rows = re.findall(r"^\| `([a-z]+\.[^`]+)` \| ([^|]+) \| ([^|]+) \|", text, re.MULTILINE)
    documented = {
        profile_id: (
            tuple(re.findall(r"[a-z]{2}(?:-[a-z]+)+-[0-9]", sources)),
            destinations.strip(),
        )
        for profile_id, sources, destinations in rows
    }
    names = {
        (r.ANY_REGION,): "any region (`*`)",
        (r.ANY_COMMERCIAL_REGION,): "any commercial region",
    }
    assert documented == {
        profile_id: (
            row.source_regions,
            names.get(row.destinations, ", ".join(row.destinations)),
        )
        for profile_id, row in r.INFERENCE_PROFILES.items()
    }


@pytest.mark.parametrize(
    ("model_id", "offered"),
    [
        # The Cohere Embed v4 model card lists us., eu. and global. only
        (
            f"apac.{COHERE}",
            f"its profiles: us.{COHERE}, eu.{COHERE}, global.{COHERE}",
        ),
        # No profile could be sourced for Titan G1 or Nova 2
        (f"us.{r.TITAN_MODEL_ID}", "its profiles: none"),
        (f"global.{r.NOVA_MODEL_ID}", "its profiles: none"),
    ],
)
def test_synth_refuses_a_profile_aws_does_not_offer_naming_the_valid_ones(
    tmp_path: Path, model_id: str, offered: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(offered)) as error:
        synthesize(tmp_path, **SKIP_BUNDLING, modelId=model_id)
    assert f"AWS offers no {model_id.partition('.')[0]!r} cross-region inference" in str(
        error.value
    )


def test_template_rule_checks_the_region_at_deploy_time(synth: Callable[..., Synthesized]) -> None:
    app = synth(modelId=r.NOVA_MODEL_ID, embeddingDimension="1024", modelRegions="us-west-2")
    rule = app.json["Rules"]["ModelOfferedInRegion"]["Assertions"][0]
    assert rule["Assert"] == {"Fn::Contains": [["us-east-1", "us-west-2"], {"Ref": "AWS::Region"}]}
    assert "pass -c modelRegions=<region>" in rule["AssertDescription"]


@pytest.mark.parametrize(
    ("model_id", "dimensions"),
    [
        (r.TITAN_MODEL_ID, (256, 384, 1024)),
        (r.NOVA_MODEL_ID, (256, 384, 1024, 3072)),
        (r.COHERE_MODEL_ID, (256, 512, 1024, 1536)),
        (f"us.{r.COHERE_MODEL_ID}", (256, 512, 1024, 1536)),
    ],
)
def test_each_models_dimensions_are_accepted_and_others_refused(
    model_id: str, dimensions: tuple[int, ...]
) -> None:
    for dimension in dimensions:
        assert AppConfig.from_context({"modelId": model_id, "embeddingDimension": dimension})
    for dimension in {256, 384, 512, 768, 1024, 1536, 3072} - set(dimensions):
        with pytest.raises(ConfigError, match=f"embeddingDimension {dimension} is not supported"):
            AppConfig.from_context({"modelId": model_id, "embeddingDimension": dimension})


@pytest.mark.parametrize(
    ("context", "region", "message"),
    [
        (
            {"modelId": f"us.{r.NOVA_MODEL_ID}"},
            None,
            "AWS offers no 'us' cross-region inference profile for "
            "amazon.nova-2-multimodal-embeddings-v1:0; its profiles: none; or use "
            "amazon.nova-2-multimodal-embeddings-v1:0 in one of its regions (us-east-1)",
        ),
        ({"modelId": "cohere.embed-v3"}, None, "is not supported; supported models:"),
        (
            {"modelId": r.NOVA_MODEL_ID},
            "eu-west-1",
            "modelId amazon.nova-2-multimodal-embeddings-v1:0 is not offered in region eu-west-1",
        ),
        (
            {"modelId": r.COHERE_MODEL_ID},
            "eu-central-1",
            "or a cross-region inference profile that serves eu-central-1 "
            "(eu.cohere.embed-v4:0, global.cohere.embed-v4:0)",
        ),
        ({}, "me-central-1", "pass -c modelRegions=me-central-1"),
        ({"modelRegions": "not a region"}, None, "modelRegions entry 'not a region'"),
    ],
)
def test_model_and_region_problems_are_clear_errors(
    context: dict[str, Any], region: str | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        AppConfig.from_context(context, region=region)


@pytest.mark.parametrize(
    ("context", "region"),
    [
        ({}, "eu-west-2"),
        ({"modelId": r.NOVA_MODEL_ID}, "us-east-1"),
        ({"modelId": f"eu.{r.COHERE_MODEL_ID}"}, "eu-central-1"),
        ({"modelId": f"global.{r.COHERE_MODEL_ID}"}, "ap-southeast-2"),
        # A region AWS added later, accepted through the override (list or string)
        ({"modelId": r.NOVA_MODEL_ID, "modelRegions": ["eu-west-1"]}, "eu-west-1"),
        ({"modelRegions": "me-central-1, il-central-1"}, "il-central-1"),
        ({}, None),  # environment-agnostic synth: the template rule checks at deploy
    ],
)
def test_models_offered_in_the_region_pass(context: dict[str, Any], region: str | None) -> None:
    config = AppConfig.from_context(context, region=region)
    assert region is None or region in config.allowed_model_regions


def test_synth_with_a_known_region_refuses_a_model_it_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the CDK CLI deploying to eu-west-1 (it sets CDK_DEFAULT_REGION)
    monkeypatch.setenv("CDK_DEFAULT_REGION", "eu-west-1")
    with pytest.raises(ConfigError, match="not offered in region eu-west-1"):
        synthesize(tmp_path, **SKIP_BUNDLING, modelId=r.NOVA_MODEL_ID)


@pytest.mark.parametrize(
    "case", ["nova", "cohere-eu-profile", "cohere-us-profile", "cohere-global-profile"]
)
def test_each_model_kind_is_nag_and_cfn_lint_clean(
    synth: Callable[..., Synthesized], case: str
) -> None:
    from aws_cdk.assertions import Match
    from cfnlint.api import lint
    from cfnlint.config import ManualArgs

    from tests.infra.test_compliance import ACCEPTED_CFN_LINT_WARNINGS, LINT_REGIONS

    app = synth(**CASES[case][0])
    nag = Match.string_like_regexp("AwsSolutions-.*")
    assert app.annotations.find_error("*", nag) == []
    assert app.annotations.find_warning("*", nag) == []
    matches = lint(json.dumps(app.json), config=ManualArgs(regions=LINT_REGIONS))
    assert [m for m in matches if m.rule.id not in ACCEPTED_CFN_LINT_WARNINGS] == []
