"""Integration tier: real handlers on moto (in-process) with the fake Bedrock over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from fakes.bedrock import fake_bedrock  # noqa: F401  (fixture)
from tests.support.aws import AwsResources, create_resources


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsResources]:
    """Stack-shaped resources in moto, and the function environment pointing at them."""
    with mock_aws():
        resources = create_resources()
        for name, value in resources.env().items():
            monkeypatch.setenv(name, value)
        yield resources


@pytest.fixture
def ingest_handler(aws: AwsResources, fake_bedrock):  # noqa: F811
    """The real ingest Lambda handler, built fresh from this test's environment."""
    from imagesearch.handlers import ingest

    ingest.configure(None)
    yield ingest.handler
    ingest.configure(None)
