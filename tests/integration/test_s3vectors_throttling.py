"""S3VectorsIndex against a throttling S3 Vectors (the emulator with the service's
per-index write limits, or injected 429/503 faults), on a fake clock: botocore's
retries, the adapter's own retries after them, what is raised when both are spent,
and ``erase`` (one listing, deletes as the keys stream in)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError

from imagesearch.index.s3vectors import (
    MAX_ERASE_PASSES,
    Backoff,
    EraseIncomplete,
    S3VectorsIndex,
)
from imagesearch.local.s3vectors_emulator import S3VectorsEmulator, S3VectorsService
from imagesearch.ports import VectorEntry
from tests.support.s3vectors import (
    FakeTime,
    client_for,
    client_without_retries,
    fresh_index,
    waits_on,
)

DIM = 4


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def emulator(fake: FakeTime) -> Iterator[S3VectorsEmulator]:
    with S3VectorsEmulator(service=S3VectorsService(clock=fake)) as running:
        yield running


class Counting:
    """The client, counting the calls made through it."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: dict[str, int] = {}
        self.before: dict[str, Any] = {}  # operation -> called before each of its calls

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if not callable(method):
            return method  # client.meta: the adapter registers its event handlers there

        def call(**kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            if name in self.before:
                self.before[name](kwargs)
            return method(**kwargs)

        return call


def entries(count: int, start: int = 0) -> list[VectorEntry]:
    rng = np.random.default_rng(start)
    return [
        VectorEntry(f"i{n:06d}", f"uploads/t/{n}.jpg", "image/jpeg", rng.normal(size=DIM))
        for n in range(start, start + count)
    ]


def adapter(
    emulator: S3VectorsEmulator, fake: FakeTime, *, sdk_retries: bool = False, **backoff: Any
) -> tuple[Counting, S3VectorsIndex]:
    _, bucket, name = fresh_index(emulator, DIM)
    client = Counting(client_for(emulator) if sdk_retries else client_without_retries(emulator))
    index = S3VectorsIndex(
        client,
        bucket=bucket,
        index=name,
        dimension=DIM,
        backoff=Backoff(sleep=fake.sleep, **backoff),
    )
    return client, index


# -- retries ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [("TooManyRequestsException", 429), ("ServiceUnavailableException", 503)],
)
def test_botocore_retries_throttling_and_unavailability_itself(
    emulator: S3VectorsEmulator,
    fake: FakeTime,
    monkeypatch: pytest.MonkeyPatch,
    code: str,
    status: int,
) -> None:
    sdk_waits = waits_on(fake, monkeypatch)
    # boto3's default client: botocore 1.44's default retry mode is standard, 3 attempts
    client, index = adapter(emulator, fake, sdk_retries=True)
    emulator.service.fail_next("PutVectors", 2, code)
    index.upsert(entries(10))
    assert client.calls["put_vectors"] == 1  # one adapter call...
    assert len(sdk_waits) == 2 and fake.sleeps == sdk_waits  # ...retried twice by botocore
    assert index.count() == 10
    with pytest.raises(ClientError) as caught:  # what the SDK sees, when it does not retry
        emulator.service.fail_next("ListVectors", 1, code)
        client_without_retries(emulator).list_vectors(vectorBucketName="vb-x1", indexName="ix-x1")
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status


def test_the_adapter_rides_out_the_index_write_limit(
    emulator: S3VectorsEmulator, fake: FakeTime
) -> None:
    # Given an index at the service's limits and a client that does not retry
    emulator.service.limit_writes()  # 2,500 vectors/s, 1,000 requests/s
    client, index = adapter(emulator, fake)
    # When 10,000 vectors are written, then 6,000 deleted, as fast as the client can
    index.upsert(entries(10_000))
    index.delete([f"i{n:06d}" for n in range(6_000)])
    # Then the service throttled, the adapter waited, and nothing was lost
    throttled = [code for _, code in emulator.service.refused]
    assert throttled and set(throttled) == {"TooManyRequestsException"}
    done = emulator.service.calls
    assert (done.count("PutVectors"), done.count("DeleteVectors")) == (20, 12)
    assert client.calls["put_vectors"] + client.calls["delete_vectors"] == 32 + len(throttled)
    assert fake.sleeps  # the adapter's waits: 16,000 vectors at 2,500/s
    assert sorted(index.keys()) == [f"i{n:06d}" for n in range(6_000, 10_000)]


