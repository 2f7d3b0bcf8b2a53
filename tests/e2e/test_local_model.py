"""A broken model is explained at once (issue 11.2): the start-up probe says what failed
and the fix; files wait and are retried once the model answers again."""

from __future__ import annotations

import subprocess
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


def test_an_unusable_model_shows_in_health_search_and_status_and_its_dead_letters_return_at_start(
    start_local_mode: Callable[..., LocalProcess],
    bedrock: FakeBedrock,
    imagesearch_command: list[str],
    local_env: dict[str, str],
) -> None:
    # Given a model that denies access, and a file that failed until the dead-letter queue
    bedrock.fail_next(500, "AccessDeniedException", "You don't have access to the model.")
    try:
        instance = start_local_mode()

        # Then /health is degraded with the probe's cause and fix
        health = instance.get("/health").json()
        assert health["status"] == "degraded"
        assert health["cause"].startswith("the embedding model is unusable: model access: ")
        assert (health["model"]["state"], health["model"]["since"] is not None) == (
            "unusable",
            True,
        )
        assert "Bedrock console" in health["model"]["fix"]
        # ... a search says why instead of "retry shortly"
        search = instance.post("/search", json={"text": "red"})
        assert search.status_code == 503
        assert search.json()["message"].startswith("the embedding model is unusable: ")
        assert "retry shortly" not in search.json()["message"]
        # ... and `imagesearch status` has the model's state
        status = subprocess.run(
            [*imagesearch_command, "--url", instance.url, "status"],
            env=local_env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert status.returncode == 0, status.stderr
        model_line = next(x for x in status.stdout.splitlines() if x.startswith("model "))
        assert "amazon.titan-embed-image-v1 (1024 dimensions): unusable since " in model_line
        assert "model access: " in model_line and "; fix: enable access to" in model_line

        instance.drop("parked.jpg", images.jpeg(40, 40, images.BLUE))
        instance.wait_until(
            lambda: instance.get("/local/stats").json()["dead_letter"] == 1,
            timeout=150,
            message="the file to reach the dead-letter queue",
        )
        assert instance.stop() == 0
    finally:
        bedrock.reset()

    # When local mode starts again with a working model (the saved state keeps the DLQ)
    instance.start()

    # Then the dead letter goes back to ingest at start, and all is well again
    instance.wait_indexed("parked.jpg", timeout=60)
    assert "1 failed file(s) from the dead-letter queue sent back to ingest" in instance.log()
    assert instance.get("/local/stats").json()["dead_letter"] == 0
    health = instance.get("/health").json()
    assert (health["status"], health["cause"], health["model"]["state"]) == ("ok", None, "ok")
