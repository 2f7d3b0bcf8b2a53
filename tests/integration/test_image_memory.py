"""Peak memory of the image pipeline on the worst input of each format (issue 9).

Each case runs in a fresh interpreter that first imports the ingest handler (so the
baseline is the function's own runtime), reads the file (the object body) and calls
``prepare_with_thumbnail``. The peak is the child's ``ru_maxrss`` as its parent sees
it, and must stay below the memory the stack gives the function. The search case
sends ten worst-case query images in one request through ``SearchService``. The batch
case prepares the images of one SQS message batch for a multi-image model (Cohere v4),
holding nine near the model's byte limit while the worst decode runs, then builds the
multi-image requests.

Subprocesses: Linux carries ``ru_maxrss`` over fork + exec, so the child would report
this (large) pytest process's peak. A small launcher in between starts clean.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakes.imagefactory import MEMORY_WORST_CASES, WorstCase
from imagesearch import images
from imagesearch.embedders.cohere import COHERE_LIMITS
from stacks.ingest import MEMORY_MB as INGEST_MEMORY_MB
from stacks.search_api import MEMORY_MB as SEARCH_MEMORY_MB

ROOT = Path(__file__).resolve().parents[2]

_LAUNCHER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"PEAK_KIB {peak_kib}")
sys.exit(code)
"""

_INGEST_CHILD = """
import json, sys, time
import imagesearch.handlers.ingest  # the function's runtime: boto3, powertools, pydantic
from imagesearch import images
from imagesearch.embedders.cohere import COHERE_LIMITS
from imagesearch.errors import ImageRejected
data = open(sys.argv[1], "rb").read()
started = time.perf_counter()
try:
    prepared, thumbnail = images.prepare_with_thumbnail(data)
    result = {"outcome": "indexed", "size": [prepared.width, prepared.height]}
except ImageRejected as rejected:
    result = {"outcome": "rejected", "reason": rejected.reason}
result["seconds"] = time.perf_counter() - started
print(json.dumps(result))
"""

_SEARCH_CHILD = """
import base64, json, sys, time
import numpy as np
import imagesearch.handlers.api  # the function's runtime
from imagesearch.api_models import SearchRequest
from imagesearch.embedders.base import unit_vector
from imagesearch.errors import ImageRejected
from imagesearch.search import SearchService

class Embedder:
    model_id = "fake"
    dimension = 8
    def embed(self, *, text=None, image=None, purpose="query"):
        return unit_vector(np.arange(1, 9, dtype=np.float32))

image = base64.b64encode(open(sys.argv[1], "rb").read()).decode()
service = SearchService(
    catalog=None, index=None, embedder=Embedder(), store=None,
    upload_prefix="uploads/", model_id="fake", dimension=8,
)
request = SearchRequest.model_validate(
    {"queries": [{"image": image, "weight": 1.0} for _ in range(10)]}
)
started = time.perf_counter()
try:
    service.query_vector(request)
    result = {"outcome": "indexed"}
except ImageRejected as rejected:
    result = {"outcome": "rejected", "reason": rejected.reason}
result["seconds"] = time.perf_counter() - started
print(json.dumps(result))
"""


_BATCH_CHILD = """
import json, sys, time
import imagesearch.handlers.ingest  # the function's runtime
from imagesearch import images
from imagesearch.embedders.cohere import COHERE_LIMITS
from imagesearch.embedders import EmbedInput
from imagesearch.embedders.cohere import COHERE_LIMITS, CohereEmbedV4Embedder

class NoNetwork(CohereEmbedV4Embedder):
    def invoke(self, body):  # the request is built in full; the answer is one per image
        count = body.count(b'"data:image/')
        return json.dumps({"embeddings": {"float": [[1.0] * 1536] * count}}).encode()

started = time.perf_counter()
waiting = []  # what ingest holds per image until the model call: model bytes, thumbnail
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    prepared, thumbnail = images.prepare_with_thumbnail(
        data,
        max_side=COHERE_LIMITS.max_side,
        max_bytes=COHERE_LIMITS.max_bytes,
        native_formats=COHERE_LIMITS.native_formats,
        max_area=COHERE_LIMITS.max_area,
    )
    del data
    waiting.append((prepared.model_bytes, thumbnail))
embedder = NoNetwork(dimension=1536, client=object())
vectors = embedder.embed_images([EmbedInput(image) for image, _ in waiting])
print(json.dumps({
    "outcome": "indexed",
    "vectors": len(vectors),
    "held_bytes": sum(len(image) for image, _ in waiting),
    "seconds": time.perf_counter() - started,
}))
"""


