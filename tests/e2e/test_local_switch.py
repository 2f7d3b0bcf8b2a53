"""Local mode switches models like a deployment (SPEC section 8, issue 17.5): index a
folder with Titan, start again on the same state folder with Nova. The saved images stay
searchable throughout (from Titan's vectors until every image has a Nova vector, then
from Nova's), the banner, the page's stats and `imagesearch status` say so, and the
index is never silently empty. Polls with deadlines; no sleeps."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from fakes import imagefactory as images
from fakes.bedrock import FakeBedrock
from imagesearch import resources as r
from tests.e2e.conftest import LocalProcess

DROPPED = {
    "red.jpg": images.jpeg(96, 64, images.RED),
    "green.png": images.png(80, 80, images.GREEN),
    "blue.jpg": images.jpeg(64, 96, images.BLUE),
}


@pytest.mark.parametrize("store", ["dynamodb", "s3vectors"])
def test_another_model_on_a_saved_state_switches_without_an_empty_index(
    start_local_mode: Callable[..., LocalProcess],
    bedrock: FakeBedrock,
    imagesearch_command: list[str],
    local_env: dict[str, str],
    store: str,
) -> None:
    # Given a drop folder indexed with Titan (the default model)
    instance = start_local_mode("--vector-store", store)
    for name, data in DROPPED.items():
        instance.drop(name, data)
    instance.wait_indexed(*DROPPED)
    instance.wait_until(
        lambda: len(instance.search(text="red", top_k=10)) == len(DROPPED),
        message="every image searchable with Titan",
    )
    red = instance.key_for("red.jpg")

    # When local mode starts again on the same state folder with Nova
    assert instance.stop() == 0
    instance.start("--vector-store", store, "--model-id", r.NOVA_MODEL_ID, "--dimension", "1024")

    # Then the banner says it switches, and until the switch completes every answer
    # holds every image (never a silently empty index)
    instance.wait_until(
        lambda: "model switch: the saved images were embedded with" in instance.log(),
        message="the banner to announce the switch",
    )

    def switched() -> dict[str, Any] | None:
        health = instance.get("/health").json()
        assert health["images"] == len(DROPPED), health
        hits = instance.search(text="red", top_k=10)
        assert len(hits) == len(DROPPED) and hits[0]["key"] == red, hits
        switch = instance.get("/local/stats").json()["switch"]
        assert switch is not None and switch["text"]
        done = switch["phase"] == "serving" and switch["serving"]["model_id"] == r.NOVA_MODEL_ID
        return switch if done else None

    switch = instance.wait_until(switched, timeout=120, message="the switch to Nova to complete")
    assert switch["previous"]["model_id"] == r.TITAN_MODEL_ID

    # ... then search answers from Nova's vectors, for every image
    health = instance.get("/health").json()
    assert (health["model_id"], health["dimension"], health["images"]) == (
        r.NOVA_MODEL_ID,
        1024,
        len(DROPPED),
    )
    for name in DROPPED:
        record = instance.get(f"/images/{instance.image_id_for(name)}").json()
        assert (record["status"], record["model_id"]) == ("indexed", r.NOVA_MODEL_ID)
    assert instance.search(text="red", top_k=10)[0]["key"] == red
    assert any(c.model_id == r.NOVA_MODEL_ID and c.status == 200 for c in bedrock.call_log)
    # ... and `imagesearch status` shows the switch
    status = subprocess.run(
        [*imagesearch_command, "status"],
        env={**local_env, "IMAGESEARCH_URL": instance.url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    assert f"complete: serving {r.NOVA_MODEL_ID} (1024)" in status.stdout
