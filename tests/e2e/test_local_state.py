"""Local state survives restarts (issue 11.1): index the drop folder, stop, start again:
zero model calls, every image searchable, CLI uploads still there."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fakes import imagefactory as images
from fakes.bedrock import FakeBedrock
from tests.e2e.conftest import LocalProcess, _free_port

DROPPED = {
    "red.jpg": images.jpeg(96, 64, images.RED),
    "trip/green.png": images.png(80, 80, images.GREEN),
    "trip/blue.jpg": images.jpeg(64, 96, images.BLUE),
    "gone-later.jpg": images.jpeg(50, 50, (250, 140, 20)),
    "deleted-by-api.jpg": images.jpeg(60, 40, (200, 200, 30)),
}
UPLOADED_KEY = "uploads/cli/navy.jpg"


def _state_dir(instance: LocalProcess) -> Path:
    # The default: ./.imagesearch beside the drop folder (local mode runs in its parent).
    return instance.dropbox.parent / ".imagesearch"


def _everything_searchable(instance: LocalProcess, keys: set[str]) -> bool:
    # "More like this" of one indexed image: a search that needs no model call.
    anchor = instance.get("/images", params={"status": "indexed", "limit": 1}).json()["items"]
    if not anchor:
        return False
    hits = instance.search(image_id=anchor[0]["image_id"], top_k=100)
    # (more like this leaves the anchor itself out)
    return {hit["key"] for hit in hits} | {anchor[0]["key"]} == keys


def _upload_with_cli(
    instance: LocalProcess, command: list[str], env: dict[str, str], folder: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, "upload", str(folder), "--prefix", "cli"],
        env={**env, "IMAGESEARCH_URL": instance.url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("store", ["dynamodb", "s3vectors"])
def test_a_restart_makes_no_model_call_and_keeps_everything(
    start_local_mode: Callable[..., LocalProcess],
    bedrock: FakeBedrock,
    imagesearch_command: list[str],
    local_env: dict[str, str],
    tmp_path: Path,
    store: str,
) -> None:
    # Given local mode that indexed the drop folder and an image uploaded with the CLI
    instance = start_local_mode("--vector-store", store)
    for name, data in DROPPED.items():
        instance.drop(name, data)
    cli_folder = tmp_path / "to-upload"
    cli_folder.mkdir()
    (cli_folder / "navy.jpg").write_bytes(images.jpeg(70, 70, (20, 30, 120)))
    uploaded = _upload_with_cli(instance, imagesearch_command, local_env, cli_folder)
    assert uploaded.returncode == 0, uploaded.stderr
    instance.wait_indexed(*DROPPED)
    instance.wait_status("cli/navy.jpg", "indexed")
    # ... and one image deleted through the API
    deleted = instance.image_id_for("deleted-by-api.jpg")
    assert instance.delete(f"/images/{deleted}").status_code == 202
    keys = {instance.key_for(name) for name in DROPPED} | {UPLOADED_KEY}
    keys.discard(instance.key_for("deleted-by-api.jpg"))
    instance.wait_until(lambda: _everything_searchable(instance, keys), message="all searchable")

    # When it stops cleanly, a file leaves the folder meanwhile, and it starts again
    assert instance.stop() == 0
    assert (_state_dir(instance) / "moto.pickle").is_file()
    instance.remove("gone-later.jpg")
    calls_before = len(bedrock.call_log)
    instance.start("--vector-store", store)

    # Then every image is searchable again, the CLI upload included, without indexing,
    # and the deleted ones stay deleted
    remaining = keys - {instance.key_for("gone-later.jpg")}
    instance.wait_until(
        lambda: _everything_searchable(instance, remaining),
        message="the saved images to be searchable after the restart",
    )
    instance.wait_gone("gone-later.jpg")
    assert instance.get(f"/images/{deleted}").status_code == 404
    instance.wait_until(
        lambda: (instance.dropbox / ".deleted" / "deleted-by-api.jpg").is_file(),
        message="the file of the image deleted through the API to be in .deleted/",
    )
    record = instance.get(f"/images/{instance.image_id_for('cli/navy.jpg')}").json()
    assert record["status"] == "indexed"
    stats = instance.get("/local/stats").json()
    assert stats["dropbox"]["files"] == len(DROPPED) - 2  # one removed, one deleted
    # (the start's steps are timed for bench/local.py)
    assert {"moto", "state", "handlers", "index", "listening"} <= set(stats["startup"]["steps"])
    instance.wait_until(
        lambda: instance.get("/local/stats").json()["images"]["indexed"] == len(remaining),
        message="the page's counts to match",
    )
    # ... and with no model call: nothing was embedded again (the start-up probe is a
    # request without text or image, which Bedrock refuses before any inference)
    assert _embeddings_since(bedrock, calls_before) == []
    # ... nor uploaded again (the mirror remembered what it had uploaded)
    restarted_log = instance.log().split("state restored from", 1)[1]
    assert "uploaded uploads/" not in restarted_log
    # A re-run of the same CLI upload finds nothing to do
    again = _upload_with_cli(instance, imagesearch_command, local_env, cli_folder)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "uploaded 0 files (0 B); 1 unchanged\n"


def test_a_killed_local_mode_keeps_what_was_saved(
    start_local_mode: Callable[..., LocalProcess], bedrock: FakeBedrock
) -> None:
    # Given local mode that indexed an image and saved its state
    instance = start_local_mode()
    instance.drop("kept.jpg", images.jpeg(40, 40, images.RED))
    instance.wait_indexed("kept.jpg")
    instance.wait_until(lambda: _all_saved(instance), message="the state to be saved")

    # When it is killed (no clean stop, perhaps in the middle of a save) and started again
    instance.stop(sig=signal.SIGKILL)
    calls_before = len(bedrock.call_log)
    instance.start()

    # Then the saved image is still there, with no model call, and a save cut short
    # left nothing behind
    instance.wait_status("kept.jpg", "indexed")
    assert not [p.name for p in _state_dir(instance).iterdir() if p.name.endswith(".tmp")]
    assert _embeddings_since(bedrock, calls_before) == []


def _embeddings_since(bedrock: FakeBedrock, start: int) -> list[Any]:
    """Calls that embedded text or an image since call number ``start``."""
    return [call for call in bedrock.call_log[start:] if call.has_text or call.has_image]


def _all_saved(instance: LocalProcess) -> bool:
    state: dict[str, Any] = instance.get("/local/stats").json()["state"]
    return state["saves"] >= 1 and not state["unsaved_changes"]


def test_two_local_modes_cannot_share_a_state_folder(
    start_local_mode: Callable[..., LocalProcess],
    local_env: dict[str, str],
    imagesearch_command: list[str],
) -> None:
    first = start_local_mode()

    second = subprocess.run(
        [
            *imagesearch_command,
            "local",
            "--port",
            str(_free_port()),
            "--dropbox",
            "other",
            "--state-dir",
            str(_state_dir(first)),
        ],
        env=local_env,
        cwd=first.dropbox.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert second.returncode == 1
    assert "is in use by another imagesearch local" in second.stderr
    assert "Traceback" not in second.stderr
    assert json.loads(first.get("/health").text)["status"] == "ok"


def test_the_same_bytes_under_another_name_are_not_embedded_again(
    local_mode: LocalProcess, bedrock: FakeBedrock
) -> None:
    # Given an indexed image
    photo = images.jpeg(52, 52, (10, 200, 200))
    local_mode.drop("cache/original.jpg", photo)
    local_mode.wait_indexed("cache/original.jpg")
    calls_before = len(bedrock.call_log)

    # When the same bytes arrive under another name
    local_mode.drop("cache/copy of original.jpg", photo)
    copy = local_mode.wait_indexed("cache/copy of original.jpg")[0]

    # Then it is indexed from the embedding cache, without a model call
    assert _embeddings_since(bedrock, calls_before) == []
    assert copy["status"] == "indexed"
