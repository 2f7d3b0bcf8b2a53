"""``imagesearch reindex``'s engine: the catalog (DynamoDB on moto) copied into an S3
Vectors index (the emulator): batches, idempotence, resuming, removal of vectors the
catalog no longer holds, and records changed by a concurrent ingest while it runs."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from imagesearch.catalog.dynamodb import DynamoDBCatalog
from imagesearch.cli.vectors import cmd_reindex, reindex, vector_status
from imagesearch.index.s3vectors import Backoff, S3VectorsIndex
from imagesearch.index.sync import ReadAfterWriteSync
from imagesearch.local.s3vectors_emulator import (
    ENHANCED_DEFAULT_FROM,
    S3VectorsEmulator,
    S3VectorsService,
)
from imagesearch.ports import VectorEntry
from imagesearch.records import ImageRecord, image_id_for_key
from imagesearch.resources import table_definition
from tests.support.s3vectors import FakeTime, client_without_retries, fresh_index

TABLE = "images-reindex-test"
MODEL = "amazon.titan-embed-image-v1"
DIM = 8


@pytest.fixture(scope="module")
def emulator() -> Iterator[S3VectorsEmulator]:
    with S3VectorsEmulator() as running:
        yield running


class Clock:
    """The catalog's clock: records are written a day before the run unless moved."""

    def __init__(self) -> None:
        self.now = time.time() - 86_400

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def catalog(clock: Clock) -> Iterator[DynamoDBCatalog]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**table_definition(TABLE))
        yield DynamoDBCatalog(TABLE, client=client, clock=clock)


class Spy:
    def __init__(self, client: Any) -> None:
        self.client = client
        self.puts: list[int] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if not callable(method):
            return method  # client.meta: the adapter registers its event handlers there

        def call(**kwargs: Any) -> Any:
            if name == "put_vectors":
                self.puts.append(len(kwargs["vectors"]))
            return method(**kwargs)

        return call


@pytest.fixture
def index(emulator: S3VectorsEmulator, catalog: DynamoDBCatalog) -> S3VectorsIndex:
    client, bucket, name = fresh_index(emulator, DIM)
    return S3VectorsIndex(Spy(client), bucket=bucket, index=name, dimension=DIM)


def vector(n: int) -> np.ndarray:
    rng = np.random.default_rng(n)
    return rng.normal(size=DIM).astype(np.float32)


def put(catalog: DynamoDBCatalog, n: int, *, sequencer: str = "S0001", **fields: Any) -> str:
    key = f"uploads/r/{n}.jpg"
    fields.setdefault("status", "indexed")
    catalog.put(
        ImageRecord(
            image_id=image_id_for_key(key),
            key=key,
            content_type="image/jpeg",
            model_id=fields.pop("model_id", MODEL),
            dimension=DIM,
            sequencer=sequencer,
            vector=vector(n + int(sequencer[1:])) if fields["status"] == "indexed" else None,
            **fields,
        )
    )
    return image_id_for_key(key)


def run(catalog: DynamoDBCatalog, index: S3VectorsIndex, **options: Any) -> dict[str, int]:
    return reindex(catalog, index, model_id=MODEL, dimension=DIM, **options)


def assert_index_equals_catalog(catalog: DynamoDBCatalog, index: S3VectorsIndex) -> None:
    expected = {
        e.image_id: e.vector for e in catalog.indexed_vectors(model_id=MODEL, dimension=DIM)
    }
    assert set(index.keys()) == set(expected)
    stored = index.get_vectors(list(expected))
    for image_id, wanted in expected.items():
        np.testing.assert_allclose(stored[image_id], wanted / np.linalg.norm(wanted), atol=1e-6)


def test_copies_every_vector_of_the_model_in_batches(catalog, index) -> None:
    ids = [put(catalog, n) for n in range(510)]
    put(catalog, 5000, model_id="other-model")
    put(catalog, 5001, status="rejected", reason="not an image")
    result = run(catalog, index)
    assert result == {"written": 510, "skipped": 0, "removed": 0, "resynced": 0}
    assert sorted(index._client.puts) == [10, 500]  # written concurrently
    assert index.count() == len(ids)
    assert_index_equals_catalog(catalog, index)


def test_a_second_run_is_a_no_op_and_a_full_run_rewrites(catalog, index) -> None:
    for n in range(30):
        put(catalog, n)
    run(catalog, index)
    assert run(catalog, index)["written"] == 0
    assert run(catalog, index, full=True)["written"] == 30
    assert_index_equals_catalog(catalog, index)


def test_an_interrupted_run_resumes_where_it_stopped(catalog, index) -> None:
    entries = [put(catalog, n) for n in range(20)]
    assert entries
    first = list(catalog.indexed_vectors(model_id=MODEL, dimension=DIM))[:12]
    index.upsert(first)  # what the interrupted run had written
    result = run(catalog, index)
    assert (result["written"], result["skipped"]) == (8, 12)
    assert_index_equals_catalog(catalog, index)


def test_vectors_the_catalog_no_longer_holds_are_removed(catalog, index) -> None:
    put(catalog, 1)
    gone = put(catalog, 2)
    run(catalog, index)
    catalog.delete(gone, key="uploads/r/2.jpg", sequencer="S0009")  # while on another tier
    index.upsert([VectorEntry("stray", "uploads/stray.jpg", None, vector(3))])
    result = run(catalog, index)
    assert result["removed"] == 2
    assert_index_equals_catalog(catalog, index)


def test_a_concurrent_ingest_never_loses_to_the_copy(catalog, index, clock) -> None:
    for n in range(10):
        put(catalog, n)
    scanned = catalog.indexed_vectors
    target = image_id_for_key("uploads/r/3.jpg")

    def racing(**kwargs: Any) -> Iterator[VectorEntry]:
        entries = list(scanned(**kwargs))  # the copy read the old state...
        # ...then ingest writes a newer state and syncs the index, before the copy writes.
        clock.now = time.time()
        put(catalog, 3, sequencer="S0005")
        ReadAfterWriteSync(catalog, index, model_id=MODEL, dimension=DIM).written(target)
        yield from entries

    catalog.indexed_vectors = racing  # type: ignore[method-assign]
    result = run(catalog, index, full=True)
    catalog.indexed_vectors = scanned  # type: ignore[method-assign]
    assert result["resynced"] == 1
    assert_index_equals_catalog(catalog, index)


def test_a_failed_write_ends_the_copy_with_its_error(catalog, index) -> None:
    for n in range(1200):
        put(catalog, n)
    calls = []
    upsert = index.upsert

    def failing(batch: list[VectorEntry]) -> None:
        calls.append(len(batch))
        if len(calls) == 2:
            raise RuntimeError("PutVectors refused")
        upsert(batch)

    index.upsert = failing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="PutVectors refused"):
        run(catalog, index, writers=1)
    index.upsert = upsert  # type: ignore[method-assign]
    kept = index.count()  # what was written stays...
    assert 500 <= kept < 1200
    assert run(catalog, index)["written"] == 1200 - kept  # ...and a second run completes it
    assert_index_equals_catalog(catalog, index)


def test_a_failed_catalog_read_ends_the_copy_with_its_error(catalog, index) -> None:
    for n in range(10):
        put(catalog, n)
    scanned = catalog.indexed_vectors

    def failing(**kwargs: Any) -> Iterator[VectorEntry]:
        if kwargs.get("segment") == 1:
            raise ConnectionError("Scan failed")
        yield from scanned(**kwargs)

    catalog.indexed_vectors = failing  # type: ignore[method-assign]
    with pytest.raises(ConnectionError, match="Scan failed"):
        run(catalog, index)
    # the other readers and the writers have stopped
    assert not [t for t in threading.enumerate() if t.name.startswith("reindex-")]


class Progress:
    def __init__(self) -> None:
        self.steps: list[int] = []
        self.threads: set[str] = set()

    def update(self, count: int) -> None:
        self.steps.append(count)
        self.threads.add(threading.current_thread().name)


def test_the_progress_bar_counts_every_vector_once(catalog, index) -> None:
    for n in range(1100):
        put(catalog, n)
    index.upsert(list(catalog.indexed_vectors(model_id=MODEL, dimension=DIM))[:300])
    progress = Progress()
    result = run(catalog, index, progress=progress)
    assert (result["written"], result["skipped"]) == (800, 300)
    assert sum(progress.steps) == 1100
    assert progress.threads == {threading.current_thread().name}  # the caller's thread only


