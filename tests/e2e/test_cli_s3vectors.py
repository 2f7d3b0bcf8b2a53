"""The scale tier as a user drives it: ``imagesearch local --vector-store s3vectors``,
then ``status`` shows the catalog's and the vector index's counts and ``reindex`` copies
vectors the index lacks (here: after the index lost them), without model calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3

from fakes import imagefactory as images
from fakes.bedrock import FakeBedrock
from tests.e2e.conftest import LocalProcess
from tests.e2e.test_cli import Cli

NAMES = ("tier/red.jpg", "tier/blue.png", "tier/deep/green.jpg")


def test_status_and_reindex_on_the_scale_tier(
    start_local_mode: Callable[..., LocalProcess],
    imagesearch_command: list[str],
    local_env: dict[str, str],
    bedrock: FakeBedrock,
) -> None:
    local = start_local_mode("--vector-store", "s3vectors")
    assert "S3 Vectors emulator" in local.log()
    # No maintenance function here: local mode publishes /health's count itself
    assert local.get("/health").json()["images"] == 0
    local.drop(NAMES[0], images.jpeg(64, 48, images.RED))
    local.drop(NAMES[1], images.png(40, 40, images.BLUE))
    local.drop(NAMES[2], images.jpeg(30, 50, images.GREEN))
    local.wait_indexed(*NAMES)
    health = local.wait_until(
        lambda: (h := local.get("/health").json())["images"] == 3 and h,
        message="/health to count every image",
    )
    assert health["images_as_of"].endswith("Z")
    cli = Cli(imagesearch_command, local_env, local.url)

    status = local.wait_until(
        lambda: (s := cli.json("status"))["vector_index"].get("vectors") == 3 and s,
        message="the index to hold every vector",
    )
    assert status["vector_index"]["store"] == "s3vectors"
    assert status["images"]["indexed"] == 3
    assert "vector index 3 vectors" in cli.ok("status")

    # The index loses two vectors (as if it were new): status says so, reindex repairs it.
    info: dict[str, Any] = local.get("/local/resources").json()
    vectors = boto3.client(
        "s3vectors",
        endpoint_url=info["vectors_endpoint_url"],
        region_name=info["region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    lost = [local.image_id_for(NAMES[0]), local.image_id_for(NAMES[2])]
    vectors.delete_vectors(
        vectorBucketName=info["vector_bucket"], indexName=info["vector_index"], keys=lost
    )
    status = cli.json("status")
    assert status["vector_index"]["vectors"] == 1
    assert any("imagesearch reindex" in hint for hint in status["hints"])

    calls = bedrock.calls
    out = cli.ok("reindex")
    assert "2 vectors written, 1 already there, 0 removed" in out
    assert bedrock.calls == calls  # no model calls
    assert cli.json("status")["vector_index"]["vectors"] == 3
    assert "0 vectors written, 3 already there" in cli.ok("reindex")
    hits = local.search(text="red", top_k=3, prefix="tier/")
    assert hits[0]["key"] == local.key_for(NAMES[0])
