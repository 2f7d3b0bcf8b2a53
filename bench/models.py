"""Per-model embed overhead: our request building + response parsing, per image and
per text query, for each Bedrock model (no network: the model's time is not ours to
measure), and the request bytes each model gets for a 24 MP photo after the image
pipeline prepared it from that model's limits. Run: ``python -m bench models``.

Inputs: a 24 MP (6000x4000) photo-like JPEG (smooth gradients plus sensor-like noise,
~q90), prepared with each model's limits; the text query "red suede sneaker";
response bodies in each model's JSON shape with float32 values at the model's
dimension, serialised the way ``json`` writes them (what the adapters parse).
"""

from __future__ import annotations

import io
import json
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from PIL import Image

from bench import report
from imagesearch import resources as r
from imagesearch.embedders import build_embedder, limits_of
from imagesearch.images import prepare_image

RUNS = 200
QUERY = "red suede sneaker"
MODELS = ((r.TITAN_MODEL_ID, 1024), (r.NOVA_MODEL_ID, 1024), (r.COHERE_MODEL_ID, 1024))


def photo_24mp() -> bytes:
    rng = np.random.default_rng(24)
    y, x = np.mgrid[0:4000, 0:6000].astype(np.float32)
    base = np.stack([x / 6000 * 200, y / 4000 * 180, (x + y) / 10000 * 160], axis=-1)
    noisy = base + rng.normal(0, 6, base.shape).astype(np.float32)
    out = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


def response_bytes(model_id: str, dimension: int) -> bytes:
    values = [float(v) for v in np.random.default_rng(1).standard_normal(dimension) * 0.03]
    kind = r.model_kind(model_id)
    body: dict[str, Any]
    if kind == "titan":
        body = {"embedding": values, "inputTextTokenCount": 4, "message": None}
    elif kind == "nova":
        body = {"embeddings": [{"embeddingType": "IMAGE", "embedding": values}]}
    else:
        body = {"id": "b", "embeddings": {"float": [values]}, "response_type": "embeddings_by_type"}
    return json.dumps(body).encode()


def median_us(fn: Callable[[], object], runs: int = RUNS) -> str:
    for _ in range(5):
        fn()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1e6)
    return f"{statistics.median(samples):9.1f} µs  (min {min(samples):.1f})"


def parser_of(embedder: Any) -> Callable[[bytes], object]:
    parse = embedder.parse
    if r.model_kind(embedder.model_id) == "cohere":
        return lambda payload: parse(payload, expected=1)
    return parse  # type: ignore[no-any-return]


def main() -> None:
    photo = photo_24mp()
    print(f"input: 24 MP JPEG photo, {len(photo) / 1e6:.1f} MB; text query {QUERY!r}")
    print(f"request building + response parsing, median of {RUNS} (no network)")
    for model_id, dimension in MODELS:
        embedder: Any = build_embedder(model_id, dimension)
        limits = limits_of(embedder)
        prepared = prepare_image(
            photo,
            max_side=limits.max_side,
            max_bytes=limits.max_bytes,
            native_formats=limits.native_formats,
            max_area=limits.max_area,
        )
        payload = response_bytes(model_id, dimension)
        parse = parser_of(embedder)
        image = prepared.model_bytes

        report(
            f"embed overhead {model_id}: per image ({dimension}-d)",
            median_us(partial(_image, embedder, image, parse, payload)),
        )
        report(
            f"embed overhead {model_id}: per text query ({dimension}-d)",
            median_us(partial(_query, embedder, parse, payload)),
        )
        with Image.open(io.BytesIO(image)) as sent:
            size = f"{sent.width}x{sent.height} {prepared.model_format}"
        request = _request(embedder, image)
        report(
            f"embed overhead {model_id}: request bytes, 24 MP photo",
            f"{len(request):>9,} B  (image sent as {size}, {len(image):,} B)",
        )


def _request(embedder: Any, image: bytes) -> bytes:
    if r.model_kind(embedder.model_id) == "cohere":
        return embedder.request_body(images=[image])  # type: ignore[no-any-return]
    return embedder.request_body(image=image)  # type: ignore[no-any-return]


def _image(embedder: Any, image: bytes, parse: Callable[[bytes], object], payload: bytes) -> None:
    _request(embedder, image)
    parse(payload)


def _query(embedder: Any, parse: Callable[[bytes], object], payload: bytes) -> None:
    if r.model_kind(embedder.model_id) == "cohere":
        embedder.request_body(texts=[QUERY], purpose="query")
    elif r.model_kind(embedder.model_id) == "nova":
        embedder.request_body(text=QUERY, purpose="query")
    else:
        embedder.request_body(text=QUERY)
    parse(payload)


if __name__ == "__main__":
    main()
