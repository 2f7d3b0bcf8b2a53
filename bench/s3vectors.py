"""Scale-tier figures (S3 Vectors, on the project's emulator):

- ``s3vectors search overhead top_k=10:`` / ``top_k=100:``: our own milliseconds per
  search outside the service: building the QueryVectors request (unit vector, filter
  mapping), botocore serialising it and parsing the answer, and assembling the scored
  hits. The answer is real response bytes recorded from the emulator, replayed at the
  HTTP layer, so the service's own time is excluded. Next to it, the embedded tier's
  top-10 query over 100k x 1024 in memory, measured in the same run.
- ``s3vectors reindex 100k x 1024:`` (twice): vectors per second copied by
  ``imagesearch reindex``'s engine from the DynamoDB catalog (Scan pages as real wire
  bytes, parsed by botocore) into S3 Vectors, (1) our side alone: the PutVectors
  requests are built, serialised and signed, then answered at botocore's
  ``before-send`` (the real service does not run our emulator); (2) through the
  emulator in its own process over loopback HTTP (our side plus the emulator's work).
  Next to them, ``... before:`` the same input through the adapter as it was (float
  lists serialised by botocore, sequential), on fewer vectors.
- ``s3vectors emulator PutVectors 500 x 1024:``: the emulator's own work per request
  (JSON parsing, then validation and storage), in process, on the bodies our client
  sends: what bounds the line through the emulator.
- ``s3vectors erase 100k:``: ``erase()`` of an index of 100k vectors through the
  emulator over HTTP (in this process): ListVectors and DeleteVectors calls per 1,000
  vectors and the time (the service's 2,500 vectors/s per index would make it >= 40 s;
  the emulator does not throttle here). ``... before:`` the erase as it was (a full
  listing again after every 500 deletes), on fewer vectors. The vectors are 8-d: no
  erase call carries vector data.

Run: ``python -m bench s3vectors`` (the erase lines alone:
``python -c "from bench.s3vectors import bench_erase; bench_erase()"``).
"""

from __future__ import annotations

import base64
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import requests
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from bench import report
from imagesearch import resources as r
from imagesearch.catalog.dynamodb import DynamoDBCatalog
from imagesearch.cli.vectors import reindex
from imagesearch.index.matrix import MatrixIndex
from imagesearch.index.s3vectors import S3VectorsIndex, metadata_for
from imagesearch.local.s3vectors_emulator import (
    S3VectorsEmulator,
    S3VectorsService,
    ensure_index,
)
from imagesearch.ports import QueryFilters, VectorEntry
from imagesearch.resources import S3VECTORS_NON_FILTERABLE_KEYS

DIMENSION = 1024
FILTERS = QueryFilters(prefix="uploads/folder3/", content_types=("image/jpeg", "image/png"))
REINDEX_COUNT = 100_000
BEFORE_COUNT = 5_000
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


BENCH_MODEL = "bench"  # the model id of every catalog item and of the reindex
PAGE_ITEMS = 180  # a DynamoDB Scan page is at most 1 MB: ~180 items of 1,024 floats
_PAGE_MARK = b"PAGEMARK"


class _ScanPages:
    """DynamoDB Scan pages of the catalog's indexed records as real wire bytes (vector
    as base64 float32 bytes, id, key, content type, revision), answered at botocore's
    ``before-send``: botocore parses every item as it would DynamoDB's answer, only the
    network is left out. Eight page templates with a per-page id part, so every id
    is unique; ``count`` records split evenly over the Scan segments asked for."""

    def __init__(self, count: int, dimension: int) -> None:
        self.count = count
        rng = np.random.default_rng(5)
        self._templates = []
        for template in range(8):
            vectors = rng.standard_normal((PAGE_ITEMS, dimension), dtype=np.float32)
            items = []
            mark = _PAGE_MARK.decode()
            for n, vector in enumerate(vectors):
                items.append(
                    {
                        r.ATTR_IMAGE_ID: {"S": f"{mark}{n:024x}"},
                        r.ATTR_KEY: {"S": f"uploads/folder{n % 10}/sub{template}/{mark}{n}.jpg"},
                        "content_type": {"S": "image/jpeg" if n % 2 else "image/png"},
                        r.ATTR_VECTOR: {"B": base64.b64encode(vector.tobytes()).decode()},
                        r.ATTR_REVISION: {"S": f"rev{n}"},
                        # The catalog keeps only this model's vectors (model switch).
                        "model_id": {"S": BENCH_MODEL},
                        "dimension": {"N": str(dimension)},
                    }
                )
            self._templates.append(json.dumps({"Items": items}).encode())

    def answer(self, request: Any, **_: Any) -> AWSResponse:
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else target
        if target.endswith(".UpdateItem"):  # reindex_began: no unfinished run recorded
            started = json.loads(request.body)["ExpressionAttributeValues"][":s"]
            return _json_response(
                request, json.dumps({"Attributes": {"started_ms": started}}).encode()
            )
        if not target.endswith(".Scan"):  # the change log (Query): nothing changed
            return _json_response(request, b'{"Items":[],"Count":0,"ScannedCount":0}')
        asked = json.loads(request.body)
        segments = asked.get("TotalSegments", 1)
        segment = asked.get("Segment", 0)
        start = asked.get("ExclusiveStartKey", {}).get(r.ATTR_IMAGE_ID, {}).get("S")
        page = 0 if start is None else int(start.split(":")[1]) + 1
        share = self.count // segments + (1 if segment < self.count % segments else 0)
        pages = -(-share // PAGE_ITEMS)
        mark = f"{segment:02x}{page:06x}".encode()
        body = self._templates[(segment + page) % 8].replace(_PAGE_MARK, mark)
        size = min(PAGE_ITEMS, share - page * PAGE_ITEMS)
        if size < PAGE_ITEMS:  # the segment's last page: fewer items
            data = json.loads(body)
            data["Items"] = data["Items"][:size]
            body = json.dumps(data).encode()
        if page + 1 < pages:
            last = json.dumps({r.ATTR_IMAGE_ID: {"S": f"{segment}:{page}"}}).encode()
            body = body[:-1] + b',"LastEvaluatedKey":' + last + b"}"
        return _json_response(request, body)


def _json_response(request: Any, body: bytes) -> AWSResponse:
    return AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.0"}, _Raw(body))


def _catalog(pages: _ScanPages) -> DynamoDBCatalog:
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(max_pool_connections=16),
    )
    client.meta.events.register("before-send.dynamodb", pages.answer)
    return DynamoDBCatalog("bench-images", client=client)