def test_images_written_just_before_the_copy_are_synced_again_in_one_batch(
    catalog, index, clock
) -> None:
    # Given images the catalog wrote moments ago (inside the change-log margin)
    clock.now = time.time()
    for n in range(30):
        put(catalog, n)

    result = run(catalog, index)

    # Then the copy writes them, and verifies them with one PutVectors, not one per image
    assert result["written"] == 30
    assert result["resynced"] == 30
    assert index._client.puts == [30, 30]
    assert_index_equals_catalog(catalog, index)


def test_a_failed_resync_ends_the_copy_with_its_error(catalog, index, clock) -> None:
    clock.now = time.time()
    for n in range(3):
        put(catalog, n)
    upsert = index.upsert
    calls = []

    def failing(batch: list[VectorEntry]) -> None:
        calls.append(len(batch))
        if len(calls) == 2:  # the copy's write went through; the resync's is refused
            raise RuntimeError("PutVectors refused")
        upsert(batch)

    index.upsert = failing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="PutVectors refused"):
        run(catalog, index, writers=1)


def test_without_resync_the_copy_reads_no_change_log(catalog, index, clock) -> None:
    # Given images written moments ago, and nothing writing during the copy (local mode
    # rebuilding its emulator before its worker starts)
    clock.now = time.time()
    for n in range(5):
        put(catalog, n)

    result = run(catalog, index, resync=False)

    # Then they are copied once, with no second pass
    assert result["written"] == 5
    assert result["resynced"] == 0
    assert index._client.puts == [5]
    assert_index_equals_catalog(catalog, index)


class Interrupted(Exception):
    """The run stops here (the operator's Ctrl-C, a lost connection)."""


def test_a_resumed_run_leaves_no_vector_an_interrupted_run_wrote_stale(
    catalog, index, clock
) -> None:
    # Given a run that read image 3's state, then ingest replaced the image and synced
    # the index, then the run wrote the old state over it and stopped before its
    # change-log pass
    for n in range(10):
        put(catalog, n)
    scanned, changes = catalog.indexed_vectors, catalog.changes
    replaced = image_id_for_key("uploads/r/3.jpg")

    def racing(**kwargs: Any) -> Iterator[VectorEntry]:
        entries = list(scanned(**kwargs))
        clock.now = time.time()
        put(catalog, 3, sequencer="S0005")
        ReadAfterWriteSync(catalog, index, model_id=MODEL, dimension=DIM).written(replaced)
        yield from entries

    def stopping(*args: Any, **kwargs: Any) -> Iterator[Any]:
        raise Interrupted

    catalog.indexed_vectors = racing  # type: ignore[method-assign]
    catalog.changes = stopping  # type: ignore[method-assign]
    with pytest.raises(Interrupted):
        run(catalog, index, segments=1)
    catalog.indexed_vectors, catalog.changes = scanned, changes  # type: ignore[method-assign]
    new = catalog.get(replaced, with_vector=True)
    assert new is not None and new.vector is not None
    old = index.get_vectors([replaced])[replaced]
    assert not np.allclose(old, new.vector / np.linalg.norm(new.vector), atol=1e-6)

    # When the run is started again an hour later (beyond the change log's margin)
    result = run(catalog, index, clock=lambda: time.time() + 3600)

    # Then it skips what the index holds, yet re-syncs what changed since the first began
    assert result["skipped"] == 10
    assert result["resynced"] == 1
    assert_index_equals_catalog(catalog, index)
    # and a run after that one completed re-syncs from its own start only
    assert run(catalog, index, clock=lambda: time.time() + 7200)["resynced"] == 0


def test_the_earliest_unfinished_run_is_remembered_until_it_finishes(catalog) -> None:
    assert catalog.reindex_began("ix", 1_000) == 1_000
    assert catalog.reindex_began("ix", 5_000) == 1_000  # resuming: the first run's start
    assert catalog.reindex_began("other-ix", 7_000) == 7_000  # one record per index
    assert catalog.reindex_finished("ix", 1_000) is True
    assert catalog.reindex_began("ix", 9_000) == 9_000
    # a run whose record is gone (another run finished, a new one began) keeps the new one
    assert catalog.reindex_finished("ix", 1_000) is False
    assert catalog.reindex_began("ix", 10_000) == 9_000
    # the records are in neither listing nor count
    assert set(catalog.counts().values()) == {0}
    assert catalog.list(status=None, prefix=None, limit=10, cursor=None).items == []


