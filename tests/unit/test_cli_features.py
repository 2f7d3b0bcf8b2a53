"""CLI features of issue 11.4: --version, --output on every command, weighted and negative
search terms, query image shrinking, upload sync (parallel, unchanged skipped, --dryrun),
dead letters in status, redrive, shell completion."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from PIL import Image

from imagesearch import __version__
from imagesearch.cli import commands
from imagesearch.cli.main import build_parser, run
from imagesearch.records import image_id_for_key
from tests.unit.test_cli_commands import (
    HEALTH,
    ID,
    LOCAL,
    RESOURCES,
    SEARCH_RESPONSE,
    local_api,
    moto_clients,
    stub_status,
    write,
)
from tests.unit.test_cli_http import Sent, fake_http


def run_cli(argv: list[str], **kwargs: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(argv, stdout=out, stderr=err, **kwargs)
    return code, out.getvalue(), err.getvalue()


# --- --version, --output ----------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--version"]) == 0
    assert capsys.readouterr().out == f"imagesearch {__version__}\n"


@pytest.mark.parametrize(
    "flags",
    [["--output", "json"], ["-o", "json"], ["--json"], ["--json", "--output", "json"]],
)
def test_search_json_with_either_spelling_before_or_after_the_command(flags: list[str]) -> None:
    session, _ = fake_http(lambda sent: (200, SEARCH_RESPONSE))

    after = run_cli(["--url", LOCAL, "search", "red", *flags], http=session)
    before = run_cli(["--url", LOCAL, *flags, "search", "red"], http=session)

    assert after[0] == before[0] == 0
    assert json.loads(after[1]) == json.loads(before[1]) == SEARCH_RESPONSE


def test_search_text_output_is_one_tab_separated_line_per_result() -> None:
    session, _ = fake_http(lambda sent: (200, SEARCH_RESPONSE))

    code, out, _ = run_cli(["--url", LOCAL, "search", "red", "-o", "text"], http=session)

    assert code == 0
    assert out == f"0.4123\t{ID}\tuploads/red.jpg\n"


def test_get_and_delete_answer_in_json_on_request() -> None:
    record = {"image_id": ID, "key": "uploads/red.jpg", "status": "indexed"}
    accepted = {"image_id": ID, "key": "uploads/red.jpg", "status": "deleting"}
    session, _ = fake_http(lambda sent: (200, record if sent.method == "GET" else accepted))

    got = run_cli(["--url", LOCAL, "get", ID, "--output", "json"], http=session)
    deleted = run_cli(["--url", LOCAL, "delete", ID, "--json"], http=session)
    text = run_cli(["--url", LOCAL, "delete", ID], http=session)

    assert json.loads(got[1]) == record
    assert json.loads(deleted[1]) == accepted
    assert text[1] == f"deleted uploads/red.jpg ({ID}): no longer searchable\n"


def test_status_table_and_json() -> None:
    session, _ = local_api()
    outputs = {}
    for fmt in ("table", "json"):
        clients = moto_clients()
        with Stubber(clients["dynamodb"]) as db, Stubber(clients["sqs"]) as sqs:
            stub_status(db, sqs, other_model=0)
            code, outputs[fmt], _ = run_cli(
                ["--url", LOCAL, "status", "-o", fmt], http=session, clients=clients
            )
        assert code == 0

    assert "images       7 indexed, 2 rejected" in outputs["table"]
    assert json.loads(outputs["json"])["images"]["indexed"] == 7


def test_every_command_accepts_output() -> None:
    parser = build_parser({})
    needs = {"get": ["x"], "delete": ["x"], "upload": ["p"], "search": ["t"]}
    for name in ("search", "upload", "backfill", "status", "redrive", "get", "delete"):
        argv = [name, "--output", "json", *needs.get(name, [])]
        assert parser.parse_args(argv).output == "json"


# --- weighted and negative terms -----------------------------------------------------------


def test_not_and_also_become_weighted_query_parts() -> None:
    session, transport = fake_http(lambda sent: (200, SEARCH_RESPONSE))

    code, _, _ = run_cli(
        [
            "--url",
            LOCAL,
            "search",
            "beach",
            "--not",
            "people",
            "--not",
            "cars:0.9",  # --not takes the weight's size: always steers away
            "--also",
            "sunset:0.5",
            "--also",
            "label: red",  # a colon not followed by a number belongs to the text
        ],
        http=session,
    )

    assert code == 0
    assert transport.sent[0].json() == {
        "top_k": 10,
        "queries": [
            {"text": "beach", "weight": 1.0},
            {"text": "sunset", "weight": 0.5},
            {"text": "label: red", "weight": 1.0},
            {"text": "people", "weight": -0.5},
            {"text": "cars", "weight": -0.9},
        ],
    }


def test_negative_weights_with_also_and_an_image_id() -> None:
    session, transport = fake_http(lambda sent: (200, SEARCH_RESPONSE))

    run_cli(["--url", LOCAL, "search", "--image-id", ID, "--also", "night:-0.3"], http=session)

    assert transport.sent[0].json()["queries"] == [
        {"image_id": ID, "weight": 1.0},
        {"text": "night", "weight": -0.3},
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["search", "--not", "people"], "search needs TEXT, --image PATH or --image-id ID"),
        (["search", "x", "--also", "y:0"], "the weight must be a non-zero number: 'y:0'"),
        (["search", "x", "--not", ":0.5"], "no text in ':0.5'"),
        (["search", "x", *["--also", "y"] * 10], "a search takes at most 10 parts, not 11"),
    ],
)
def test_weighted_term_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(["--url", LOCAL, *argv], environ={})

    # (argparse's own errors go to sys.stderr, the commands' to the given stream)
    assert code == 2
    assert out == ""
    assert message in err + capsys.readouterr().err


# --- query image shrinking -------------------------------------------------------------------


def noisy_photo(path: Path, width: int, height: int) -> Path:
    rng = random.Random(7)
    Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3)).save(path)
    return path


def test_a_big_query_image_is_shrunk_below_the_body_limit(tmp_path: Path) -> None:
    # Given a 2400x1600 photo of noise, a PNG of ~11 MB (over the API's 5 MB body)
    photo = noisy_photo(tmp_path / "big.png", 2400, 1600)
    assert photo.stat().st_size > 2 * commands.MAX_RAW_IMAGE_BYTES
    session, transport = fake_http(lambda sent: (200, SEARCH_RESPONSE))

    code, _, err = run_cli(["--url", LOCAL, "search", "--image", str(photo)], http=session)

    # Then the query carries a 1024-px JPEG that fits the body limit, and stderr says so
    assert code == 0
    sent = transport.sent[0]
    assert len(sent.body) < 5 * 1024 * 1024
    with Image.open(io.BytesIO(base64.b64decode(sent.json()["image"]))) as query:
        assert (query.format, query.size) == ("JPEG", (1024, 683))
    assert err.startswith("shrank big.png (")


def test_a_small_query_image_is_sent_as_it_is(tmp_path: Path) -> None:
    photo = noisy_photo(tmp_path / "small.png", 200, 100)
    session, transport = fake_http(lambda sent: (200, SEARCH_RESPONSE))

    run_cli(["--url", LOCAL, "search", "--image", str(photo)], http=session)

    assert base64.b64decode(transport.sent[0].json()["image"]) == photo.read_bytes()


def test_a_big_file_that_is_no_image_is_one_line(tmp_path: Path) -> None:
    blob = write(tmp_path / "big.jpg", b"\0" * (commands.MAX_RAW_IMAGE_BYTES + 1))
    session, transport = fake_http(lambda sent: (200, SEARCH_RESPONSE))

    code, _, err = run_cli(["--url", LOCAL, "search", "--image", str(blob)], http=session)

    assert code == 1
    assert err.startswith(f"imagesearch: error: cannot read {blob} as an image to shrink it")
    assert transport.sent == []


# --- upload: sync, parallel, dryrun ---------------------------------------------------------


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def sync_server(remote: dict[str, bytes]) -> tuple[Any, Any]:
    """Local mode with ``remote`` (key -> bytes) in the catalog, handing out PUT grants."""

    def handler(sent: Sent) -> Any:
        if sent.path == "/images":
            items = [
                {"image_id": image_id_for_key(k), "key": k, "size": len(v), "etag": f'"{md5(v)}"'}
                for k, v in sorted(remote.items())
            ]
            # Two pages: the listing follows the cursor.
            if "cursor=next" in sent.query:
                return 200, {"items": items[1:], "cursor": None}
            return 200, {"items": items[:1], "cursor": "next"}
        if sent.path == "/local/resources":
            return 200, RESOURCES
        if sent.path == "/health":
            return 200, HEALTH
        if sent.path == "/uploads":
            key = "uploads/" + sent.json()["filename"]
            return 200, {"key": key, "url": f"http://127.0.0.1:45678/b/{key}", "headers": {}}
        return 200, b""

    return fake_http(handler)


def test_upload_skips_unchanged_files_like_s3_sync(tmp_path: Path) -> None:
    # Given three files: one the bucket holds as is, one changed, one new
    write(tmp_path / "same.jpg", b"SAME")
    write(tmp_path / "changed.jpg", b"NEW BYTES")
    write(tmp_path / "new.png", b"PNG")
    session, transport = sync_server(
        {"uploads/same.jpg": b"SAME", "uploads/changed.jpg": b"OLD BYTES"}
    )

    code, out, _ = run_cli(["--url", LOCAL, "upload", str(tmp_path)], http=session)

    assert code == 0
    puts = sorted(s.path for s in transport.sent if s.method == "PUT")
    assert puts == ["/b/uploads/changed.jpg", "/b/uploads/new.png"]
    assert out == "uploaded 2 files (12 B) to uploads/; 1 unchanged\n"


def test_upload_dryrun_lists_and_uploads_nothing(tmp_path: Path) -> None:
    write(tmp_path / "same.jpg", b"SAME")
    write(tmp_path / "new.png", b"PNG")
    write(tmp_path / "notes.txt", b"x")
    session, transport = sync_server({"uploads/trip/same.jpg": b"SAME"})

    code, out, _ = run_cli(
        ["--url", LOCAL, "upload", str(tmp_path), "--prefix", "trip", "--dryrun"], http=session
    )

    assert code == 0
    assert not [s for s in transport.sent if s.method == "PUT" or s.path == "/uploads"]
    assert out.splitlines() == [
        f"(dryrun) upload: {tmp_path / 'new.png'} to uploads/trip/new.png",
        "(dryrun) would upload 1 file (3 B) to uploads/trip/; 1 unchanged;"
        " skipped 1 (not an image)",
    ]


def test_upload_json_reports_every_file(tmp_path: Path) -> None:
    write(tmp_path / "same.jpg", b"SAME")
    write(tmp_path / "new.png", b"PNG")
    session, _ = sync_server({"uploads/same.jpg": b"SAME"})

    code, out, _ = run_cli(
        ["--url", LOCAL, "upload", str(tmp_path), "--output", "json"], http=session
    )

    assert code == 0
    assert json.loads(out) == {
        "dryrun": False,
        "uploaded": [{"path": str(tmp_path / "new.png"), "key": "uploads/new.png", "size": 3}],
        "unchanged": [{"path": str(tmp_path / "same.jpg"), "key": "uploads/same.jpg"}],
        "skipped": [],
        "failed": [],
    }


def test_upload_runs_files_in_parallel(tmp_path: Path) -> None:
    import threading

    # Given a storage that answers a PUT only once four PUTs are in flight together
    for number in range(4):
        write(tmp_path / f"{number}.jpg", f"IMG{number}".encode())
    together = threading.Barrier(4, timeout=10)

    def handler(sent: Sent) -> Any:
        if sent.path == "/uploads":
            key = "uploads/" + sent.json()["filename"]
            return 200, {"key": key, "url": f"http://127.0.0.1:45678/b/{key}", "headers": {}}
        if sent.method == "PUT":
            together.wait()  # raises BrokenBarrierError if uploads ran one by one
        return 200, b""

    session, _ = fake_http(handler)

    code, out, _ = run_cli(["--url", LOCAL, "upload", str(tmp_path), "--jobs", "4"], http=session)

    assert code == 0
    assert out.startswith("uploaded 4 files")


# --- dead letters: status and redrive ---------------------------------------------------------

DEAD_KEY = "uploads/stuck.jpg"


def s3_event_body(key: str) -> str:
    return json.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "eventTime": "2026-01-01T00:00:00.000Z",
                    "s3": {
                        "bucket": {"name": "local-images"},
                        "object": {"key": key, "size": 4, "sequencer": "0A"},
                    },
                }
            ]
        }
    )


def dead_message(number: int, key: str = DEAD_KEY) -> dict[str, Any]:
    return {
        "MessageId": f"dead-{number}",
        "ReceiptHandle": f"handle-{number}",
        "MD5OfBody": "x",
        "Body": s3_event_body(key),
        "Attributes": {"SentTimestamp": "1767225600000"},
    }


def failed_record_api() -> tuple[Any, Any]:
    failed = {
        "image_id": image_id_for_key(DEAD_KEY),
        "key": DEAD_KEY,
        "status": "failed",
        "reason": "AccessDeniedException: no access to model amazon.titan-embed-image-v1",
        "url": "http://x",
    }
    return local_api(extra={("GET", f"/images/{image_id_for_key(DEAD_KEY)}"): (200, failed)})


def test_status_lists_dead_letters_with_their_recorded_cause() -> None:
    clients = moto_clients()
    session, _ = failed_record_api()
    with Stubber(clients["dynamodb"]) as db, Stubber(clients["sqs"]) as sqs:
        # Given one message in the dead-letter queue
        stub_status(db, sqs, other_model=0, dead_letters=1)
        sqs.add_response(
            "receive_message",
            {"Messages": [dead_message(1)]},
            {
                "QueueUrl": RESOURCES["dlq_url"],
                "MaxNumberOfMessages": 10,
                "VisibilityTimeout": 0,
                "WaitTimeSeconds": 0,
                "AttributeNames": ["All"],
            },
        )
        sqs.add_response("receive_message", {"Messages": [dead_message(1)]})
        code, out, _ = run_cli(["--url", LOCAL, "status"], http=session, clients=clients)

    assert code == 0
    assert "dead letters 1" in out
    assert (
        f"  2026-01-01T00:00:00Z  {DEAD_KEY}  failed: AccessDeniedException: no access to model"
        " amazon.titan-embed-image-v1"
    ) in out
    assert "run `imagesearch redrive`" in out


def test_redrive_sends_dead_letters_back_and_deletes_them() -> None:
    clients = moto_clients()
    session, _ = local_api()
    with Stubber(clients["sqs"]) as sqs:
        sqs.add_response(
            "receive_message",
            {"Messages": [dead_message(1), dead_message(2, "uploads/other.png")]},
            {
                "QueueUrl": RESOURCES["dlq_url"],
                "MaxNumberOfMessages": 10,
                "VisibilityTimeout": 60,
                "WaitTimeSeconds": 0,
                "MessageAttributeNames": ["All"],
            },
        )
        sqs.add_response(
            "send_message_batch",
            {
                "Successful": [
                    {"Id": "0", "MessageId": "n0", "MD5OfMessageBody": "x"},
                    {"Id": "1", "MessageId": "n1", "MD5OfMessageBody": "x"},
                ],
                "Failed": [],
            },
            {
                "QueueUrl": RESOURCES["queue_url"],
                "Entries": [
                    {"Id": "0", "MessageBody": s3_event_body(DEAD_KEY)},
                    {"Id": "1", "MessageBody": s3_event_body("uploads/other.png")},
                ],
            },
        )
        sqs.add_response(
            "delete_message_batch",
            {"Successful": [{"Id": "0"}, {"Id": "1"}], "Failed": []},
            {
                "QueueUrl": RESOURCES["dlq_url"],
                "Entries": [
                    {"Id": "0", "ReceiptHandle": "handle-1"},
                    {"Id": "1", "ReceiptHandle": "handle-2"},
                ],
            },
        )
        sqs.add_response(
            "receive_message",
            {},
            {
                "QueueUrl": ANY,
                "MaxNumberOfMessages": 10,
                "VisibilityTimeout": 60,
                "WaitTimeSeconds": 0,
                "MessageAttributeNames": ["All"],
            },
        )
        code, out, _ = run_cli(["--url", LOCAL, "redrive"], http=session, clients=clients)

    assert code == 0
    assert out == (
        "sent 2 messages back to the ingest queue (uploads/stuck.jpg, uploads/other.png)\n"
    )


def test_redrive_of_an_empty_dead_letter_queue_says_so() -> None:
    clients = moto_clients()
    session, _ = local_api()
    with Stubber(clients["sqs"]) as sqs:
        sqs.add_response("receive_message", {})
        code, out, _ = run_cli(["--url", LOCAL, "redrive"], http=session, clients=clients)

    assert code == 0
    assert out == "the dead-letter queue is empty: nothing to redrive\n"


# --- completion -------------------------------------------------------------------------------


def complete(script: str, words: list[str]) -> list[str]:
    """What bash completes for ``words`` (the last one being typed)."""
    program = (
        f"{script}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        "_imagesearch_complete\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "-c", program], capture_output=True, text=True, check=True, timeout=30
    )
    return result.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_completes_commands_options_and_choices() -> None:
    code, script, _ = run_cli(["completion", "bash"])

    assert code == 0
    assert complete(script, ["imagesearch", "re"]) == ["redrive", "reindex"]
    assert complete(script, ["imagesearch", "search", "--no"]) == ["--not"]
    assert complete(script, ["imagesearch", "search", "--output", "t"]) == ["text", "table"]
    assert complete(script, ["imagesearch", "local", "--embedder", ""]) == ["bedrock", "clip"]
    assert "--dryrun" in complete(script, ["imagesearch", "upload", "--d"])


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completion_script_parses() -> None:
    _, script, _ = run_cli(["completion", "zsh"])

    subprocess.run(["zsh", "-n", "-c", script], check=True, timeout=30)


def test_status_counts_failed_images_and_shows_their_cause() -> None:
    clients = moto_clients()
    session, _ = local_api()
    with Stubber(clients["dynamodb"]) as db, Stubber(clients["sqs"]) as sqs:
        stub_status(db, sqs, other_model=0, failed=1)
        code, out, _ = run_cli(["--url", LOCAL, "status"], http=session, clients=clients)

    assert code == 0
    assert "images       7 indexed, 2 rejected, 1 failed" in out
    failures = out.split("latest failures (the model could not embed them; retried):\n")[1]
    assert failures.splitlines()[0] == (
        "  2026-03-01T00:00:00.000Z  uploads/denied.jpg"
        "  Bedrock denied access to amazon.titan-embed-image-v1"
    )