def _stubbed_index(bodies: list[bytes] | None = None) -> S3VectorsIndex:
    """The adapter on a client whose requests are answered at ``before-send``: every
    PutVectors is built, serialised and signed as for the service, then answered (and
    its body kept in ``bodies`` when given)."""
    client = boto3.client(
        "s3vectors",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(max_pool_connections=16),
    )

    def answer(request: Any, **_: Any) -> AWSResponse:
        if bodies is not None and request.url.endswith("/PutVectors"):
            bodies.append(bytes(request.body))
        return _json_response(request, b'{"vectors":[]}')

    client.meta.events.register("before-send.s3vectors", answer)
    return S3VectorsIndex(
        client, bucket="bench-vectors", index="bench-reindex", dimension=DIMENSION
    )


class _BotocoreFloats(S3VectorsIndex):
    """The adapter as it was: float lists handed to botocore (validated and serialised
    value by value), one request after the other."""

    def upsert(self, entries: Any) -> None:
        for start in range(0, len(entries), 500):
            self._client.put_vectors(
                **self._target(),
                vectors=[
                    {
                        "key": entry.image_id,
                        "data": {"float32": self._unit(entry.vector).tolist()},
                        "metadata": metadata_for(entry),
                    }
                    for entry in entries[start : start + 500]
                ],
            )


def _timed_reindex(
    catalog: Any, index: S3VectorsIndex, *, expected: int, **options: Any
) -> tuple[int, float]:
    started = time.perf_counter()
    result = reindex(
        catalog, index, model_id=BENCH_MODEL, dimension=DIMENSION, full=True, **options
    )
    seconds = time.perf_counter() - started
    if result["written"] != expected:
        # A rate over the wrong number of vectors is no figure: fail loudly instead.
        raise RuntimeError(f"reindex copied {result['written']} vectors, expected {expected}")
    return result["written"], seconds


