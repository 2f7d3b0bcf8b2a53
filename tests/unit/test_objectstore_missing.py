"""A missing key reads as None even where S3 answers 403 instead of 404.

Ingest's ``s3:ListBucket`` is limited to the upload prefix (``s3:prefix`` condition);
S3 might then answer 403 for a deleted key. The store checks with a listing of the
key itself, which that grant allows (decisions.md, entry 3).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from imagesearch.objectstore import S3ObjectStore

BUCKET = "images"
KEY = "uploads/gone.jpg"


@pytest.fixture
def stubbed() -> Iterator[tuple[S3ObjectStore, Stubber]]:
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    with Stubber(client) as stubber:
        yield S3ObjectStore(BUCKET, client=client), stubber
        stubber.assert_no_pending_responses()


def _denied(stubber: Stubber, method: str) -> None:
    stubber.add_client_error(
        method,
        service_error_code="AccessDenied",
        http_status_code=403,
        expected_params={"Bucket": BUCKET, "Key": KEY},
    )


def _listing(stubber: Stubber, keys: list[str]) -> None:
    response: dict[str, Any] = {"KeyCount": len(keys)}
    if keys:
        response["Contents"] = [{"Key": key} for key in keys]
    stubber.add_response(
        "list_objects_v2", response, {"Bucket": BUCKET, "Prefix": KEY, "MaxKeys": 1}
    )


@pytest.mark.parametrize("method", ["get_object", "head_object"])
def test_a_403_for_a_key_the_listing_does_not_show_is_a_missing_object(
    stubbed: tuple[S3ObjectStore, Stubber], method: str
) -> None:
    store, stubber = stubbed
    _denied(stubber, method)
    _listing(stubber, [])

    found = store.get(KEY, max_bytes=10) if method == "get_object" else store.head(KEY)

    assert found is None


def test_a_longer_key_under_the_same_name_does_not_make_it_exist(
    stubbed: tuple[S3ObjectStore, Stubber],
) -> None:
    store, stubber = stubbed
    _denied(stubber, "head_object")
    _listing(stubber, [KEY + ".bak"])

    assert store.head(KEY) is None


def test_a_403_for_a_listed_key_stays_a_permissions_error(
    stubbed: tuple[S3ObjectStore, Stubber],
) -> None:
    store, stubber = stubbed
    _denied(stubber, "get_object")
    _listing(stubber, [KEY])

    with pytest.raises(ClientError, match="AccessDenied"):
        store.get(KEY, max_bytes=10)


def test_a_403_when_listing_is_refused_too_stays_a_permissions_error(
    stubbed: tuple[S3ObjectStore, Stubber],
) -> None:
    store, stubber = stubbed
    _denied(stubber, "head_object")
    stubber.add_client_error(
        "list_objects_v2", service_error_code="AccessDenied", http_status_code=403
    )

    with pytest.raises(ClientError, match="AccessDenied"):
        store.head(KEY)


def test_a_404_needs_no_listing(stubbed: tuple[S3ObjectStore, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_client_error("head_object", service_error_code="404", http_status_code=404)

    assert store.head(KEY) is None
