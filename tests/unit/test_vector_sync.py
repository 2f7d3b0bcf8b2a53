"""ReadAfterWriteSync under every interleaving of concurrent writers.

Each writer does what ingest does for one event: a conditional catalog write, then,
if it won, ``sync.written``. Writers run in threads that stop before every catalog and
index operation; a scheduler decides who goes next, so an interleaving is a sequence
of thread names. All interleavings of two writers are run, and seeded random ones of
three. After every schedule the index must hold exactly the catalog's state: an older
event never leaves its vector, a deleted image never leaves a vector.
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
from imagesearch.index.sync import FollowsCatalog, ReadAfterWriteSync, SyncContention
from imagesearch.ports import VectorSync
from imagesearch.records import ImageRecord, image_id_for_key

DIM = 4
MODEL = "model"
KEY = "uploads/shoe.jpg"
IMAGE_ID = image_id_for_key(KEY)


def vector(n: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[n % DIM] = 1.0
    return v


@dataclass(frozen=True)
class Write:
    """One ingest event for KEY: an indexed version, a rejection, or a delete."""

    name: str
    sequencer: str
    kind: str  # "indexed" | "rejected" | "deleted"
    axis: int = 0

    def apply(self, catalog: InMemoryCatalog, sync: VectorSync) -> None:
        if self.kind == "deleted":
            won = catalog.delete(IMAGE_ID, key=KEY, sequencer=self.sequencer)
        else:
            won = catalog.put(
                ImageRecord(
                    image_id=IMAGE_ID,
                    key=KEY,
                    status=self.kind,
                    model_id=MODEL,
                    dimension=DIM,
                    content_type="image/jpeg",
                    sequencer=self.sequencer,
                    vector=vector(self.axis) if self.kind == "indexed" else None,
                )
            )
        if won:
            sync.written(IMAGE_ID)


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


def run_schedule(writes: list[Write], choose: Callable[[list[str]], str]) -> tuple:
    catalog = InMemoryCatalog()
    index = InMemoryVectorIndex(DIM)
    sync = ReadAfterWriteSync(catalog, index, model_id=MODEL, dimension=DIM)
    scheduler = Scheduler(choose)
    catalog.before = scheduler.pause
    index.before = scheduler.pause
    errors = scheduler.run({w.name: (lambda w=w: w.apply(catalog, sync)) for w in writes})
    catalog.before = index.before = lambda *_: None
    return catalog, index, errors, scheduler.trace


def assert_index_matches_catalog(catalog: InMemoryCatalog, index: InMemoryVectorIndex) -> None:
    record = catalog.records.get(IMAGE_ID)
    held = index.get_vectors([IMAGE_ID]).get(IMAGE_ID)
    if record is not None and record.status == "indexed":
        assert record.vector is not None
        assert held is not None, "the catalog's indexed vector is missing from the index"
        np.testing.assert_allclose(held, record.vector)
    else:
        assert held is None, f"a vector is left for a record that is {record and record.status}"


def all_schedules(writes: list[Write]) -> Iterator[list[int]]:
    """Every interleaving, as the sequence of choices among the live writers. Explored
    depth-first by replaying prefixes: the scheduler reports how many were live."""
    pending: list[list[int]] = [[]]
    while pending:
        prefix = pending.pop()
        widths: list[int] = []

        def choose(live: list[str], prefix: list[int] = prefix, widths: list[int] = widths) -> str:
            step = len(widths)
            widths.append(len(live))
            return live[prefix[step] if step < len(prefix) else 0]

        yield prefix
        catalog, index, errors, _ = run_schedule(writes, choose)
        assert errors == []
        assert_index_matches_catalog(catalog, index)
        for step in range(len(prefix), len(widths)):
            for option in range(1, widths[step]):
                pending.append([*prefix, *([0] * (step - len(prefix))), option])


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


@pytest.mark.parametrize("writes", TWO_WRITER_CASES.values(), ids=TWO_WRITER_CASES.keys())
def test_every_interleaving_of_two_writers_leaves_the_catalogs_state(writes: list[Write]) -> None:
    explored = sum(1 for _ in all_schedules(writes))
    # Two writers of 4-6 operations each: dozens of distinct interleavings were run
    assert explored >= 20


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


def test_a_record_that_keeps_changing_gives_up_with_a_retryable_error() -> None:
    catalog = InMemoryCatalog()
    index = InMemoryVectorIndex(DIM)
    Write("v1", "S01", "indexed", 1).apply(catalog, FollowsCatalog())
    sequence = itertools.count(2)

    def another_writer(operation: str, image_id: str) -> None:
        if operation == "get":  # someone rewrites the record between every two reads
            catalog.records[image_id] = ImageRecord(
                image_id=image_id,
                key=KEY,
                status="indexed",
                model_id=MODEL,
                dimension=DIM,
                sequencer=f"S{next(sequence):02d}",
                revision=str(next(sequence)),
                vector=vector(next(sequence)),
            )

    catalog.before = another_writer
    sync = ReadAfterWriteSync(catalog, index, model_id=MODEL, dimension=DIM, max_rounds=3)
    with pytest.raises(SyncContention, match="changed 3 times"):
        sync.written(IMAGE_ID)


def test_vectors_of_another_model_or_dimension_are_not_indexed() -> None:
    catalog = InMemoryCatalog()
    index = InMemoryVectorIndex(DIM)
    index.upsert([])
    sync = ReadAfterWriteSync(catalog, index, model_id="another", dimension=DIM)
    Write("v1", "S01", "indexed", 1).apply(catalog, sync)
    assert index.count() == 0