def _emulator_process() -> tuple[subprocess.Popen[str], str]:
    """The emulator in its own process, as local mode runs it beside the CLI."""
    code = (
        "import sys, time\n"
        "from imagesearch.local.s3vectors_emulator import S3VectorsEmulator\n"
        "emulator = S3VectorsEmulator().start()\n"
        "print(emulator.endpoint_url, flush=True)\n"
        "sys.stdin.read()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def bench_emulator_alone(requests: int = 10) -> None:
    """The emulator's own work per PutVectors of 500 (the bodies our client sends),
    in this process without HTTP: parsing the JSON, then validating and storing."""
    bodies: list[bytes] = []
    _stubbed_index(bodies).upsert(list(_entries(requests * 500, DIMENSION)))
    service = S3VectorsService()
    service.handle("CreateVectorBucket", {"vectorBucketName": "bench-vectors"})
    service.handle(
        "CreateIndex",
        {
            "vectorBucketName": "bench-vectors",
            "indexName": "bench-reindex",
            "dataType": "float32",
            "dimension": DIMENSION,
            "distanceMetric": "cosine",
            "metadataConfiguration": {
                "nonFilterableMetadataKeys": list(S3VECTORS_NON_FILTERABLE_KEYS)
            },
        },
    )
    parse = handle = 0.0
    for body in bodies:
        started = time.perf_counter()
        params = json.loads(body)
        parsed = time.perf_counter()
        service.handle("PutVectors", params)
        parse += parsed - started
        handle += time.perf_counter() - parsed
    count = requests * 500
    report(
        f"s3vectors emulator PutVectors 500 x {DIMENSION}:",
        f"{count / (parse + handle):8.0f} vectors/s  the emulator alone, no HTTP"
        f" ({(parse + handle) / len(bodies) * 1000:.0f} ms a request: JSON parsing"
        f" {parse / len(bodies) * 1000:.0f} ms, validating and storing"
        f" {handle / len(bodies) * 1000:.0f} ms; {len(bodies[0]) / 2**20:.1f} MiB bodies)",
    )


def bench_reindex(count: int = REINDEX_COUNT, before_count: int = BEFORE_COUNT) -> None:
    print(
        f"reindex: catalog Scan pages of {PAGE_ITEMS} items as DynamoDB wire bytes (botocore"
        f" parses them; no network), {DIMENSION}-d vectors, PutVectors of 500"
    )
    pages = _ScanPages(count, DIMENSION)
    written, seconds = _timed_reindex(_catalog(pages), _stubbed_index(), expected=count)
    report(
        f"s3vectors reindex {count // 1000}k x {DIMENSION}:",
        f"{written / seconds:8.0f} vectors/s  our side alone ({seconds:.1f} s: parallel Scan"
        " parsed by botocore, numpy-encoded PutVectors answered at botocore's before-send)",
    )
    old = _BotocoreFloats(
        _stubbed_index()._client, bucket="bench-vectors", index="bench-reindex", dimension=DIMENSION
    )
    written, seconds = _timed_reindex(
        _catalog(_ScanPages(before_count, DIMENSION)),
        old,
        expected=before_count,
        segments=1,
        writers=1,
    )
    report(
        f"s3vectors reindex {before_count // 1000}k x {DIMENSION} before:",
        f"{written / seconds:8.0f} vectors/s  our side alone, as it was (one Scan, float"
        " lists serialised by botocore, one request at a time)",
    )
    bench_emulator_alone()
    process, endpoint = _emulator_process()
    try:
        client = _client(endpoint)
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
        written, seconds = _timed_reindex(_catalog(pages), index, expected=count)
        held = index.count()
    finally:
        process.kill()
        process.wait()
    report(
        f"s3vectors reindex {count // 1000}k x {DIMENSION}:",
        f"{written / seconds:8.0f} vectors/s  through the emulator in its own process"
        f" ({seconds:.1f} s, {held} vectors held after; the emulator's JSON parsing bounds"
        " it; the service allows 2,500 vectors/s per index)",
    )


class _Counting:
    """The client, counting calls per operation."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if not callable(method):
            return method

        def call(**kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return method(**kwargs)

        return call


class _ErasedAsBefore(S3VectorsIndex):
    """The erase as it was: the whole index listed again for every 500 deletions."""

    def erase(self) -> int:
        from itertools import islice

        removed = 0
        while True:
            batch = list(islice(self.keys(), 500))
            if not batch:
                return removed
            self.delete(batch)
            removed += len(batch)


def _timed_erase(
    emulator: S3VectorsEmulator, name: str, count: int, kind: type[S3VectorsIndex]
) -> tuple[dict[str, int], float]:
    dimension = 8
    client = _client(emulator.endpoint_url)
    ensure_index(
        client,
        bucket="bench-vectors",
        index=name,
        dimension=dimension,
        non_filterable_keys=S3VECTORS_NON_FILTERABLE_KEYS,
    )
    filler = S3VectorsIndex(client, bucket="bench-vectors", index=name, dimension=dimension)
    entries = list(_entries(count, dimension))
    for start in range(0, count, 10_000):
        filler.upsert(entries[start : start + 10_000])
    counting = _Counting(client)
    index = kind(counting, bucket="bench-vectors", index=name, dimension=dimension)
    started = time.perf_counter()
    removed = index.erase()
    seconds = time.perf_counter() - started
    calls = dict(counting.calls)
    if removed != count or filler.count() != 0:
        raise RuntimeError(f"erase removed {removed} of {count} vectors")
    return calls, seconds


def bench_erase(count: int = 100_000, before_count: int = 5_000) -> None:
    print("erase (the previous model's index after a switch), through the emulator over HTTP")
    with S3VectorsEmulator() as emulator:
        for label, size, kind in (
            (f"s3vectors erase {count // 1000}k:", count, S3VectorsIndex),
            (f"s3vectors erase {before_count // 1000}k before:", before_count, _ErasedAsBefore),
        ):
            calls, seconds = _timed_erase(emulator, f"bench-erase-{size}", size, kind)
            lists, deletes = calls.get("list_vectors", 0), calls.get("delete_vectors", 0)
            report(
                label,
                f"{lists * 1000 / size:6.2f} ListVectors and {deletes * 1000 / size:.2f}"
                f" DeleteVectors per 1,000 vectors ({lists} and {deletes} calls, {seconds:.1f} s)",
            )


def main() -> None:
    bench_overhead()
    bench_reindex()
    bench_erase()


if __name__ == "__main__":
    main()