def measure(script: str, *paths: Path) -> tuple[dict[str, object], float]:
    """Run ``script`` on ``paths`` in a clean child: (its JSON result, its peak RSS in MB)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "lambdas"), str(ROOT)])
    completed = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, sys.executable, "-c", script, *map(str, paths)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.strip().splitlines()
    peak_kib = int(lines[-1].removeprefix("PEAK_KIB "))
    return json.loads(lines[-2]), peak_kib / 1024


def build(case: WorstCase, directory: Path) -> Path:
    """The case's bytes in a file; expensive ones are built in a child process so that
    this worker does not keep their hundreds of MB."""
    path = directory / case.id
    if not case.expensive:
        path.write_bytes(case.factory())
        return path
    script = (
        "import sys\n"
        "from fakes.imagefactory import MEMORY_WORST_CASES\n"
        "case = next(c for c in MEMORY_WORST_CASES if c.id == sys.argv[1])\n"
        "open(sys.argv[2], 'wb').write(case.factory())\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "lambdas"), str(ROOT)])
    subprocess.run(
        [sys.executable, "-c", script, case.id, str(path)], check=True, cwd=ROOT, env=env
    )
    return path


def test_the_worst_cases_cover_every_format() -> None:
    formats = {case.id.split("-")[0] for case in MEMORY_WORST_CASES}
    assert formats == {"png", "webp", "gif", "tiff", "jpeg", "heic"}


@pytest.mark.parametrize("case", MEMORY_WORST_CASES, ids=lambda case: case.id)
def test_worst_case_image_fits_the_ingest_function(case: WorstCase, tmp_path: Path) -> None:
    # Given the input of this format that needs the most memory to decode
    path = build(case, tmp_path)
    data = path.read_bytes()
    estimate = images.estimate_decode_bytes(data)
    with Image.open(io.BytesIO(data)) as opened:
        pixels = opened.width * opened.height
    if case.outcome == "indexed":
        # (near whichever limit binds first, so that it stays the worst case)
        assert estimate <= images.MAX_DECODE_BYTES and pixels <= images.MAX_PIXELS
        assert max(estimate / images.MAX_DECODE_BYTES, pixels / images.MAX_PIXELS) >= 0.75
    else:
        assert estimate > images.MAX_DECODE_BYTES and pixels <= images.MAX_PIXELS

    # When the ingest path prepares it in a fresh interpreter with the function's runtime
    result, peak_mb = measure(_INGEST_CHILD, path)

    # Then it ends as expected, turned away from its header when over the budget
    assert result["outcome"] == case.outcome, result
    if case.outcome == "rejected":
        assert "too large to decode" in str(result["reason"])
    # And the peak RSS stays below the ingest function's memory
    assert peak_mb < INGEST_MEMORY_MB, f"{case.description}: peak {peak_mb:.0f} MB"


@pytest.mark.parametrize("case_id", ["webp", "webp-over-budget"])
def test_ten_worst_case_query_images_fit_the_search_function(case_id: str, tmp_path: Path) -> None:
    # Given one search request with ten copies of the heaviest query image (a WebP
    # takes 16 bytes a pixel to decode) or of one over the decode budget
    case = next(c for c in MEMORY_WORST_CASES if c.id == case_id)
    path = build(case, tmp_path)

    # When the search service turns the ten parts into one query vector
    result, peak_mb = measure(_SEARCH_CHILD, path)

    # Then the images are decoded one at a time (or turned away from the header)
    assert result["outcome"] == case.outcome, result
    # And the peak RSS stays below the search function's memory
    assert peak_mb < SEARCH_MEMORY_MB, f"10 x {case.description}: peak {peak_mb:.0f} MB"


def noise_png_near(limit: int) -> bytes:
    """An RGB noise PNG just under ``limit`` bytes: passed to the model untouched, so
    the batch holds it whole until the call."""
    side = int((limit / 3) ** 0.5) - 8
    pixels = np.random.default_rng(5).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "PNG", compress_level=1)
    return out.getvalue()


@pytest.mark.parametrize("case_id", ["png", "webp"])
def test_a_message_batch_for_a_multi_image_model_fits_the_ingest_function(
    case_id: str, tmp_path: Path
) -> None:
    # Given one message batch for Cohere v4: nine images near its 5 MiB limit, which
    # wait for the model whole, and the worst decode of a format last
    heavy = tmp_path / "heavy.png"
    heavy.write_bytes(noise_png_near(COHERE_LIMITS.max_bytes))
    assert len(heavy.read_bytes()) > 0.85 * COHERE_LIMITS.max_bytes
    worst = build(next(c for c in MEMORY_WORST_CASES if c.id == case_id), tmp_path)

    # When ingest prepares all ten and builds the multi-image requests
    result, peak_mb = measure(_BATCH_CHILD, *[heavy] * 9, worst)

    # Then every image gets its vector, and the peak RSS stays below the function's memory
    assert result["vectors"] == 10, result
    assert int(str(result["held_bytes"])) > 9 * 0.85 * COHERE_LIMITS.max_bytes
    assert peak_mb < INGEST_MEMORY_MB, f"9 x 5 MiB + {case_id}: peak {peak_mb:.0f} MB"