def test_waits_grow_exponentially_and_the_error_is_raised_when_attempts_are_spent(
    emulator: S3VectorsEmulator, fake: FakeTime
) -> None:
    client, index = adapter(emulator, fake, attempts=4, base_seconds=0.5, random=lambda: 0.0)
    emulator.service.fail_next("PutVectors", 4, "ServiceUnavailableException")
    with pytest.raises(ClientError, match="ServiceUnavailableException"):
        index.upsert(entries(3))
    assert fake.sleeps == [0.25, 0.5, 1.0]  # half of 0.5 * 2**n fixed, the rest random
    assert client.calls["put_vectors"] == 4
    assert index.count() == 0
    emulator.service.fail_next("DeleteVectors", 3, "TooManyRequestsException")
    index.delete(["i000000"])  # the fourth attempt passes
    assert client.calls["delete_vectors"] == 4


def test_other_errors_are_not_retried(emulator: S3VectorsEmulator, fake: FakeTime) -> None:
    client, index = adapter(emulator, fake)
    emulator.service.fail_next("PutVectors", 1, "AccessDeniedException")
    with pytest.raises(ClientError, match="AccessDeniedException"):
        index.upsert(entries(1))
    missing = S3VectorsIndex(
        client, bucket="vb-none", index="ix-none", dimension=DIM, backoff=Backoff(sleep=fake.sleep)
    )
    with pytest.raises(ClientError, match="NotFoundException"):
        missing.delete(["a"])
    assert fake.sleeps == [] and client.calls == {"put_vectors": 1, "delete_vectors": 1}


def test_a_backoff_makes_at_least_one_attempt() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Backoff(attempts=0)


def test_listings_are_retried_page_by_page(emulator: S3VectorsEmulator, fake: FakeTime) -> None:
    client, index = adapter(emulator, fake)
    index.upsert(entries(2_500))
    emulator.service.fail_next("ListVectors", 2, "TooManyRequestsException")
    assert len(list(index.keys(segments=1))) == 2_500
    assert client.calls["list_vectors"] == 3 + 2 and len(fake.sleeps) == 2


# -- erase ------------------------------------------------------------------------------


def test_erase_lists_once_and_deletes_as_the_keys_stream_in(
    emulator: S3VectorsEmulator, fake: FakeTime
) -> None:
    client, index = adapter(emulator, fake)
    index.upsert(entries(5_000))
    client.calls.clear()
    assert index.erase() == 5_000
    # five pages of 1,000, then one listing that finds the index empty; the previous
    # erase listed from the start again after every 500 deletes (88 ListVectors)
    assert client.calls == {"list_vectors": 6, "delete_vectors": 10}
    assert index.count() == 0
    client.calls.clear()
    assert index.erase() == 0
    assert client.calls == {"list_vectors": 1}


def test_erase_survives_throttling(emulator: S3VectorsEmulator, fake: FakeTime) -> None:
    _, index = adapter(emulator, fake)
    index.upsert(entries(5_000))
    emulator.service.limit_writes()
    emulator.service.fail_next("ListVectors", 2, "ServiceUnavailableException")
    assert index.erase() == 5_000
    assert ("DeleteVectors", "TooManyRequestsException") in emulator.service.refused
    assert index.count() == 0


def test_erase_removes_what_is_written_meanwhile(
    emulator: S3VectorsEmulator, fake: FakeTime
) -> None:
    client, index = adapter(emulator, fake)
    index.upsert(entries(1_200))
    # keys before those listed so far: the listing in progress does not reach them
    late = [VectorEntry(f"a-late-{n}", f"late/{n}.jpg", None, np.ones(DIM)) for n in range(3)]
    writes = iter([late])
    client.before["delete_vectors"] = lambda _: index.upsert(next(writes, []))
    assert index.erase() == 1_203  # a second pass found the three
    assert client.calls["list_vectors"] == 2 + 1 + 1
    assert index.count() == 0


def test_erase_gives_up_when_something_keeps_writing(
    emulator: S3VectorsEmulator, fake: FakeTime
) -> None:
    client, index = adapter(emulator, fake)
    index.upsert(entries(1))
    counter = iter(range(1_000, 10_000))
    client.before["delete_vectors"] = lambda _: index.upsert(entries(1, start=next(counter)))
    with pytest.raises(EraseIncomplete, match="keeps writing"):
        index.erase()
    assert client.calls["delete_vectors"] == MAX_ERASE_PASSES
