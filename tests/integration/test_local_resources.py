"""Local mode's resources on a restored state (moto_env.existing_resources): looked up,
not written again, when the saved state holds them as this version makes them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from imagesearch.local.moto_env import (
    AwsClients,
    LocalNames,
    create_resources,
    existing_resources,
    resources_fingerprint,
)

REGION = "us-east-1"


@pytest.fixture
def clients() -> Iterator[AwsClients]:
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        yield AwsClients(
            s3=session.client("s3"), sqs=session.client("sqs"), dynamodb=session.client("dynamodb")
        )


def test_existing_resources_are_the_created_ones(clients: AwsClients) -> None:
    created = create_resources(clients, LocalNames(), region=REGION)

    assert existing_resources(clients, LocalNames(), region=REGION) == created


def test_existing_resources_refuse_a_state_without_them(clients: AwsClients) -> None:
    with pytest.raises(ClientError):
        existing_resources(clients, LocalNames(), region=REGION)


def test_the_fingerprint_follows_what_create_resources_sets_up() -> None:
    names = LocalNames()

    assert resources_fingerprint(names, REGION) == resources_fingerprint(LocalNames(), REGION)
    assert resources_fingerprint(names, REGION) != resources_fingerprint(names, "eu-west-1")
    assert resources_fingerprint(names, REGION) != resources_fingerprint(
        replace(names, noncurrent_version_days=names.noncurrent_version_days + 1), REGION
    )
    assert resources_fingerprint(names, REGION) != resources_fingerprint(
        replace(names, upload_prefix="elsewhere/"), REGION
    )


def test_a_restored_state_missing_a_resource_gets_it_created(
    clients: AwsClients, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from imagesearch.local.app import LocalMode

    # Given a saved state said to hold the resources, but without them
    mode = LocalMode(port=0, dropbox=tmp_path / "dropbox")
    mode._clients = clients

    # When local mode looks them up
    resources = mode._resources(REGION, True)

    # Then it says so and creates them
    assert "the saved state lacks a resource" in caplog.text
    assert existing_resources(clients, LocalNames(), region=REGION) == resources
