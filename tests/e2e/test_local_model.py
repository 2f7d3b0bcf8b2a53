"""A broken model is explained at once (issue 11.2): the start-up probe says what failed
and the fix; files wait and are retried once the model answers again."""

from __future__ import annotations

from collections.abc import Callable

from fakes import imagefactory as images
from fakes.bedrock import FakeBedrock
from tests.e2e.conftest import LocalProcess


def test_a_broken_model_is_explained_at_start_and_files_retried_when_it_answers(
    start_local_mode: Callable[..., LocalProcess], bedrock: FakeBedrock
) -> None:
    # Given a model that denies access (the account lacks model access)
    bedrock.fail_next(500, "AccessDeniedException", "You don't have access to the model.")
    try:
        # When local mode starts
        instance = start_local_mode()

        # Then the banner says what failed and the fix, without a traceback
        instance.wait_until(lambda: "Ctrl-C" in instance.log(), message="the banner")
        log = instance.log()
        assert "the embedding model is not usable: model access:" in log
        assert "fix: enable access to amazon.titan-embed-image-v1 in the Bedrock console" in log
        assert "--embedder clip" in log
        assert "Traceback" not in log
        model = instance.get("/local/stats").json()["model"]
        assert (model["ok"], model["what"]) == (False, "model access")

        # And a file dropped meanwhile fails until it is parked in the dead-letter queue
        instance.drop("waiting.jpg", images.jpeg(40, 40, images.GREEN))
        instance.wait_until(
            lambda: instance.get("/local/stats").json()["dead_letter"] == 1,
            timeout=150,
            message="the file to reach the dead-letter queue",
        )
        # ... visible as failed with the cause: in the record, the listing and the counts
        record = instance.wait_status("waiting.jpg", "failed")
        assert "Bedrock denied access to amazon.titan-embed-image-v1" in record["reason"]
        listed = instance.get("/images", params={"status": "failed"}).json()["items"]
        assert [item["key"] for item in listed] == [instance.key_for("waiting.jpg")]
        assert instance.get("/local/stats").json()["images"]["failed"] == 1
    finally:
        # When access is granted
        bedrock.reset()

    # Then local mode notices within its re-check interval and indexes the file
    instance.wait_indexed("waiting.jpg", timeout=120)
    assert instance.get("/local/stats").json()["model"] == {"ok": True}
    assert instance.get("/local/stats").json()["images"]["failed"] == 0
    assert "the embedding model answers again: 1 failed file(s) sent back to ingest" in (
        instance.log()
    )
    assert "Traceback" not in instance.log()
