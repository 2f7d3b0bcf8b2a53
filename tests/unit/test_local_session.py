"""Local mode's one boto3 session (moto_env.DefaultSession): every client in the process
and moto's region lists share it while local mode runs; stopping puts the old ones back."""

from __future__ import annotations

import boto3
from moto.core.base_backend import AccountSpecificBackend

from imagesearch.local.moto_env import DefaultSession


def test_one_session_serves_boto3_and_moto_until_restored() -> None:
    before_default = boto3.DEFAULT_SESSION
    before_moto = AccountSpecificBackend.get_session()
    sessions = DefaultSession()

    installed = sessions.install("eu-west-1")
    try:
        # Then default clients (the handlers' boto3.client) and moto use the one session
        assert boto3.DEFAULT_SESSION is installed
        assert boto3.client("sqs", endpoint_url="http://127.0.0.1:9").meta.region_name == (
            "eu-west-1"
        )
        assert AccountSpecificBackend.get_session() is installed
        assert "eu-west-1" in installed.get_available_regions("sqs")
    finally:
        sessions.restore()

    # And after a stop both are what they were
    assert boto3.DEFAULT_SESSION is before_default
    assert AccountSpecificBackend.get_session() is before_moto
