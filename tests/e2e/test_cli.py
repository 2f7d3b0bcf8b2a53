"""Every ``imagesearch`` command as a user runs it: a subprocess against local mode.

One local mode per vector store (module-scoped: the default embedded tier and the
scale tier on the S3 Vectors emulator, which must behave alike for a user) with its
fake Bedrock; images are uploaded through ``imagesearch upload`` (POST /uploads +
presigned PUT into moto), indexed by the real ingest path, then searched, inspected,
backfilled and deleted with the CLI. Colours carry the meaning (the fake Bedrock embeds by colour).
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest

from fakes import imagefactory as images
from fakes.bedrock import FakeBedrock
from imagesearch.records import image_id_for_key
from tests.e2e.conftest import LocalProcess, _new_instance

NAVY = (20, 20, 150)
PREFIX = "cli"
RED = f"{PREFIX}/red.jpg"
BLUE = f"{PREFIX}/blue.png"
GREEN = f"{PREFIX}/sub/green.jpg"
NAVY_NAME = f"{PREFIX}/sub/navy.jpg"
BROKEN = f"{PREFIX}/broken.jpg"
MODEL_ID = "amazon.titan-embed-image-v1"


class Cli:
    """Runs ``imagesearch --url <local mode> ...`` as a subprocess."""

    def __init__(self, command: list[str], env: dict[str, str], url: str) -> None:
        self.command = command
        self.env = {**env, "COLUMNS": "200"}  # a wide "terminal": keys are not shortened
        self.url = url

    def __call__(self, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.command, "--url", url or self.url, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.returncode == 0, f"{args}: {result.returncode}\n{result.stderr}"
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))


@pytest.fixture(scope="module", params=["dynamodb", "s3vectors"])
def local_mode(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    imagesearch_command: list[str],
    local_env: dict[str, str],
) -> Any:
    """This module's local mode, once per vector store."""
    store = request.param
    instance = _new_instance(
        tmp_path_factory, imagesearch_command, {**local_env, "VECTOR_STORE": store}, store
    )
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def cli(local_mode: LocalProcess, imagesearch_command: list[str], local_env: dict[str, str]) -> Cli:
    return Cli(imagesearch_command, local_env, local_mode.url)


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("to-upload")
    files = {
        "red.jpg": images.jpeg(96, 64, images.RED),
        "blue.png": images.png(80, 80, images.BLUE),
        "sub/green.jpg": images.jpeg(64, 96, images.GREEN),
        "sub/navy.jpg": images.jpeg(70, 70, NAVY),
        "broken.jpg": images.truncated_jpeg(),
        "notes.txt": b"not an image",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.fixture(scope="module")
def uploaded(cli: Cli, local_mode: LocalProcess, upload_dir: Path) -> dict[str, dict[str, Any]]:
    """Given a folder uploaded with `imagesearch upload DIR --prefix cli` and indexed."""
    result = cli("upload", str(upload_dir), "--prefix", PREFIX)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("uploaded 5 files (")
    assert result.stdout.rstrip().endswith("to uploads/cli/; skipped 1 (not an image)")
    assert result.stderr == ""  # no progress bar when stderr is not a terminal

    records = local_mode.wait_indexed(RED, BLUE, GREEN, NAVY_NAME)
    local_mode.wait_status(BROKEN, "rejected")
    keys = {record["key"] for record in records}
    local_mode.wait_until(
        lambda: keys <= {hit["key"] for hit in local_mode.search(text="image", top_k=100)},
        message="the uploads to be searchable",
    )
    return {record["key"]: record for record in records}


def _moto(local_mode: LocalProcess, service: str) -> tuple[Any, dict[str, str]]:
    """A client of local mode's moto server, and its resource names."""
    info = local_mode.get("/local/resources").json()
    client = boto3.client(
        service,
        endpoint_url=info["endpoint_url"],
        region_name=info["region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return client, info


def _store(local_mode: LocalProcess) -> str:
    return local_mode._env.get("VECTOR_STORE", "dynamodb")


def _ingest_queue_empty(cli: Cli) -> bool:
    queue = cli.json("status")["queues"]["ingest"]
    return queue["waiting"] == 0 and queue["in_flight"] == 0


def _listed(local_mode: LocalProcess, status: str) -> int:
    response = local_mode.get("/images", params={"status": status, "limit": 100})
    return len(response.json()["items"])


def _without_urls(record: dict[str, Any] | None) -> dict[str, Any]:
    # Presigned URLs carry their signing time: everything else must be unchanged.
    assert record is not None
    return {k: v for k, v in record.items() if k not in ("url", "thumbnail_url")}


# --- upload ------------------------------------------------------------------------------


def test_uploaded_files_are_indexed_under_prefix_and_relative_path(
    uploaded: dict[str, dict[str, Any]],
) -> None:
    assert set(uploaded) == {
        "uploads/cli/red.jpg",
        "uploads/cli/blue.png",
        "uploads/cli/sub/green.jpg",
        "uploads/cli/sub/navy.jpg",
    }
    assert uploaded["uploads/cli/blue.png"]["content_type"] == "image/png"
    assert (
        uploaded["uploads/cli/red.jpg"]["width"],
        uploaded["uploads/cli/red.jpg"]["height"],
    ) == (
        96,
        64,
    )


# --- search ------------------------------------------------------------------------------


def test_search_prints_a_table_with_the_red_image_first(
    cli: Cli, uploaded: dict[str, dict[str, Any]]
) -> None:
    lines = cli.ok("search", "red", "--top-k", "3").splitlines()

    assert lines[0].split() == ["#", "SCORE", "IMAGE", "ID", "SIZE", "TYPE", "KEY"]
    first = lines[1].split()
    assert first[0] == "1"
    assert first[2] == image_id_for_key("uploads/cli/red.jpg")
    assert first[3:] == ["96x64", "image/jpeg", "uploads/cli/red.jpg"]
    assert len(lines) == 5  # header, 3 results, footer
    assert lines[-1].startswith("3 results in ")
    assert lines[-1].endswith(f"({MODEL_ID}, 1024 dimensions)")


def test_search_json_is_the_api_response(cli: Cli, uploaded: dict[str, dict[str, Any]]) -> None:
    payload = cli.json("search", "a green meadow", "--top-k", "10")

    keys = [hit["key"] for hit in payload["results"]]
    assert keys[0] == "uploads/cli/sub/green.jpg"
    assert payload["count"] == len(keys) == 4
    assert "uploads/cli/broken.jpg" not in keys
    scores = [hit["score"] for hit in payload["results"]]
    assert scores == sorted(scores, reverse=True)
    assert payload["model_id"] == MODEL_ID


def test_search_by_image_file(
    cli: Cli, uploaded: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    query = tmp_path / "query.png"
    query.write_bytes(images.png(30, 40, images.RED))

    payload = cli.json("search", "--image", str(query), "--top-k", "2")

    assert payload["results"][0]["key"] == "uploads/cli/red.jpg"


def test_search_by_image_id_finds_the_nearest_other_image(
    cli: Cli, uploaded: dict[str, dict[str, Any]]
) -> None:
    blue_id = image_id_for_key("uploads/cli/blue.png")

    payload = cli.json("search", "--image-id", blue_id)

    assert payload["results"][0]["key"] == "uploads/cli/sub/navy.jpg"
    assert blue_id not in [hit["image_id"] for hit in payload["results"]]


def test_search_filters_by_prefix_and_score(cli: Cli, uploaded: dict[str, dict[str, Any]]) -> None:
    everything = cli.json("search", "green", "--top-k", "10")["results"]
    sub = cli.json("search", "green", "--top-k", "10", "--prefix", "uploads/cli/sub/")
    assert {hit["key"] for hit in sub["results"]} == {
        "uploads/cli/sub/green.jpg",
        "uploads/cli/sub/navy.jpg",
    }
    # a prefix that ends mid-name
    mid = cli.json("search", "green", "--top-k", "10", "--prefix", "uploads/cli/sub/gr")
    assert [hit["key"] for hit in mid["results"]] == ["uploads/cli/sub/green.jpg"]
    cut = (everything[0]["score"] + everything[1]["score"]) / 2
    best = cli.json("search", "green", "--top-k", "10", "--min-score", f"{cut:.6f}")
    assert [hit["key"] for hit in best["results"]] == [everything[0]["key"]]


def test_search_by_an_unknown_image_id_fails_with_the_api_message(cli: Cli) -> None:
    result = cli("search", "--image-id", "f" * 32)

    assert result.returncode == 1
    assert result.stderr.startswith("imagesearch: error: API error 404: ")
    assert result.stderr.count("\n") == 1


# --- get / delete ----------------------------------------------------------------------------


def test_get_shows_the_record(cli: Cli, uploaded: dict[str, dict[str, Any]]) -> None:
    image_id = image_id_for_key("uploads/cli/sub/navy.jpg")

    text = cli.ok("get", image_id)
    record = cli.json("get", image_id)

    assert record["key"] == "uploads/cli/sub/navy.jpg"
    assert record["status"] == "indexed"
    assert record["model_id"] == MODEL_ID
    assert f"image_id       {image_id}" in text
    assert "status         indexed" in text
    assert "key            uploads/cli/sub/navy.jpg" in text


def test_delete_removes_the_image_from_the_index(
    cli: Cli, local_mode: LocalProcess, tmp_path: Path
) -> None:
    # Given an uploaded, indexed image
    path = tmp_path / "delete-me.jpg"
    path.write_bytes(images.jpeg(50, 50, images.YELLOW))
    cli.ok("upload", str(path), "--prefix", f"{PREFIX}/tmp")
    name = f"{PREFIX}/tmp/delete-me.jpg"
    local_mode.wait_indexed(name)

    def found() -> bool:
        results = cli.json("search", "yellow", "--top-k", "10")["results"]
        return f"uploads/{name}" in [hit["key"] for hit in results]

    local_mode.wait_until(found, message="the image to be searchable")

    # When deleting it with the CLI
    output = cli.ok("delete", local_mode.image_id_for(name))

    # Then it is gone as soon as the CLI answers: no record, no search hit (decision 43)
    assert output.startswith(f"deleted uploads/{name} (")
    missing = cli("get", local_mode.image_id_for(name))
    assert missing.returncode == 1
    assert "API error 404" in missing.stderr
    assert not found()
    local_mode.wait_gone(name)  # and the S3 event that follows leaves it deleted


# --- status and backfill ----------------------------------------------------------------------


def test_status_counts_and_rejection_reasons(
    cli: Cli, local_mode: LocalProcess, uploaded: dict[str, dict[str, Any]]
) -> None:
    rejected = local_mode.wait_status(BROKEN, "rejected")
    listed = {
        status: len(
            local_mode.get("/images", params={"status": status, "limit": 100}).json()["items"]
        )
        for status in ("indexed", "rejected", "failed")
    }

    report = cli.json("status")
    text = cli.ok("status")

    assert report["images"] == listed
    assert report["images"]["rejected"] >= 1
    if _store(local_mode) == "s3vectors":  # both counts: the index holds every indexed image
        assert report["vector_index"]["store"] == "s3vectors"
        assert report["vector_index"]["vectors"] == listed["indexed"]
        assert f"vector index {listed['indexed']} vectors" in text
    else:
        assert report["vector_index"] == {"store": "dynamodb"}
    assert (report["model_id"], report["dimension"]) == (MODEL_ID, 1024)
    reasons = {item["key"]: item["reason"] for item in report["latest_rejections"]}
    assert reasons["uploads/cli/broken.jpg"] == rejected["reason"]
    assert report["hints"] == []
    assert f"images       {listed['indexed']} indexed, {listed['rejected']} rejected" in text
    assert "latest rejections:" in text
    assert "uploads/cli/broken.jpg" in text


def test_backfill_keeps_records_and_force_re_embeds_another_models_records(
    cli: Cli, local_mode: LocalProcess, uploaded: dict[str, dict[str, Any]], bedrock: FakeBedrock
) -> None:
    # Given one record that says it was embedded by another model
    dynamodb, info = _moto(local_mode, "dynamodb")
    dynamodb.update_item(
        TableName=info["table"],
        Key={"image_id": {"S": local_mode.image_id_for(GREEN)}},
        UpdateExpression="SET model_id = :m",
        ExpressionAttributeValues={":m": {"S": "some.older-model-v0"}},
    )
    before = local_mode.record(GREEN)
    assert before is not None and before["model_id"] == "some.older-model-v0"
    assert "run `imagesearch backfill --force` to re-embed it" in cli.ok("status")
    s3, _ = _moto(local_mode, "s3")
    objects = len(s3.list_objects_v2(Bucket=info["bucket"], Prefix="uploads/")["Contents"])
    calls = bedrock.calls

    # When backfilling without --force
    output = cli.ok("backfill")

    # Then every object was enqueued, and once ingest is done nothing was re-embedded
    assert output == f"enqueued {objects} objects under s3://{info['bucket']}/uploads/\n"
    local_mode.wait_until(lambda: _ingest_queue_empty(cli), message="the backfill to finish")
    assert bedrock.calls == calls
    assert _without_urls(local_mode.record(GREEN)) == _without_urls(before)

    # When backfilling with --force
    output = cli.ok("backfill", "--force")

    # Then only the record of the other model is re-embedded, with the current model
    assert output.startswith(f"enqueued {objects} objects under ")

    def re_embedded() -> dict[str, Any] | None:
        record = local_mode.record(GREEN)
        return record if record and record["model_id"] == MODEL_ID else None

    after = local_mode.wait_until(re_embedded, message="the forced backfill to re-embed green")
    local_mode.wait_until(lambda: _ingest_queue_empty(cli), message="the backfill to finish")
    assert after["indexed_at"] > before["indexed_at"]
    # (local mode's embedding cache holds green's bytes for the current model already)
    assert bedrock.calls == calls
    assert cli.json("status")["hints"] == []


# --- errors ------------------------------------------------------------------------------------


def test_a_local_url_with_nothing_listening_is_one_line(cli: Cli) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # (the port is free again once the probe is closed)

    result = cli("status", url=f"http://127.0.0.1:{port}")

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"imagesearch: error: cannot connect to http://127.0.0.1:{port}: connection refused"
        " (is `imagesearch local` running? start it with `make local`)\n"
    )
