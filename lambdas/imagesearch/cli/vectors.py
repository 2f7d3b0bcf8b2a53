"""``imagesearch reindex`` and the vector-index part of ``imagesearch status``: moving a
deployment between tiers without re-embedding (the catalog holds every vector).

reindex copies the catalog's vectors of the deployment's model and dimension into the
configured S3 Vectors index in batches of ``PutVectors``' 500, then:

- removes index vectors the catalog does not hold as indexed (images deleted while
  the index was not in use), so the index ends equal to the catalog;
- re-syncs, with ingest's verified read-after-write (``index.sync``), every record
  the catalog's change log shows written since the run began: an ingest running at
  the same time may have written a newer state before this run's batch overwrote it.

Idempotent (the index only ever receives the catalog's state) and resumable: a run
interrupted after N batches is started again, skipping the vectors the index already
holds unless ``--full``. A skipped vector may be one an interrupted run overwrote with
an older state after ingest had synced a newer one, so the change-log pass starts at
the earliest unfinished run's start, which the catalog keeps until a run completes
(``reindex_began``/``reindex_finished``; decision 37). One run at a time. No model
calls.

``cmd_reindex`` also moves a CLASSIC index to ENHANCED (filters before the search:
queries ask for it anyway, decision 37).

The copy is a pipeline: ``SCAN_SEGMENTS`` threads read parallel Scan segments of the
catalog while up to ``WRITERS`` PutVectors requests are in flight (each thread waits on
the network most of the time; the service takes 2,500 vectors/s per index, i.e. five
requests of 500 a second). The bulk client is built with ``adaptive`` retries, which
slow the sender down when the service answers ``TooManyRequestsException``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Generator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import closing
from typing import Any, TextIO

from imagesearch import resources as r
from imagesearch.cli.errors import CliError
from imagesearch.index.s3vectors import LIST_SEGMENTS, MAX_PUT, QUERY_MODE, S3VectorsIndex
from imagesearch.ports import VectorEntry

# The change log is an eventually consistent GSI and writers' clocks differ.
CHANGE_LOG_MARGIN_MS = 60_000
SCAN_SEGMENTS = 4  # parallel catalog Scan segments
WRITERS = 4  # PutVectors requests in flight
_READ_AHEAD = 8  # chunks of read entries waiting for a writer, per segment
_CHUNK = 100  # entries a reader hands over at a time
_LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


def vector_index(ctx: Any) -> S3VectorsIndex | None:
    """The deployment's S3 Vectors index, or None on the embedded tier."""
    backend = ctx.backend()
    if getattr(backend, "vector_store", None) != "s3vectors":
        return None
    if not (backend.vector_bucket and backend.vector_index and backend.dimension):
        raise CliError("the deployment uses s3vectors but does not name its vector index")
    from botocore.config import Config

    config = Config(
        retries={"mode": "adaptive", "max_attempts": 10},
        max_pool_connections=max(WRITERS, LIST_SEGMENTS) + 2,
    )
    if backend.vectors_endpoint_url:
        import boto3

        client = boto3.client(
            "s3vectors",
            endpoint_url=backend.vectors_endpoint_url,
            region_name=backend.region,
            config=config,
            **_LOCAL_CREDENTIALS,
        )
    else:
        ctx.credentials()
        client = ctx.boto_session().client("s3vectors", region_name=backend.region, config=config)
    return S3VectorsIndex(
        client,
        bucket=backend.vector_bucket,
        index=backend.vector_index,
        dimension=int(backend.dimension),
    )


def vector_status(ctx: Any, indexed: int) -> tuple[dict[str, Any], list[str]]:
    """The ``status`` report's vector-index entry and hints."""
    backend = ctx.backend()
    store = getattr(backend, "vector_store", None) or r.CONTEXT_DEFAULTS["vectorStore"]
    index = vector_index(ctx)
    if index is None:
        return {"store": store}, []
    count = index.count()
    mode = index.index_mode()
    hints = []
    if mode != QUERY_MODE:
        hints.append(
            f"the S3 Vectors index is in {mode} mode (metadata filters applied during the"
            f" search); searches ask for {QUERY_MODE} per query, and `imagesearch reindex`"
            f" moves the index to {QUERY_MODE} (in place, no re-ingestion)"
        )
    if count != indexed:
        hints.append(
            f"the vector index holds {count} vectors, the catalog {indexed} indexed images:"
            " run `imagesearch reindex` to copy the catalog's vectors (no model calls);"
            " while ingest is busy the two differ briefly"
        )
    return {"store": store, "index": backend.vector_index, "vectors": count, "mode": mode}, hints


class _Stop(Exception):
    """Raised in a reader when the copy ends early (another thread failed)."""


