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
holds unless ``--full`` (a changed record is re-synced by ingest or the change-log pass
anyway). No model calls.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, TextIO

from imagesearch import resources as r
from imagesearch.cli.errors import CliError
from imagesearch.index.s3vectors import MAX_PUT, S3VectorsIndex
from imagesearch.ports import VectorEntry

# The change log is an eventually consistent GSI and writers' clocks differ.
CHANGE_LOG_MARGIN_MS = 60_000
_LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


def vector_index(ctx: Any) -> S3VectorsIndex | None:
    """The deployment's S3 Vectors index, or None on the embedded tier."""
    backend = ctx.backend()
    if getattr(backend, "vector_store", None) != "s3vectors":
        return None
    if not (backend.vector_bucket and backend.vector_index and backend.dimension):
        raise CliError("the deployment uses s3vectors but does not name its vector index")
    if backend.vectors_endpoint_url:
        import boto3

        client = boto3.client(
            "s3vectors",
            endpoint_url=backend.vectors_endpoint_url,
            region_name=backend.region,
            **_LOCAL_CREDENTIALS,
        )
    else:
        ctx.credentials()
        client = ctx.boto_session().client("s3vectors", region_name=backend.region)
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
    hints = []
    if count != indexed:
        hints.append(
            f"the vector index holds {count} vectors, the catalog {indexed} indexed images:"
            " run `imagesearch reindex` to copy the catalog's vectors (no model calls);"
            " while ingest is busy the two differ briefly"
        )
    return {"store": store, "index": backend.vector_index, "vectors": count}, hints


def _batches(entries: Iterator[VectorEntry], size: int) -> Iterator[list[VectorEntry]]:
    batch: list[VectorEntry] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def reindex(
    catalog: Any,
    index: S3VectorsIndex,
    *,
    model_id: str,
    dimension: int,
    full: bool = False,
    progress: Any | None = None,
    clock: Any = time.time,
) -> dict[str, int]:
    """Copy the catalog's vectors into ``index``; see the module docstring."""
    from imagesearch.index.sync import ReadAfterWriteSync

    started_ms = int(clock() * 1000)
    present = set() if full else set(index.keys())
    seen: set[str] = set()
    written = skipped = 0

    def fresh(entries: Iterator[VectorEntry]) -> Iterator[VectorEntry]:
        nonlocal skipped
        for entry in entries:
            seen.add(entry.image_id)
            if entry.image_id in present:
                skipped += 1
                if progress is not None:
                    progress.update(1)
                continue
            yield entry

    for batch in _batches(
        fresh(catalog.indexed_vectors(model_id=model_id, dimension=dimension)), MAX_PUT
    ):
        index.upsert(batch)
        written += len(batch)
        if progress is not None:
            progress.update(len(batch))
    stale = sorted((present if not full else set(index.keys())) - seen)
    index.delete(stale)
    sync = ReadAfterWriteSync(catalog, index, model_id=model_id, dimension=dimension)
    changed = {
        item[r.ATTR_IMAGE_ID]["S"]
        for item in catalog.changes(
            started_ms - CHANGE_LOG_MARGIN_MS, int(clock() * 1000) + CHANGE_LOG_MARGIN_MS
        )
    }
    for image_id in sorted(changed):
        sync.written(image_id)
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
