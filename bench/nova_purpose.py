"""Nova 2 query purpose with joint captions: which retrieves better? (decision 33)

Needs a real Bedrock account (Nova 2 Multimodal Embeddings enabled): nothing here can
measure retrieval quality without the real model, so ``make bench`` does not run it
(no ``main()``). Run it yourself:

    AWS_PROFILE=... AWS_REGION=us-east-1 python -m bench.nova_purpose \\
        --images path/to/folder --queries path/to/queries.json [--dimension 1024] [--top-k 10] \\
        [--instruction "text to put before each query, copied from the Nova docs"]

``--images``: JPEG/PNG/GIF/WebP files; a caption per image in ``captions.json`` next to
them (``{"file.jpg": "caption", ...}``; images without one are embedded alone, as ingest
does). ``--queries``: ``[{"text": "...", "relevant": ["file.jpg", ...]}, ...]``.

Every image is embedded once as ingest stores it with ``captionMode=joint``
(``GENERIC_INDEX``; text + image averaged and renormalised), then every query with each
purpose arm: ``IMAGE_RETRIEVAL`` (captionMode none's choice), ``GENERIC_RETRIEVAL`` (this
release's choice for joint captions) and, with ``--instruction``, ``GENERIC_RETRIEVAL`` on
the instruction + query. Printed per arm: recall@k and MRR over the queries, and the
number of model calls (each call is billed). ``--endpoint-url`` points it at the fake
Bedrock instead (a smoke test of the script: its figures mean nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imagesearch.embedders.nova import QUERY_PURPOSES, NovaMultimodalEmbedder
from imagesearch.images import prepare_image
from imagesearch.ingest import caption_for_embedding

SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp"})


@dataclass(frozen=True)
class Arm:
    name: str
    purpose: str
    instruction: str = ""


@dataclass(frozen=True)
class Score:
    arm: str
    recall: float
    mrr: float
    queries: int


def arms(instruction: str | None) -> list[Arm]:
    chosen = [Arm(purpose, purpose) for purpose in QUERY_PURPOSES]
    if instruction:
        chosen.append(Arm("GENERIC_RETRIEVAL + instruction", "GENERIC_RETRIEVAL", instruction))
    return chosen


def embed_catalog(
    embedder: NovaMultimodalEmbedder, folder: Path, captions: dict[str, str]
) -> tuple[list[str], np.ndarray]:
    """The stored vectors, as ingest makes them with captionMode=joint."""
    limits = embedder.limits
    names, vectors = [], []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES):
        prepared = prepare_image(
            path.read_bytes(),
            max_side=limits.max_side,
            max_bytes=limits.max_bytes,
            native_formats=limits.native_formats,
            max_area=limits.max_area,
        )
        caption = captions.get(path.name)
        text = caption_for_embedding(caption, limits.max_text_chars) if caption else None
        vectors.append(embedder.embed(text=text, image=prepared.model_bytes, purpose="document"))
        names.append(path.name)
    return names, np.stack(vectors)


def score(
    arm: Arm,
    embedder: NovaMultimodalEmbedder,
    names: list[str],
    matrix: np.ndarray,
    queries: Sequence[dict[str, Any]],
    top_k: int,
) -> Score:
    recalls, reciprocal = [], []
    for query in queries:
        vector = embedder.embed(text=f"{arm.instruction}{query['text']}", purpose="query")
        order = np.argsort(-(matrix @ vector))[:top_k]
        found = [names[i] for i in order]
        relevant = set(query["relevant"])
        recalls.append(len(relevant & set(found)) / len(relevant))
        ranks = [rank for rank, name in enumerate(found, 1) if name in relevant]
        reciprocal.append(1 / ranks[0] if ranks else 0.0)
    return Score(arm.name, float(np.mean(recalls)), float(np.mean(reciprocal)), len(queries))


def run(
    folder: Path,
    queries: Sequence[dict[str, Any]],
    *,
    model_id: str = "amazon.nova-2-multimodal-embeddings-v1:0",
    dimension: int = 1024,
    top_k: int = 10,
    instruction: str | None = None,
    client: Any = None,
) -> list[Score]:
    captions_file = folder / "captions.json"
    captions = json.loads(captions_file.read_text()) if captions_file.exists() else {}
    store = NovaMultimodalEmbedder(model_id, dimension, client=client)
    names, matrix = embed_catalog(store, folder, captions)
    scores = []
    for arm in arms(instruction):
        embedder = NovaMultimodalEmbedder(
            model_id, dimension, client=client, query_purpose=arm.purpose
        )
        scores.append(score(arm, embedder, names, matrix, queries, top_k))
    return scores


def cli(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.nova_purpose", description=__doc__)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--model-id", default="amazon.nova-2-multimodal-embeddings-v1:0")
    parser.add_argument("--dimension", type=int, default=1024)
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--instruction")
    parser.add_argument("--endpoint-url", help="a fake Bedrock (smoke test only)")
    args = parser.parse_args(argv)
    client = None
    if args.endpoint_url:
        import boto3

        client = boto3.client("bedrock-runtime", endpoint_url=args.endpoint_url)
    scores = run(
        args.images,
        json.loads(args.queries.read_text()),
        model_id=args.model_id,
        dimension=args.dimension,
        top_k=args.top_k,
        instruction=args.instruction,
        client=client,
    )
    for s in scores:
        print(
            f"nova query purpose {s.arm}: recall@{args.top_k} {s.recall:.3f}, "
            f"MRR {s.mrr:.3f} over {s.queries} queries"
        )
    return 0


if __name__ == "__main__":
    sys.exit(cli())
