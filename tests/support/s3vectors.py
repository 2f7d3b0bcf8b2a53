"""The S3 Vectors emulator for tests: one server per session, a fresh index per test."""

from __future__ import annotations

import itertools
import threading
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


class FakeTime:
    """A clock and a sleep that moves it, shared by the emulator's throttling and the
    retries' waits (botocore's and the adapter's): throttled runs take no real time."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


def waits_on(fake: FakeTime, monkeypatch: Any) -> list[float]:
    """Route every retry wait of this test to ``fake``: botocore's (its endpoint sleeps
    between attempts) and the adapter's (each ``S3VectorsIndex`` built meanwhile, the
    handlers' included, gets a ``Backoff`` sleeping on ``fake``). Returns the list the
    SDK's waits go to; ``fake.sleeps`` has all of them."""
    import functools
    import types

    import botocore.endpoint

    from imagesearch.index import s3vectors

    sdk: list[float] = []

    def sdk_sleep(seconds: float) -> None:
        sdk.append(seconds)
        fake.sleep(seconds)

    monkeypatch.setattr(botocore.endpoint, "time", types.SimpleNamespace(sleep=sdk_sleep))
    faked = functools.partial(s3vectors.Backoff, sleep=fake.sleep)
    monkeypatch.setattr(s3vectors, "Backoff", faked)
    return sdk


def client_without_retries(emulator: S3VectorsEmulator) -> Any:
    """A client that makes one attempt: what the adapter's own retries do, alone."""
    from botocore.config import Config

    return boto3.client(
        "s3vectors",
        endpoint_url=emulator.endpoint_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )
