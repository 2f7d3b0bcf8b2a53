"""ReadAfterWriteSync under every interleaving of concurrent writers.

Each writer does what ingest does for one SQS message batch: a conditional catalog
write per event, then one ``sync.sync`` of the images whose writes won (a batch of one
is the single-event case). Writers run in threads that stop before every catalog and
index operation (a batch read, PutVectors or DeleteVectors is one operation, as it is
one request); a scheduler decides who goes next, so an interleaving is a sequence of
thread names. All interleavings of two writers are run, including batches that share
an image, and seeded random ones of three, and random ones where a batch read
reads its items one at a time with other writers in between. After every schedule the
index must hold exactly the catalog's state for every image: an older event never
leaves its vector, a deleted image never leaves a vector. A sync that writes what the
catalog held once, without the verifying read, fails these schedules.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from fakes.catalog import InMemoryCatalog, InMemoryVectorIndex
from imagesearch.index.sync import ReadAfterWriteSync, SyncContention
from imagesearch.ports import VectorEntry, VectorSync
from imagesearch.records import ImageRecord, image_id_for_key

DIM = 4
MODEL = "model"
KEY = "uploads/shoe.jpg"
IMAGE_ID = image_id_for_key(KEY)
OTHER_KEY = "uploads/boot.jpg"
THIRD_KEY = "uploads/sock.jpg"


def vector(n: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[n % DIM] = 1.0
    return v


@dataclass(frozen=True)
class Write:
    """One ingest event for ``key``: an indexed version, a rejection, or a delete."""

    name: str
    sequencer: str
    kind: str  # "indexed" | "rejected" | "deleted"
    axis: int = 0
    key: str = KEY

    @property
    def image_id(self) -> str:
        return image_id_for_key(self.key)

    def to_catalog(self, catalog: InMemoryCatalog) -> bool:
        if self.kind == "deleted":
            return catalog.delete(self.image_id, key=self.key, sequencer=self.sequencer)
        return catalog.put(
            ImageRecord(
                image_id=self.image_id,
                key=self.key,
                status=self.kind,
                model_id=MODEL,
                dimension=DIM,
                content_type="image/jpeg",
                sequencer=self.sequencer,
                vector=vector(self.axis) if self.kind == "indexed" else None,
            )
        )

    def apply(self, catalog: InMemoryCatalog, sync: VectorSync) -> None:
        Batch(self.name, (self,)).apply(catalog, sync)


@dataclass(frozen=True)
class Batch:
    """One message batch: its catalog writes in order, then one sync of the winners."""

    name: str
    writes: tuple[Write, ...]

    def apply(self, catalog: InMemoryCatalog, sync: VectorSync) -> None:
        won = [write.image_id for write in self.writes if write.to_catalog(catalog)]
        if won:
            assert sync.sync(won) == {}


Writer = Write | Batch


def keys_of(writers: list[Writer]) -> list[str]:
    writes = [
        w for writer in writers for w in (writer.writes if isinstance(writer, Batch) else (writer,))
    ]
    return sorted({write.key for write in writes})


class Scheduler:
    """Runs writer threads one operation at a time, in an order ``choose`` decides."""

    def __init__(self, choose: Callable[[list[str]], str]) -> None:
        self._choose = choose
        self._cond = threading.Condition()
        self._waiting: set[str] = set()
        self._running: set[str] = set()
        self._turn: str | None = None
        self.trace: list[str] = []

    def pause(self, *_: object) -> None:
        name = threading.current_thread().name
        with self._cond:
            self._waiting.add(name)
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._turn == name)
            self._turn = None
            self._waiting.discard(name)

    def run(self, jobs: dict[str, Callable[[], None]]) -> list[BaseException]:
        errors: list[BaseException] = []

        def body(job: Callable[[], None]) -> None:
            try:
                job()
            except BaseException as error:  # reported to the test
                errors.append(error)
            finally:
                with self._cond:
                    self._running.discard(threading.current_thread().name)
                    self._cond.notify_all()

        threads = [threading.Thread(target=body, args=(job,), name=n) for n, job in jobs.items()]
        self._running = set(jobs)
        for thread in threads:
            thread.start()
        with self._cond:
            while self._running:
                # Every live writer is parked before its next operation (or has finished).
                self._cond.wait_for(lambda: self._turn is None and self._waiting >= self._running)
                if not self._running:
                    break
                chosen = self._choose(sorted(self._running))
                self.trace.append(chosen)
                self._turn = chosen
                self._cond.notify_all()
                self._cond.wait_for(lambda: self._turn is None)
        for thread in threads:
            thread.join(5)
        return errors


def run_schedule(
    writers: list[Writer],
    choose: Callable[[list[str]], str],
    make_sync: Callable[[InMemoryCatalog, InMemoryVectorIndex], VectorSync] | None = None,
    *,
    item_by_item: bool = False,
) -> tuple:
    catalog = InMemoryCatalog()
    catalog.item_by_item_batches = item_by_item
    index = InMemoryVectorIndex(DIM)
    sync = (make_sync or read_after_write)(catalog, index)
    scheduler = Scheduler(choose)
    catalog.before = scheduler.pause
    index.before = scheduler.pause
    errors = scheduler.run({w.name: (lambda w=w: w.apply(catalog, sync)) for w in writers})
    catalog.before = index.before = lambda *_: None
    return catalog, index, errors, scheduler.trace


def read_after_write(catalog: InMemoryCatalog, index: InMemoryVectorIndex) -> VectorSync:
    return ReadAfterWriteSync(catalog, index, model_id=MODEL, dimension=DIM)


def assert_index_matches_catalog(
    catalog: InMemoryCatalog, index: InMemoryVectorIndex, keys: list[str] | None = None
) -> None:
    for key in keys or [KEY]:
        image_id = image_id_for_key(key)
        record = catalog.records.get(image_id)
        held = index.get_vectors([image_id]).get(image_id)
        if record is not None and record.status == "indexed":
            assert record.vector is not None
            assert held is not None, f"the catalog's indexed vector of {key} is missing"
            np.testing.assert_allclose(held, record.vector)
        else:
            assert held is None, f"a vector is left for {key}, which is {record and record.status}"


def all_schedules(
    writers: list[Writer],
    make_sync: Callable[[InMemoryCatalog, InMemoryVectorIndex], VectorSync] | None = None,
) -> Iterator[tuple[list[int], tuple]]:
    """Every interleaving, as the sequence of choices among the live writers, with what
    it left. Explored depth-first by replaying prefixes: the scheduler reports how
    many writers were live at each step."""
    pending: list[list[int]] = [[]]
    while pending:
        prefix = pending.pop()
        widths: list[int] = []

        def choose(live: list[str], prefix: list[int] = prefix, widths: list[int] = widths) -> str:
            step = len(widths)
            widths.append(len(live))
            return live[prefix[step] if step < len(prefix) else 0]

        yield prefix, run_schedule(writers, choose, make_sync)
        for step in range(len(prefix), len(widths)):
            for option in range(1, widths[step]):
                pending.append([*prefix, *([0] * (step - len(prefix))), option])


def explore(writers: list[Writer]) -> int:
    explored = 0
    for _, (catalog, index, errors, _trace) in all_schedules(writers):
        assert errors == []
        assert_index_matches_catalog(catalog, index, keys_of(writers))
        explored += 1
    return explored


TWO_WRITER_CASES = {
    "older create vs newer overwrite": [
        Write("v1", "S01", "indexed", 1),
        Write("v2", "S02", "indexed", 2),
    ],
    "create vs newer delete": [Write("v1", "S01", "indexed", 1), Write("rm", "S02", "deleted")],
    "delete vs newer re-create": [Write("rm", "S01", "deleted"), Write("v2", "S02", "indexed", 2)],
    "indexed vs newer rejection": [
        Write("v1", "S01", "indexed", 1),
        Write("bad", "S02", "rejected"),
    ],
}


BATCH_CASES = {
    "two batches share an image (older and newer version)": [
        Batch("a", (Write("a1", "S01", "indexed", 1), Write("a2", "S01", "indexed", 2, OTHER_KEY))),
        Batch("b", (Write("b1", "S02", "indexed", 3), Write("b2", "S01", "indexed", 1, THIRD_KEY))),
    ],
    "a batch's create vs another batch's newer delete, and the reverse": [
        Batch(
            "a", (Write("a1", "S01", "indexed", 1), Write("a2", "S03", "deleted", key=OTHER_KEY))
        ),
        Batch("b", (Write("b1", "S02", "deleted"), Write("b2", "S02", "indexed", 2, OTHER_KEY))),
    ],
    "batch of one vs a batch sharing its image": [
        Write("v1", "S02", "indexed", 1),
        Batch(
            "b", (Write("b1", "S01", "indexed", 2), Write("b2", "S01", "rejected", key=OTHER_KEY))
        ),
    ],
}


@pytest.mark.parametrize("writes", TWO_WRITER_CASES.values(), ids=TWO_WRITER_CASES.keys())
def test_every_interleaving_of_two_writers_leaves_the_catalogs_state(writes: list[Write]) -> None:
    # Two writers of 4-6 operations each: dozens of distinct interleavings were run
    assert explore(list(writes)) >= 20


@pytest.mark.parametrize("writers", BATCH_CASES.values(), ids=BATCH_CASES.keys())
def test_every_interleaving_of_two_batches_leaves_the_catalogs_state(writers: list[Writer]) -> None:
    # Two batches of two images (or one image and a batch) that share an image: hundreds
    # of interleavings, each leaving every image's vector as its catalog record says
    assert explore(writers) >= 100


class WriteOnceSync:
    """The naive batched sync: writes what it read once, never verifies."""

    def __init__(self, catalog: InMemoryCatalog, index: InMemoryVectorIndex) -> None:
        self._catalog = catalog
        self._index = index

    def sync(self, image_ids: list[str]) -> dict[str, Exception]:
        records = self._catalog.get_many(image_ids, with_vector=True, include_deleted=True)
        keep = [r for r in records.values() if r.status == "indexed" and r.vector is not None]
        self._index.upsert([VectorEntry(r.image_id, r.key, r.content_type, r.vector) for r in keep])
        self._index.delete([i for i in image_ids if i not in {r.image_id for r in keep}])
        return {}


def test_the_interleavings_catch_a_sync_without_its_verifying_read() -> None:
    # The schedules are adversarial enough: without the second read, some of them
    # leave an older version's vector (or a deleted image's) in the index
    writers = BATCH_CASES["two batches share an image (older and newer version)"]
    wrong = 0
    for _, (catalog, index, errors, _trace) in all_schedules(writers, WriteOnceSync):
        assert errors == []
        try:
            assert_index_matches_catalog(catalog, index, keys_of(writers))
        except AssertionError:
            wrong += 1
    assert wrong > 0


def test_random_interleavings_of_three_writers() -> None:
    writes = [
        Write("v1", "S01", "indexed", 1),
        Write("v2", "S02", "indexed", 2),
        Write("rm", "S03", "deleted"),
    ]
    traces = set()
    for seed in range(150):
        rng = random.Random(seed)
        catalog, index, errors, trace = run_schedule(writes, lambda live, rng=rng: rng.choice(live))
        assert errors == []
        assert_index_matches_catalog(catalog, index)
        assert index.get_vectors([IMAGE_ID]) == {}  # the newest event is the delete
        traces.add(tuple(trace))
    assert len(traces) > 50


def test_writers_in_either_order_without_overlap() -> None:
    for first, second in itertools.permutations(TWO_WRITER_CASES["create vs newer delete"]):
        catalog, index, errors, _ = run_schedule([first], lambda live: live[0])
        second.apply(catalog, ReadAfterWriteSync(catalog, index, model_id=MODEL, dimension=DIM))
        assert errors == []
        assert_index_matches_catalog(catalog, index)


def test_random_interleavings_of_three_batches_sharing_images() -> None:
    writers: list[Writer] = [
        Batch("a", (Write("a1", "S01", "indexed", 1), Write("a2", "S03", "indexed", 1, OTHER_KEY))),
        Batch(
            "b", (Write("b1", "S02", "indexed", 2), Write("b2", "S02", "deleted", key=OTHER_KEY))
        ),
        Batch("c", (Write("c1", "S03", "deleted"), Write("c2", "S01", "indexed", 3, THIRD_KEY))),
    ]
    traces = set()
    for seed in range(150):
        rng = random.Random(seed)
        catalog, index, errors, trace = run_schedule(
            writers, lambda live, rng=rng: rng.choice(live)
        )
        assert errors == []
        assert_index_matches_catalog(catalog, index, keys_of(writers))
        # the newest events: KEY deleted, OTHER_KEY indexed (a2), THIRD_KEY indexed (c2)
        held = index.get_vectors([image_id_for_key(k) for k in (KEY, OTHER_KEY, THIRD_KEY)])
        assert set(held) == {image_id_for_key(OTHER_KEY), image_id_for_key(THIRD_KEY)}
        traces.add(tuple(trace))
    assert len(traces) > 50


@pytest.mark.parametrize("writers", BATCH_CASES.values(), ids=BATCH_CASES.keys())
def test_random_interleavings_with_batch_reads_item_by_item(writers: list[Writer]) -> None:
    # A BatchGetItem reads its items at different moments: other writers may run between
    # them. (All such interleavings are too many to run; the argument is per image.)
    traces = set()
    for seed in range(150):
        rng = random.Random(seed)
        catalog, index, errors, trace = run_schedule(
            writers, lambda live, rng=rng: rng.choice(live), item_by_item=True
        )
        assert errors == []
        assert_index_matches_catalog(catalog, index, keys_of(writers))
        traces.add(tuple(trace))
    assert len(traces) > 50


def stored(catalog: InMemoryCatalog, *writes: Write) -> list[str]:
    for write in writes:
        assert write.to_catalog(catalog)
    return [write.image_id for write in writes]


def test_a_batch_costs_one_put_one_delete_and_two_batch_reads() -> None:
    # Given ten catalog writes of one batch: seven indexed images and three deletes
    catalog = InMemoryCatalog()
    index = InMemoryVectorIndex(DIM)
    writes = [Write(f"v{n}", "S01", "indexed", n, f"uploads/{n}.jpg") for n in range(7)]
    writes += [Write(f"rm{n}", "S01", "deleted", key=f"uploads/gone-{n}.jpg") for n in range(3)]
    ids = stored(catalog, *writes)
    calls: list[tuple[str, int]] = []
    index.before = lambda operation, image_ids: calls.append((operation, len(image_ids)))
    # When the batch syncs with nobody else writing
    failed = ReadAfterWriteSync(catalog, index, model_id=MODEL, dimension=DIM).sync(ids)
    # Then one PutVectors carried the seven, one DeleteVectors the three, and the
    # catalog was read twice (the read and the verifying read)
    assert failed == {}
    assert calls == [("upsert", 7), ("delete", 3)]
    assert catalog.batch_reads == 2
    assert_index_matches_catalog(catalog, index, [w.key for w in writes])


def rewrite_between_reads(catalog: InMemoryCatalog, keys: dict[str, str]) -> None:
    """Another writer rewrites the records of ``keys`` (id -> key) before every read."""
    sequence = itertools.count(2)

    def another_writer(operation: str, image_ids: list[str]) -> None:
        if operation not in ("get", "get_many"):
            return
        for image_id in image_ids:
            if image_id in keys:
                catalog.records[image_id] = ImageRecord(
                    image_id=image_id,
                    key=keys[image_id],
                    status="indexed",
                    model_id=MODEL,
                    dimension=DIM,
                    sequencer=f"S{next(sequence):04d}",
                    revision=str(next(sequence)),
                    vector=vector(next(sequence)),
                )

    catalog.before = another_writer


def test_a_record_that_keeps_changing_gives_up_with_a_retryable_error() -> None:
    # Given a batch of two where one record is rewritten between every two reads
    catalog = InMemoryCatalog()
    index = InMemoryVectorIndex(DIM)
    ids = stored(
        catalog, Write("v1", "S01", "indexed", 1), Write("w", "S01", "indexed", 2, OTHER_KEY)
    )
    rewrite_between_reads(catalog, {IMAGE_ID: KEY})
    sync = ReadAfterWriteSync(catalog, index, model_id=MODEL, dimension=DIM, max_rounds=3)
    # When the batch syncs
    failed = sync.sync(ids)
    # Then only the busy image fails (its message retries), with a retryable error;
    # the quiet one is synced
    assert list(failed) == [IMAGE_ID]
    assert isinstance(failed[IMAGE_ID], SyncContention)
    assert "changed 3 times" in str(failed[IMAGE_ID])
    assert_index_matches_catalog(catalog, index, [OTHER_KEY])
    # And the single-image form raises it
    with pytest.raises(SyncContention, match="changed 3 times"):
        sync.written(IMAGE_ID)


class Throttled(Exception):
    pass


def test_a_failed_index_call_fails_every_image_it_carried() -> None:
    # Given a batch of three, and an index that throttles the PutVectors
    catalog = InMemoryCatalog()
    index = InMemoryVectorIndex(DIM)
    ids = stored(
        catalog,
        Write("v1", "S01", "indexed", 1),
        Write("v2", "S01", "indexed", 2, OTHER_KEY),
        Write("rm", "S01", "deleted", key=THIRD_KEY),
    )

    def throttle(operation: str, image_ids: list[str]) -> None:
        if operation == "upsert":
            raise Throttled("ThrottlingException")

    index.before = throttle
    # When the batch syncs
    failed = ReadAfterWriteSync(catalog, index, model_id=MODEL, dimension=DIM).sync(ids)
    # Then every image of the batch is reported with the error (their messages fail
    # and retry); none is reported synced
    assert set(failed) == set(ids)
    assert all(isinstance(error, Throttled) for error in failed.values())


def test_a_failure_in_a_later_round_fails_only_the_images_still_pending() -> None:
    # Given a batch of two where one record changes under the first round, and the
    # index fails from the second round on
    catalog = InMemoryCatalog()
    index = InMemoryVectorIndex(DIM)
    ids = stored(
        catalog, Write("v1", "S01", "indexed", 1), Write("w", "S01", "indexed", 2, OTHER_KEY)
    )
    rewrite_between_reads(catalog, {IMAGE_ID: KEY})
    rounds = itertools.count()

    def fail_later(operation: str, image_ids: list[str]) -> None:
        if operation == "upsert" and next(rounds) > 0:
            raise Throttled("ThrottlingException")

    index.before = fail_later
    failed = ReadAfterWriteSync(catalog, index, model_id=MODEL, dimension=DIM).sync(ids)
    # Then only the image still pending fails; the other one was synced in round one
    assert list(failed) == [IMAGE_ID]
    assert_index_matches_catalog(catalog, index, [OTHER_KEY])


def test_a_failed_catalog_read_fails_the_whole_batch() -> None:
    catalog = InMemoryCatalog()
    index = InMemoryVectorIndex(DIM)
    ids = stored(
        catalog, Write("v1", "S01", "indexed", 1), Write("w", "S01", "indexed", 2, OTHER_KEY)
    )

    def unavailable(operation: str, image_ids: list[str]) -> None:
        raise Throttled("ProvisionedThroughputExceededException")

    catalog.before = unavailable
    failed = ReadAfterWriteSync(catalog, index, model_id=MODEL, dimension=DIM).sync(ids)
    assert set(failed) == set(ids)
    assert index.count() == 0


def test_vectors_of_another_model_or_dimension_are_not_indexed() -> None:
    catalog = InMemoryCatalog()
    index = InMemoryVectorIndex(DIM)
    index.upsert([])
    sync = ReadAfterWriteSync(catalog, index, model_id="another", dimension=DIM)
    Write("v1", "S01", "indexed", 1).apply(catalog, sync)
    assert index.count() == 0
