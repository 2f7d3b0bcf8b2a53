"""Scale-tier figures (S3 Vectors, on the project's emulator):

- ``s3vectors search overhead top_k=10:`` / ``top_k=100:``: our own milliseconds per
  search outside the service: building the QueryVectors request (unit vector, filter
  mapping), botocore serialising it and parsing the answer, and assembling the scored
  hits. The answer is real response bytes recorded from the emulator, replayed at the
  HTTP layer, so the service's own time is excluded. Next to it, the embedded tier's
  top-10 query over 100k x 1024 in memory, measured in the same run.
- ``s3vectors reindex 100k x 1024:``: vectors per second copied from a catalog feed
  into the emulator by ``imagesearch reindex``'s engine (PutVectors of 500, JSON over
  loopback HTTP), i.e. the client side of a reindex plus the emulator's work.

Run: ``python -m bench s3vectors``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import requests
from botocore.awsrequest import AWSResponse

from bench import report
from imagesearch.cli.vectors import reindex
from imagesearch.index.matrix import MatrixIndex
from imagesearch.index.s3vectors import S3VectorsIndex
from imagesearch.local.s3vectors_emulator import S3VectorsEmulator, ensure_index
from imagesearch.ports import QueryFilters, VectorEntry
from imagesearch.resources import S3VECTORS_NON_FILTERABLE_KEYS

DIMENSION = 1024
FILTERS = QueryFilters(prefix="uploads/folder3/", content_types=("image/jpeg", "image/png"))
REINDEX_COUNT = 100_000
EMBEDDED_COUNT = 100_000


def _client(endpoint: str) -> Any:
    return boto3.client(
        "s3vectors",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )


def _entries(count: int, dimension: int, seed: int = 1) -> Iterator[VectorEntry]:
    rng = np.random.default_rng(seed)
    for start in range(0, count, 1000):
        block = rng.standard_normal((min(1000, count - start), dimension), dtype=np.float32)
        for offset, vector in enumerate(block):
            n = start + offset
            yield VectorEntry(
                f"{n:032x}",
                f"uploads/folder{n % 10}/sub{n % 7}/img{n:07d}.jpg",
                "image/jpeg" if n % 2 else "image/png",
                vector,
            )


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def bench_overhead() -> None:
    print("search overhead outside the service, median ms of 200 (recorded response bytes)")
    with S3VectorsEmulator() as emulator:
        client = _client(emulator.endpoint_url)
        ensure_index(
            client,
            bucket="bench-vectors",
            index="bench-index",
            dimension=DIMENSION,
            non_filterable_keys=S3VECTORS_NON_FILTERABLE_KEYS,
        )
        index = S3VectorsIndex(
            client, bucket="bench-vectors", index="bench-index", dimension=DIMENSION
        )
        index.upsert(list(_entries(2_000, DIMENSION)))
        query = np.random.default_rng(9).standard_normal(DIMENSION).astype(np.float32)
        for top_k in (10, 100):
            request = index.query_request(query, top_k, FILTERS)
            body = requests.post(
                f"{emulator.endpoint_url}/QueryVectors", json=request, timeout=60
            ).content
            replay = _client(emulator.endpoint_url)

            def answer(request: Any, body: bytes = body, **_: Any) -> AWSResponse:
                return AWSResponse(
                    request.url, 200, {"Content-Type": "application/json"}, _Raw(body)
                )

            replay.meta.events.register("before-send.s3vectors.QueryVectors", answer)
            offline = S3VectorsIndex(
                replay, bucket="bench-vectors", index="bench-index", dimension=DIMENSION
            )
            hits = offline.query(query, top_k, FILTERS)
            samples = []
            for _ in range(200):
                started = time.perf_counter()
                offline.query(query, top_k, FILTERS)
                samples.append((time.perf_counter() - started) * 1000)
            report(
                f"s3vectors search overhead top_k={top_k}:",
                f"{statistics.median(samples):6.2f} ms  ({len(hits)} hits, {len(body) // 1024} KB"
                f" response, prefix + type filter, {DIMENSION}-d query)",
            )
    rng = np.random.default_rng(3)
    matrix = rng.standard_normal((EMBEDDED_COUNT, DIMENSION), dtype=np.float32)
    ids = [f"{n:032x}" for n in range(EMBEDDED_COUNT)]
    keys = [f"uploads/folder{n % 10}/img{n:07d}.jpg" for n in range(EMBEDDED_COUNT)]
    types = ["image/jpeg" if n % 2 else "image/png" for n in range(EMBEDDED_COUNT)]
    embedded = MatrixIndex.build(ids, keys, types, matrix)
    del matrix
    embedded.query(query, 10, FILTERS)  # sorts the keys once
    samples = []
    for _ in range(21):
        started = time.perf_counter()
        embedded.query(query, 10)
        samples.append((time.perf_counter() - started) * 1000)
    report(
        "embedded tier query 100k x 1024 top_k=10:",
        f"{statistics.median(samples):6.2f} ms  (the whole search, in memory, no filters)",
    )


class _Feed:
    """A catalog feed of generated vectors (reindex reads nothing else)."""

    def __init__(self, count: int) -> None:
        self.count = count

    def indexed_vectors(self, *, model_id: str, dimension: int) -> Iterator[VectorEntry]:
        return _entries(self.count, dimension, seed=5)

    def changes(self, since_ms: int, until_ms: int) -> Iterator[dict[str, Any]]:
        return iter(())


def bench_reindex(count: int = REINDEX_COUNT) -> None:
    with S3VectorsEmulator() as emulator:
        client = _client(emulator.endpoint_url)
        ensure_index(
            client,
            bucket="bench-vectors",
            index="bench-reindex",
            dimension=DIMENSION,
            non_filterable_keys=S3VECTORS_NON_FILTERABLE_KEYS,
        )
        index = S3VectorsIndex(
            client, bucket="bench-vectors", index="bench-reindex", dimension=DIMENSION
        )
        started = time.perf_counter()
        result = reindex(_Feed(count), index, model_id="bench", dimension=DIMENSION, full=True)
        seconds = time.perf_counter() - started
    report(
        f"s3vectors reindex {count // 1000}k x {DIMENSION}:",
        f"{result['written'] / seconds:8.0f} vectors/s  ({seconds:.1f} s through the emulator;"
        " the service allows 2,500 vectors/s per index)",
    )


def main() -> None:
    bench_overhead()
    bench_reindex()


if __name__ == "__main__":
    main()