class Ctx:
    """What ``status`` and ``reindex`` read of a deployment: its backend."""

    def __init__(self, catalog: DynamoDBCatalog, endpoint: str, bucket: str, name: str) -> None:
        self._catalog = catalog
        self._backend = SimpleNamespace(
            vector_store="s3vectors",
            vector_bucket=bucket,
            vector_index=name,
            dimension=DIM,
            vectors_endpoint_url=endpoint,
            region="us-east-1",
            table=TABLE,
            model_id=MODEL,
        )

    def backend(self) -> SimpleNamespace:
        return self._backend

    def client(self, service: str) -> Any:
        assert service == "dynamodb"
        return self._catalog.client


@pytest.fixture(scope="module")
def classic_emulator() -> Iterator[S3VectorsEmulator]:
    """Vector buckets created before 2026-09-30: their indexes are CLASSIC."""
    service = S3VectorsService(clock=lambda: ENHANCED_DEFAULT_FROM - 86_400)
    with S3VectorsEmulator(service=service) as running:
        yield running


def test_status_shows_a_classic_index_and_reindex_moves_it_to_enhanced(
    catalog, classic_emulator
) -> None:
    # Given a deployment whose index (in an older vector bucket) is CLASSIC
    put(catalog, 1)
    _, bucket, name = fresh_index(classic_emulator, DIM)
    ctx = Ctx(catalog, classic_emulator.endpoint_url, bucket, name)

    # Then status shows the mode, with a hint
    report, hints = vector_status(ctx, indexed=0)
    assert report == {"store": "s3vectors", "index": name, "vectors": 0, "mode": "CLASSIC"}
    assert any("CLASSIC mode" in hint and "imagesearch reindex" in hint for hint in hints)

    # When reindex runs
    out = io.StringIO()
    assert cmd_reindex(SimpleNamespace(full=False), ctx, out, io.StringIO()) == 0

    # Then it moved the index (and copied the vector); status has no hint left
    assert out.getvalue().startswith(f"moved {name} to ENHANCED mode")
    assert "1 vectors written" in out.getvalue()
    report, hints = vector_status(ctx, indexed=1)
    assert report["mode"] == "ENHANCED"
    assert hints == []
    out = io.StringIO()
    cmd_reindex(SimpleNamespace(full=False), ctx, out, io.StringIO())
    assert not out.getvalue().startswith("moved")


# -- at the service's write limit ---------------------------------------------------------


@pytest.fixture
def throttling() -> Iterator[tuple[S3VectorsEmulator, FakeTime]]:
    """An emulator of its own that takes 500 vectors/s per index, on a fake clock."""
    fake = FakeTime()
    with S3VectorsEmulator(service=S3VectorsService(clock=fake)) as running:
        running.service.limit_writes(vectors_per_second=500, requests_per_second=None)
        yield running, fake


def throttled_index(
    emulator: S3VectorsEmulator, fake: FakeTime, attempts: int = Backoff.attempts
) -> S3VectorsIndex:
    _, bucket, name = fresh_index(emulator, DIM)
    return S3VectorsIndex(
        client_without_retries(emulator),  # the adapter's retries alone
        bucket=bucket,
        index=name,
        dimension=DIM,
        backoff=Backoff(attempts=attempts, sleep=fake.sleep),
    )


def test_a_copy_at_the_index_write_limit_loses_nothing(catalog, throttling) -> None:
    emulator, fake = throttling
    for n in range(700):
        put(catalog, n)
    index = throttled_index(emulator, fake)
    result = run(catalog, index)  # four writers at once: the second batch waits
    assert result["written"] == 700
    assert ("PutVectors", "TooManyRequestsException") in emulator.service.refused
    assert fake.sleeps
    assert_index_equals_catalog(catalog, index)


def test_a_copy_whose_retries_are_spent_ends_and_the_next_run_resumes(catalog, throttling) -> None:
    emulator, fake = throttling
    for n in range(700):
        put(catalog, n)
    index = throttled_index(emulator, fake, attempts=1)  # no retries at all
    with pytest.raises(ClientError, match="TooManyRequestsException"):
        run(catalog, index, writers=1)  # 500 pass, the next 200 are throttled
    assert index.count() == 500
    fake.sleep(1.0)  # later: the index takes writes again
    result = run(catalog, index)
    assert (result["written"], result["skipped"]) == (200, 500)
    assert_index_equals_catalog(catalog, index)
