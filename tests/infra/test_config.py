"""CDK context -> AppConfig: coercion of `-c key=value` strings and clear synth-time errors."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from imagesearch import resources as r
from stacks.config import AppConfig, ConfigError
from tests.infra.conftest import SKIP_BUNDLING, cdk_json_context, synthesize


def test_cdk_json_holds_the_spec_keys_with_their_defaults() -> None:
    context = cdk_json_context()
    assert {key: context[key] for key in r.CONTEXT_DEFAULTS} == r.CONTEXT_DEFAULTS


def test_defaults_when_context_is_empty() -> None:
    config = AppConfig.from_context({})

    assert config == AppConfig(
        model_id="amazon.titan-embed-image-v1",
        embedding_dimension=1024,
        upload_prefix="uploads/",
        vector_store="dynamodb",
        ingest_max_concurrency=5,
        search_max_concurrency=50,
        caption_mode="none",
        retain_data=True,
        api_rate_limit=50,
        api_burst_limit=100,
        cors_origins=(),
        noncurrent_version_days=30,
        embedded_max_images=250_000,
        keep_legacy_change_index=False,
    )


def test_strings_from_the_command_line_are_coerced() -> None:
    # Given the values `cdk -c key=value` delivers: all strings
    context = {
        "modelId": " amazon.titan-embed-image-v1 ",
        "embeddingDimension": "256",
        "uploadPrefix": "inbox/",
        "vectorStore": "dynamodb",
        "ingestMaxConcurrency": "1000",
        "searchMaxConcurrency": "200",
        "captionMode": "joint",
        "retainData": "false",
    }

    # When
    config = AppConfig.from_context(context.get)

    # Then
    assert config.embedding_dimension == 256
    assert config.ingest_max_concurrency == 1000
    assert config.search_max_concurrency == 200
    assert config.retain_data is False
    assert config.caption_mode == "joint"
    assert config.model_id == "amazon.titan-embed-image-v1"
    assert config.upload_prefix == "inbox/"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("True", True),
        ("1", True),
        ("yes", True),
        ("false", False),
        ("FALSE", False),
        ("0", False),
        ("no", False),
        (True, True),
        (False, False),
    ],
)
def test_retain_data_accepts_booleans_and_their_spellings(raw: Any, expected: bool) -> None:
    assert AppConfig.from_context({"retainData": raw}).retain_data is expected


def test_config_is_frozen() -> None:
    config = AppConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.retain_data = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("context", "message"),
    [
        (
            {"embeddingDimension": "512"},
            "embeddingDimension 512 is not supported by "
            "amazon.titan-embed-image-v1; use one of 256, 384, 1024",
        ),
        ({"embeddingDimension": "1024.0"}, "embeddingDimension must be a whole number"),
        ({"embeddingDimension": True}, "embeddingDimension must be a whole number"),
        (
            {"modelId": "amazon.titan-embed-text-v2:0"},
            "modelId 'amazon.titan-embed-text-v2:0' "
            "is not supported; supported models: amazon.nova-2-multimodal-embeddings-v1:0, "
            "amazon.titan-embed-image-v1, cohere.embed-v4:0",
        ),
        ({"uploadPrefix": ""}, "uploadPrefix '' must not be empty"),
        ({"uploadPrefix": "uploads"}, "uploadPrefix 'uploads' must end with '/'"),
        ({"uploadPrefix": "/uploads/"}, "uploadPrefix '/uploads/' must not start with '/'"),
        ({"uploadPrefix": "a//b/"}, "must not contain '//'"),
        (
            {"uploadPrefix": "uploads/../"},
            "uploadPrefix 'uploads/../' must not contain '.' or '..'",
        ),
        ({"uploadPrefix": "./"}, "uploadPrefix './' must not contain '.' or '..' segments"),
        ({"uploadPrefix": "a/./b/"}, "must not contain '.' or '..' segments"),
        ({"uploadPrefix": "../"}, "must not contain '.' or '..' segments"),
        ({"uploadPrefix": "up*/"}, "must not contain '*', '?' or '$'"),
        ({"uploadPrefix": "${aws:username}/"}, "must not contain '*', '?' or '$'"),
        ({"uploadPrefix": "thumbnails/"}, "must not overlap the thumbnail prefix 'thumbnails/'"),
        ({"uploadPrefix": "thumbnails/new/"}, "must not overlap the thumbnail prefix"),
        ({"vectorStore": "faiss"}, "vectorStore 'faiss' is unknown; use 'dynamodb' or 's3vectors'"),
        ({"ingestMaxConcurrency": "1"}, "ingestMaxConcurrency must be between 2 and 1000"),
        ({"ingestMaxConcurrency": 1001}, "ingestMaxConcurrency must be between 2 and 1000"),
        ({"ingestMaxConcurrency": "-3"}, "ingestMaxConcurrency must be a whole number"),
        ({"searchMaxConcurrency": "0"}, "searchMaxConcurrency must be between 1 and 1000"),
        ({"searchMaxConcurrency": 1001}, "searchMaxConcurrency must be between 1 and 1000"),
        ({"searchMaxConcurrency": "many"}, "searchMaxConcurrency must be a whole number"),
        ({"searchMaxConcurrency": True}, "searchMaxConcurrency must be a whole number"),
        ({"captionMode": "separate"}, "captionMode must be one of none, joint"),
        ({"retainData": "maybe"}, "retainData must be true or false, got 'maybe'"),
        ({"modelId": 42}, "modelId must be a string"),
        ({"apiRateLimit": "0"}, "apiRateLimit must be above 0 and at most 10000"),
        ({"apiRateLimit": 20000}, "apiRateLimit must be above 0 and at most 10000"),
        ({"apiRateLimit": "fast"}, "apiRateLimit must be a number, got 'fast'"),
        ({"apiRateLimit": "nan"}, "apiRateLimit must be a finite number"),
        ({"apiRateLimit": True}, "apiRateLimit must be a number"),
        ({"apiBurstLimit": "0"}, "apiBurstLimit must be between 1 and 5000"),
        ({"apiBurstLimit": 5001}, "apiBurstLimit must be between 1 and 5000"),
        ({"apiBurstLimit": "2.5"}, "apiBurstLimit must be a whole number"),
        ({"corsOrigins": "*"}, "corsOrigins must not contain '*'"),
        ({"corsOrigins": ["https://*.example.com"]}, "corsOrigins must not contain '*'"),
        ({"corsOrigins": "https://a.example.com/app"}, "'https://a.example.com/app' is not an"),
        ({"corsOrigins": "a.example.com"}, "'a.example.com' is not an origin"),
        ({"corsOrigins": "ftp://a.example.com"}, "'ftp://a.example.com' is not an origin"),
        ({"corsOrigins": "https://A.example.com"}, "is not an origin: use scheme://host"),
        ({"corsOrigins": 5}, "corsOrigins must be a list of origins"),
        ({"corsOrigins": [5]}, "corsOrigins must hold strings"),
        ({"noncurrentVersionDays": "0"}, "noncurrentVersionDays must be between 1 and 36500"),
        ({"noncurrentVersionDays": "a month"}, "noncurrentVersionDays must be a whole number"),
        ({"embeddedMaxImages": "0"}, "embeddedMaxImages must be between 1000 and 1000000"),
        ({"embeddedMaxImages": "2000000"}, "beyond that use vectorStore=s3vectors"),
        ({"embeddedMaxImages": "lots"}, "embeddedMaxImages must be a whole number"),
        ({"uploadPrefix": "index-snapshots/"}, "must not overlap the index snapshot prefix"),
    ],
)
def test_invalid_context_raises_a_clear_error(context: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        AppConfig.from_context(context)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ()),
        ([], ()),
        ("https://a.example.com", ("https://a.example.com",)),
        (
            " https://a.example.com , http://localhost:8000,https://a.example.com",
            ("https://a.example.com", "http://localhost:8000"),
        ),
        (
            ["https://a.example.com", "http://127.0.0.1:5173"],
            ("https://a.example.com", "http://127.0.0.1:5173"),
        ),
    ],
)
def test_cors_origins_from_json_lists_and_command_line_strings(
    raw: Any, expected: tuple[str, ...]
) -> None:
    assert AppConfig.from_context({"corsOrigins": raw}).cors_origins == expected


def test_throttling_and_versioning_from_the_command_line() -> None:
    config = AppConfig.from_context(
        {"apiRateLimit": "0.5", "apiBurstLimit": "3", "noncurrentVersionDays": "90"}
    )
    assert (config.api_rate_limit, config.api_burst_limit) == (0.5, 3)
    assert config.noncurrent_version_days == 90


@pytest.mark.parametrize(
    "prefix", ["uploads/", "thumbs/", "a/b/c/", "thumbnail/", "photos 2024/", "v1.2/", ".cache/"]
)
def test_valid_prefixes(prefix: str) -> None:
    assert AppConfig.from_context({"uploadPrefix": prefix}).upload_prefix == prefix


def test_synth_fails_on_bad_context(tmp_path: Path) -> None:
    # Given a bad dimension on the command line, when the app is synthesized,
    # then synthesis stops with the validation message (before any resource exists).
    with pytest.raises(ConfigError, match="embeddingDimension 300 is not supported"):
        synthesize(tmp_path, **SKIP_BUNDLING, embeddingDimension="300")


def test_embedded_capacity_and_legacy_index_from_the_command_line() -> None:
    config = AppConfig.from_context(
        {"embeddedMaxImages": "400000", "keepLegacyChangeIndex": "true"}
    )
    assert (config.embedded_max_images, config.keep_legacy_change_index) == (400_000, True)


def test_legacy_change_index_is_kept_only_when_asked() -> None:
    names = [i["IndexName"] for i in r.table_definition("t")["GlobalSecondaryIndexes"]]
    assert names == [r.INDEX_CHANGES, r.INDEX_BY_STATUS]
    upgrading = r.table_definition("t", legacy_change_index=True)["GlobalSecondaryIndexes"]
    assert [i["IndexName"] for i in upgrading] == [*names, r.INDEX_BY_CHANGE]


# --- vectorStore=s3vectors only where Amazon S3 Vectors is (issue 16 item 4b) ---------


def test_synth_with_a_known_region_refuses_s3vectors_where_aws_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the CDK CLI deploying the scale tier to São Paulo (Titan is offered there)
    monkeypatch.setenv("CDK_DEFAULT_REGION", "sa-east-1")

    # Then synth stops, naming the region, every region it knows and the way out
    with pytest.raises(ConfigError) as error:
        synthesize(tmp_path, **SKIP_BUNDLING, vectorStore="s3vectors")
    message = str(error.value)
    assert "Amazon S3 Vectors is not available in region sa-east-1" in message
    assert f"by this release's table: {', '.join(sorted(r.S3VECTORS_REGIONS))})" in message
    assert "-c vectorStoreRegions=sa-east-1" in message


@pytest.mark.parametrize(
    ("context", "region"),
    [
        ({"vectorStore": "s3vectors"}, "eu-west-1"),
        ({"vectorStore": "s3vectors"}, None),  # environment-agnostic: the template's rule
        ({"vectorStore": "dynamodb"}, "sa-east-1"),  # the embedded tier runs anywhere
        ({"vectorStore": "s3vectors", "vectorStoreRegions": "sa-east-1"}, "sa-east-1"),
        ({"vectorStore": "s3vectors", "vectorStoreRegions": ["sa-east-1"]}, "sa-east-1"),
    ],
)
def test_s3vectors_regions_that_pass(context: dict[str, Any], region: str | None) -> None:
    config = AppConfig.from_context(context, region=region)  # no ConfigError
    if region is not None and config.vector_store == "s3vectors":
        assert region in config.allowed_vector_store_regions


def test_vector_store_regions_entries_must_be_region_names() -> None:
    with pytest.raises(ConfigError, match="vectorStoreRegions entry 'São Paulo' is not a region"):
        AppConfig.from_context({"vectorStoreRegions": "São Paulo"})


def test_environment_agnostic_scale_tier_template_checks_the_region_at_deploy_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CDK_DEFAULT_REGION", raising=False)
    app = synthesize(
        tmp_path, **SKIP_BUNDLING, vectorStore="s3vectors", vectorStoreRegions="mx-central-1"
    )

    rule = app.json["Rules"]["S3VectorsOfferedInRegion"]["Assertions"]
    assert len(rule) == 1
    assert rule[0]["Assert"] == {
        "Fn::Contains": [
            sorted({*r.S3VECTORS_REGIONS, "mx-central-1"}),
            {"Ref": "AWS::Region"},
        ]
    }
    assert "-c vectorStoreRegions=<region>" in rule[0]["AssertDescription"]


def test_the_embedded_tier_template_has_no_s3vectors_region_rule(default_app: Any) -> None:
    assert "S3VectorsOfferedInRegion" not in default_app.json["Rules"]
