"""The S3 Vectors emulator for tests: one server per session, a fresh index per test."""

from __future__ import annotations

import itertools
from typing import Any

import boto3

from imagesearch.index.s3vectors import NON_FILTERABLE_METADATA_KEYS, S3VectorsIndex
from imagesearch.local.s3vectors_emulator import S3VectorsEmulator, ensure_index

REGION = "us-east-1"
_names = itertools.count()


def client_for(emulator: S3VectorsEmulator) -> Any:
    return boto3.client(
        "s3vectors",
        endpoint_url=emulator.endpoint_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def fresh_index(emulator: S3VectorsEmulator, dimension: int) -> tuple[Any, str, str]:
    """A new vector bucket and index; returns (client, bucket, index)."""
    number = next(_names)
    bucket, index = f"vectors-test-{number}", f"index-test-{number}"
    client = client_for(emulator)
    ensure_index(
        client,
        bucket=bucket,
        index=index,
        dimension=dimension,
        non_filterable_keys=NON_FILTERABLE_METADATA_KEYS,
    )
    return client, bucket, index


def s3vectors_index(emulator: S3VectorsEmulator, dimension: int) -> S3VectorsIndex:
    client, bucket, index = fresh_index(emulator, dimension)
    return S3VectorsIndex(client, bucket=bucket, index=index, dimension=dimension)
