"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.iam.recorder import ENV_RECORD_DIR
from tests.support.iam.recorder import install as record_aws_calls

# `make test` records every AWS call the functions' code makes for the IAM conformance
# test that runs after the suite (tests/infra/test_iam_conformance.py).
if os.environ.get(ENV_RECORD_DIR):
    record_aws_calls()

ROOT = Path(__file__).resolve().parent.parent
_TIERS = ("unit", "integration", "infra", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The directory is the tier: tests/unit/... gets the "unit" marker, and so on.
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in _TIERS:
            item.add_marker(getattr(pytest.mark, parts[0]))


@pytest.fixture(autouse=True)
def aws_test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a fixed region; never the developer's real AWS config."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(ROOT / "tests" / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(ROOT / "tests" / "no-aws-credentials"))
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "imagesearch-test")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ImageSearchTest")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
