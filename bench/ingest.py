"""Ingest per SQS message batch: what taking the batch together saves.

- ``ingest vector sync, batch of 10 on s3vectors:``: the vector index following the
  catalog writes of one message batch (10 images, 1024-d; 7 indexed, 3 deleted), by
  ``ReadAfterWriteSync.sync`` for the whole batch, next to the same ten one image at a
  time (``written`` per image, as ingest did before). Catalog: the in-memory fake (its
  reads counted: one per BatchGetItem or GetItem a real catalog would send); index:
  ``S3VectorsIndex`` on the S3 Vectors emulator over loopback HTTP. Index calls are
  counted on the emulator; milliseconds per image are our side plus the emulator's,
  without any real network round trip (each saved call saves one of those too).
- ``ingest embed, batch of 10 on cohere:``: ten prepared 320x240 JPEGs embedded as
  stored documents by Cohere Embed v4 (1024-d) through the fake Bedrock over loopback
  HTTP: one ``embed_images`` call, next to ten single calls. Model calls counted on the
  fake; milliseconds per image are our request building, the SDK and the fake's work.

Run: ``python -m bench ingest``.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable
from typing import Any

import boto3
import numpy as np
from PIL import Image

from bench import report
from fakes.bedrock import FakeBedrock
from fakes.catalog import InMemoryCatalog
from imagesearch import resources as r
from imagesearch.embedders import EmbedInput
from imagesearch.embedders.cohere import CohereEmbedV4Embedder
from imagesearch.index.s3vectors import NON_FILTERABLE_METADATA_KEYS, S3VectorsIndex
from imagesearch.index.sync import ReadAfterWriteSync
from imagesearch.local.s3vectors_emulator import S3VectorsEmulator, ensure_index
from imagesearch.records import ImageRecord, image_id_for_key

DIMENSION = 1024
BATCH = 10
ROUNDS = 30
RUNS = 9
MODEL = "bench-model"


def _s3vectors_index(emulator: S3VectorsEmulator) -> S3VectorsIndex:
    client = boto3.client(
        "s3vectors",
        endpoint_url=emulator.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    ensure_index(
        client,
        bucket="bench-vectors",
        index="bench-index",
        dimension=DIMENSION,
        non_filterable_keys=NON_FILTERABLE_METADATA_KEYS,
    )
    return S3VectorsIndex(client, bucket="bench-vectors", index="bench-index", dimension=DIMENSION)


def _write_batch(catalog: InMemoryCatalog, round_: int, rng: np.random.Generator) -> list[str]:
    """One message batch's catalog writes: seven indexed images and three deletes."""
    ids = []
    for n in range(BATCH):
        key = f"uploads/bench/{round_}-{n}.jpg"
        image_id = image_id_for_key(key)
        sequencer = f"S{round_:06d}"
        if n < 7:
            vector = rng.standard_normal(DIMENSION).astype(np.float32)
            catalog.put(
                ImageRecord(
                    image_id=image_id,
                    key=key,
                    status=r.STATUS_INDEXED,
                    content_type="image/jpeg",
                    model_id=MODEL,
                    dimension=DIMENSION,
                    sequencer=sequencer,
                    vector=vector,
                )
            )
        else:
            catalog.delete(image_id, key=key, sequencer=sequencer)
        ids.append(image_id)
    return ids


def bench_vector_sync() -> None:
    rng = np.random.default_rng(7)
    with S3VectorsEmulator() as emulator:
        index = _s3vectors_index(emulator)
        print(
            f"vector sync of one message batch ({BATCH} images, {DIMENSION}-d: 7 indexed,"
            f" 3 deleted), S3 Vectors emulator over loopback, median of {ROUNDS} batches"
        )
        for label, sync_batch in (
            ("batched", lambda sync, ids: sync.sync(ids)),
            ("one image at a time", lambda sync, ids: [sync.written(i) for i in ids]),
        ):
            catalog = InMemoryCatalog()
            sync = ReadAfterWriteSync(catalog, index, model_id=MODEL, dimension=DIMENSION)
            per_image: list[float] = []
            calls_before = len(emulator.service.calls)
            reads_before = catalog.batch_reads
            gets = 0

            def count_gets(operation: str, ids: list[str]) -> None:
                nonlocal gets
                gets += operation == "get"

            catalog.before = count_gets
            for round_ in range(ROUNDS):
                ids = _write_batch(catalog, round_ + (0 if label == "batched" else ROUNDS), rng)
                started = time.perf_counter()
                sync_batch(sync, ids)
                per_image.append((time.perf_counter() - started) * 1000 / BATCH)
            calls = emulator.service.calls[calls_before:]
            puts = calls.count("PutVectors") / ROUNDS
            deletes = calls.count("DeleteVectors") / ROUNDS
            reads = (catalog.batch_reads - reads_before + gets) / ROUNDS
            report(
                f"ingest vector sync, batch of {BATCH} on s3vectors ({label}):",
                f"{puts:.0f} PutVectors + {deletes:.0f} DeleteVectors + {reads:.0f} catalog"
                f" reads per batch, {statistics.median(per_image):.2f} ms per image",
                width=70,
            )


def _jpeg(n: int) -> bytes:
    rng = np.random.default_rng(n)
    pixels = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


def _timed(fake: FakeBedrock, work: Callable[[], Any]) -> tuple[float, int]:
    fake.reset()
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) * 1000 / BATCH, fake.calls


def bench_cohere_batch() -> None:
    images = [_jpeg(n) for n in range(BATCH)]
    items = [EmbedInput(image) for image in images]
    with FakeBedrock() as fake:
        client = fake.client(aws_access_key_id="bench", aws_secret_access_key="bench")
        embedder = CohereEmbedV4Embedder(dimension=DIMENSION, client=client)
        embedder.embed(image=images[0], purpose="document")  # warm the client
        print(
            f"Cohere Embed v4 ({DIMENSION}-d) document embeddings of {BATCH} 320x240 JPEGs"
            f" (~{len(images[0]) // 1024} KB each), fake Bedrock over loopback, median of {RUNS}"
        )
        variants = {
            "one call": lambda: embedder.embed_images(items),
            "ten calls": lambda: [embedder.embed(image=i, purpose="document") for i in images],
        }
        runs: dict[str, list[tuple[float, int]]] = {label: [] for label in variants}
        for _ in range(RUNS):  # alternated, so that the machine's load hits both alike
            for label, work in variants.items():
                runs[label].append(_timed(fake, work))
        for label, timed in runs.items():
            report(
                f"ingest embed, batch of {BATCH} on cohere ({label}):",
                f"{timed[0][1]} model calls, {statistics.median(ms for ms, _ in timed):.2f} ms"
                " per image",
                width=70,
            )


def main() -> None:
    bench_vector_sync()
    bench_cohere_batch()


if __name__ == "__main__":
    main()