def _read_segments(
    catalog: Any, *, model_id: str, dimension: int, segments: int, stop: threading.Event
) -> Generator[list[VectorEntry], None, None]:
    """Chunks of the catalog's entries, read by ``segments`` threads in parallel
    (bounded read-ahead); a reader's error is raised here."""
    chunks: queue.Queue[list[VectorEntry] | BaseException | None] = queue.Queue(
        maxsize=_READ_AHEAD * segments
    )

    def hand_over(item: list[VectorEntry] | BaseException | None) -> None:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        raise _Stop

    def read(segment: int) -> None:
        try:
            chunk: list[VectorEntry] = []
            for entry in catalog.indexed_vectors(
                model_id=model_id, dimension=dimension, segment=segment, total_segments=segments
            ):
                chunk.append(entry)
                if len(chunk) == _CHUNK:
                    hand_over(chunk)
                    chunk = []
            hand_over(chunk)
            hand_over(None)
        except _Stop:
            return
        except BaseException as error:  # noqa: BLE001 (handed to the consumer, which raises it)
            try:
                hand_over(error)
            except _Stop:
                return

    threads = [
        threading.Thread(target=read, args=(n,), name=f"reindex-scan-{n}", daemon=True)
        for n in range(segments)
    ]
    for thread in threads:
        thread.start()
    try:
        running = segments
        while running:
            item = chunks.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def reindex(
    catalog: Any,
    index: S3VectorsIndex,
    *,
    model_id: str,
    dimension: int,
    full: bool = False,
    progress: Any | None = None,
    clock: Any = time.time,
    segments: int = SCAN_SEGMENTS,
    writers: int = WRITERS,
    resync: bool = True,
) -> dict[str, int]:
    """Copy the catalog's vectors into ``index``; see the module docstring. ``resync``
    False: nothing writes the catalog meanwhile (local mode rebuilding its emulator at
    start, before its worker runs), so the change-log pass is left out."""
    from imagesearch.index.sync import ReadAfterWriteSync

    started_ms = int(clock() * 1000)
    # An interrupted run's stale writes are re-synced too: from its start, not ours.
    since_ms = catalog.reindex_began(index.name, started_ms) if resync else started_ms
    present = set() if full else set(index.keys())
    seen: set[str] = set()
    written = skipped = 0
    stop = threading.Event()
    in_flight: set[Future[int]] = set()

    def advance(count: int) -> None:
        if progress is not None and count:
            progress.update(count)

    def collect(block: bool) -> None:
        nonlocal written
        if not in_flight:
            return
        done, _ = wait(in_flight, timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in done:
            in_flight.discard(future)
            count = future.result()  # a failed write ends the copy with its error
            written += count
            advance(count)

    def write(batch: list[VectorEntry]) -> int:
        index.upsert(batch)
        return len(batch)

    with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="reindex-put") as pool:
        try:
            batch: list[VectorEntry] = []
            chunks = _read_segments(
                catalog, model_id=model_id, dimension=dimension, segments=segments, stop=stop
            )
            with closing(chunks):
                for chunk in chunks:
                    new_skips = 0
                    for entry in chunk:
                        seen.add(entry.image_id)
                        if entry.image_id in present:
                            new_skips += 1
                        else:
                            batch.append(entry)
                        if len(batch) == MAX_PUT:
                            while len(in_flight) >= writers:
                                collect(block=True)
                            in_flight.add(pool.submit(write, batch))
                            batch = []
                    skipped += new_skips
                    advance(new_skips)
                    collect(block=False)
            if batch:
                while len(in_flight) >= writers:
                    collect(block=True)
                in_flight.add(pool.submit(write, batch))
            while in_flight:
                collect(block=True)
        finally:
            stop.set()
            for future in in_flight:
                future.cancel()
    stale = sorted((present if not full else set(index.keys())) - seen)
    index.delete(stale)
    sync = ReadAfterWriteSync(catalog, index, model_id=model_id, dimension=dimension)
    changed = {
        item[r.ATTR_IMAGE_ID]["S"]
        for item in (
            catalog.changes(
                since_ms - CHANGE_LOG_MARGIN_MS, int(clock() * 1000) + CHANGE_LOG_MARGIN_MS
            )
            if resync
            else ()
        )
    }
    # One batched, verified sync of everything written meanwhile (not one image at a
    # time: right after an ingest the window holds every recent image).
    failed = sync.sync(sorted(changed))
    if failed:
        raise next(iter(failed.values()))  # the copy ends with the error, as a write's does
    if resync:
        catalog.reindex_finished(index.name, since_ms)
    return {"written": written, "skipped": skipped, "removed": len(stale), "resynced": len(changed)}


def cmd_reindex(args: Any, ctx: Any, out: TextIO, err: TextIO) -> int:
    from imagesearch.catalog.dynamodb import DynamoDBCatalog
    from imagesearch.cli.commands import _progress

    backend = ctx.backend()
    index = vector_index(ctx)
    if index is None:
        out.write(
            "the deployment uses the embedded tier (vectorStore=dynamodb): its search"
            " instances load vectors from the catalog themselves, nothing to reindex\n"
        )
        return 0
    if not backend.model_id:
        raise CliError("the deployment does not name its model: cannot select its vectors")
    catalog = DynamoDBCatalog(backend.table, client=ctx.client("dynamodb"))
    if index.use_enhanced_mode():
        out.write(
            f"moved {backend.vector_index} to {QUERY_MODE} mode (filters before the search)\n"
        )
    total = catalog.counts().get(r.STATUS_INDEXED, 0)
    with _progress(total=total, unit="vec", desc="reindexing", file=err) as bar:
        result = reindex(
            catalog,
            index,
            model_id=backend.model_id,
            dimension=int(backend.dimension),
            full=bool(getattr(args, "full", False)),
            progress=bar,
        )
    out.write(
        f"reindexed {backend.vector_index}: {result['written']} vectors written,"
        f" {result['skipped']} already there, {result['removed']} removed,"
        f" {result['resynced']} re-synced after concurrent changes\n"
    )
    return 0
