"""CLI commands end to end in process: fake HTTP transport, Stubber-backed AWS clients."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from imagesearch import resources as r
from imagesearch.cli.commands import build_search_body, normalise_prefix, plan_upload
from imagesearch.cli.errors import CliError, UsageError
from imagesearch.cli.main import run
from imagesearch.events import parse_message_body
from tests.unit.test_cli_http import Sent, fake_http

LOCAL = "http://127.0.0.1:8000"
ID = "0123456789abcdef0123456789abcdef"
MOTO = "http://127.0.0.1:45678"
RESOURCES = {
    "endpoint_url": MOTO,
    "region": "us-east-1",
    "bucket": "local-images",
    "table": "local-table",
    "queue_url": f"{MOTO}/123456789012/ingest",
    "dlq_url": f"{MOTO}/123456789012/ingest-dlq",
    "upload_prefix": "uploads/",
}
HEALTH = {"status": "ok", "images": 2, "model_id": "amazon.titan-embed-image-v1", "dimension": 1024}
SEARCH_RESPONSE = {
    "results": [
        {
            "image_id": ID,
            "key": "uploads/red.jpg",
            "score": 0.41234,
            "url": "http://x/red",
            "thumbnail_url": "http://x/t",
            "content_type": "image/jpeg",
            "width": 64,
            "height": 48,
        }
    ],
    "count": 1,
    "model_id": "amazon.titan-embed-image-v1",
    "dimension": 1024,
    "took_ms": 12.3,
}


def write(path: Path, data: bytes = b"\xff\xd8fake-jpeg") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def local_api(*, extra: dict[tuple[str, str], Any] | None = None):
    """Fake local-mode server: /local/resources, /health, plus ``extra`` routes."""
    routes = {("GET", "/local/resources"): (200, RESOURCES), ("GET", "/health"): (200, HEALTH)}
    routes.update(extra or {})

    def handler(sent: Sent) -> Any:
        reply = routes.get((sent.method, sent.path))
        if callable(reply):
            return reply(sent)
        return reply or (404, {"message": f"no route for {sent.method} {sent.path}"})

    return fake_http(handler)


# --- search / get / delete -----------------------------------------------------------------


def test_search_body_for_each_kind_of_query(tmp_path: Path) -> None:
    image = write(tmp_path / "q.png", b"PNGDATA")
    encoded = base64.b64encode(b"PNGDATA").decode()

    assert build_search_body("red", top_k=3) == {"top_k": 3, "text": "red"}
    assert build_search_body("red", image=image) == {"top_k": 10, "text": "red", "image": encoded}
    assert build_search_body(None, image_id=ID, min_score=0.2, prefix="uploads/shoes/") == {
        "top_k": 10,
        "image_id": ID,
        "min_score": 0.2,
        "prefix": "uploads/shoes/",
    }
    # The API does not mix image_id with direct inputs: it becomes a weighted query.
    assert build_search_body("red", image_id=ID) == {
        "top_k": 10,
        "queries": [{"text": "red", "weight": 1.0}, {"image_id": ID, "weight": 1.0}],
    }


def test_search_needs_an_input_and_an_existing_image(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="search needs TEXT, --image PATH or --image-id ID"):
        build_search_body(None)
    with pytest.raises(UsageError, match="blank"):
        build_search_body("   ")
    with pytest.raises(CliError, match=r"no such file: .*missing\.jpg"):
        build_search_body(None, image=tmp_path / "missing.jpg")


def test_search_prints_a_table_by_default_and_json_on_request() -> None:
    session, transport = local_api(extra={("POST", "/search"): (200, SEARCH_RESPONSE)})
    table, as_json = io.StringIO(), io.StringIO()

    assert run(["--url", LOCAL, "search", "red", "--top-k", "5"], http=session, stdout=table) == 0
    assert run(["--url", LOCAL, "search", "red", "--json"], http=session, stdout=as_json) == 0

    assert transport.sent[0].json() == {"top_k": 5, "text": "red"}
    lines = table.getvalue().splitlines()
    assert lines[0].split() == ["#", "SCORE", "IMAGE", "ID", "SIZE", "TYPE", "KEY"]
    assert lines[1].split() == ["1", "0.4123", ID, "64x48", "image/jpeg", "uploads/red.jpg"]
    assert lines[2] == "1 result in 12 ms (amazon.titan-embed-image-v1, 1024 dimensions)"
    assert json.loads(as_json.getvalue()) == SEARCH_RESPONSE


def test_search_by_image_file_sends_base64(tmp_path: Path) -> None:
    image = write(tmp_path / "query.jpg", b"\xff\xd8\xff query bytes")
    session, transport = local_api(extra={("POST", "/search"): (200, SEARCH_RESPONSE)})

    code = run(
        ["--url", LOCAL, "search", "--image", str(image)], http=session, stdout=io.StringIO()
    )

    assert code == 0
    body = transport.sent[0].json()
    assert base64.b64decode(body["image"]) == b"\xff\xd8\xff query bytes"
    assert "text" not in body


def test_search_with_a_missing_image_file_fails_before_any_request(tmp_path: Path) -> None:
    session, transport = local_api()
    err = io.StringIO()

    code = run(
        ["--url", LOCAL, "search", "--image", str(tmp_path / "nope.png")], http=session, stderr=err
    )

    assert code == 1
    assert err.getvalue() == f"imagesearch: error: no such file: {tmp_path / 'nope.png'}\n"
    assert transport.sent == []


def test_get_prints_the_record_and_delete_reports_the_key() -> None:
    record = {
        "image_id": ID,
        "key": "uploads/bad.jpg",
        "status": "rejected",
        "reason": "not an image",
        "size": 2048,
        "caption": None,
        "url": "http://x/bad",
    }
    session, transport = local_api(
        extra={
            ("GET", f"/images/{ID}"): (200, record),
            ("DELETE", f"/images/{ID}"): (
                202,
                {"image_id": ID, "key": "uploads/bad.jpg", "status": "deleting"},
            ),
        }
    )
    shown, as_json, deleted = io.StringIO(), io.StringIO(), io.StringIO()

    assert run(["--url", LOCAL, "get", ID], http=session, stdout=shown) == 0
    assert run(["--url", LOCAL, "get", ID, "--json"], http=session, stdout=as_json) == 0
    assert run(["--url", LOCAL, "delete", ID], http=session, stdout=deleted) == 0

    text = shown.getvalue()
    assert "reason    not an image" in text
    assert "size      2048 bytes (2.0 KB)" in text
    assert "caption" not in text
    assert json.loads(as_json.getvalue()) == record
    assert deleted.getvalue() == (f"deleted uploads/bad.jpg ({ID}): no longer searchable\n")
    assert [s.method for s in transport.sent] == ["GET", "GET", "DELETE"]


def test_ids_are_quoted_into_the_path() -> None:
    session, transport = local_api()

    code = run(["--url", LOCAL, "get", "../x y"], http=session, stderr=io.StringIO())

    assert code == 1
    assert transport.sent[0].path == "/images/..%2Fx%20y"


# --- upload -----------------------------------------------------------------------------


def test_upload_plan_recurses_keeps_relative_names_and_skips_non_images(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    write(root / "a.JPG")
    write(root / "trip" / "b.png")
    write(root / "trip" / "notes.txt")
    write(root / ".cache" / "c.jpg")
    single = write(tmp_path / "single.webp")

    plan = plan_upload([str(root), str(single)], prefix=normalise_prefix("/holidays/2026/"))

    assert [name for _, name in plan.files] == [
        "holidays/2026/a.JPG",
        "holidays/2026/trip/b.png",
        "holidays/2026/single.webp",
    ]
    assert plan.skipped == [root / "trip" / "notes.txt"]


def test_upload_of_a_missing_path_fails_before_uploading(tmp_path: Path) -> None:
    write(tmp_path / "ok.jpg")
    session, transport = local_api()
    err = io.StringIO()

    code = run(
        ["--url", LOCAL, "upload", str(tmp_path / "ok.jpg"), str(tmp_path / "gone")],
        http=session,
        stderr=err,
    )

    assert code == 1
    assert err.getvalue() == f"imagesearch: error: no such file or directory: {tmp_path / 'gone'}\n"
    assert transport.sent == []


def test_upload_gets_a_presigned_put_and_sends_the_bytes_with_its_headers(tmp_path: Path) -> None:
    # Given two images in a directory and a server handing out presigned PUTs
    write(tmp_path / "shoes" / "red.jpg", b"RED-JPEG")
    write(tmp_path / "shoes" / "deep" / "blue.png", b"BLUE-PNG")

    def grant(sent: Sent) -> Any:
        body = sent.json()
        key = "uploads/" + body["filename"]
        return 200, {
            "key": key,
            "url": f"{MOTO}/local-images/{key}?X-Amz-Signature=abc",
            "headers": {"Content-Type": body["content_type"], "Content-Length": str(body["size"])},
        }

    session, transport = fake_http(
        lambda sent: grant(sent) if sent.path == "/uploads" else (200, b"")
    )
    out = io.StringIO()

    # When uploading the directory below a prefix
    code = run(
        ["--url", LOCAL, "upload", str(tmp_path / "shoes"), "--prefix", "cat"],
        http=session,
        stdout=out,
        stderr=io.StringIO(),
    )

    # Then each file got a grant for prefix + relative name, then one PUT of its bytes
    assert code == 0
    # (uploads run in parallel: compared in name order)
    grants = sorted(
        (s for s in transport.sent if s.path == "/uploads"), key=lambda s: s.json()["filename"]
    )
    puts = sorted((s for s in transport.sent if s.method == "PUT"), key=lambda s: s.url)
    assert [g.json() for g in grants] == [
        {
            "filename": "cat/deep/blue.png",
            "content_type": "image/png",
            "size": 8,
            "overwrite": True,
        },
        {"filename": "cat/red.jpg", "content_type": "image/jpeg", "size": 8, "overwrite": True},
    ]
    assert [p.url for p in puts] == [
        f"{MOTO}/local-images/uploads/cat/deep/blue.png?X-Amz-Signature=abc",
        f"{MOTO}/local-images/uploads/cat/red.jpg?X-Amz-Signature=abc",
    ]
    assert [p.body for p in puts] == [b"BLUE-PNG", b"RED-JPEG"]
    assert puts[0].headers["Content-Type"] == "image/png"
    assert puts[0].headers["Content-Length"] == "8"
    assert all("Authorization" not in p.headers for p in puts)
    assert out.getvalue() == "uploaded 2 files (16 B) to uploads/cat/\n"


def test_upload_goes_on_after_one_file_fails_and_exits_1(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        write(tmp_path / name, name.encode())
    write(tmp_path / "readme.md")

    def handler(sent: Sent) -> Any:
        if sent.path == "/uploads":
            name = sent.json()["filename"]
            if name == "c.jpg":
                return 413, {"message": "size is 5 bytes; uploads are limited to 4 bytes"}
            return 200, {"key": f"uploads/{name}", "url": f"{MOTO}/b/{name}", "headers": {}}
        if sent.path == "/b/a.jpg":
            return 403, "<Error><Code>SignatureDoesNotMatch</Code></Error>"
        return 200, b""

    session, _ = fake_http(handler)
    out, err = io.StringIO(), io.StringIO()

    code = run(["--url", LOCAL, "upload", str(tmp_path)], http=session, stdout=out, stderr=err)

    assert code == 1
    assert out.getvalue() == (
        "uploaded 1 file (5 B) to uploads/; skipped 1 (not an image); 2 failed\n"
    )
    assert err.getvalue().splitlines() == [
        f"failed: {tmp_path / 'a.jpg'}: PUT to storage failed (403):"
        " <Error><Code>SignatureDoesNotMatch</Code></Error>",
        f"failed: {tmp_path / 'c.jpg'}: API error 413: size is 5 bytes; uploads are limited"
        " to 4 bytes",
    ]


def test_upload_stops_at_once_when_access_is_denied(tmp_path: Path) -> None:
    write(tmp_path / "a.jpg")
    write(tmp_path / "b.jpg")
    session, transport = fake_http(lambda sent: (403, {"message": "Forbidden"}))
    err = io.StringIO()

    code = run(
        ["--url", "https://x.execute-api.us-east-1.amazonaws.com/prod", "upload", str(tmp_path)],
        http=session,
        stderr=err,
    )

    assert code == 1
    assert len(transport.sent) == 1
    assert err.getvalue().startswith("imagesearch: error: access denied by https://x.execute-api")


def test_upload_with_no_images_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "notes.txt")
    err = io.StringIO()

    assert run(["--url", LOCAL, "upload", str(tmp_path)], stderr=err) == 1
    assert "no image files to upload" in err.getvalue()


# --- backfill ---------------------------------------------------------------------------


def moto_clients() -> dict[str, Any]:
    kwargs = {"region_name": "us-east-1", "endpoint_url": MOTO}
    return {name: boto3.client(name, **kwargs) for name in ("s3", "sqs", "dynamodb")}


def capture_batches(sqs: Any) -> list[list[dict[str, str]]]:
    """Entries of every send_message_batch call, as botocore validated them."""
    batches: list[list[dict[str, str]]] = []

    def record(params: dict[str, Any], **kwargs: Any) -> None:
        batches.append(list(params["Entries"]))

    sqs.meta.events.register("provide-client-params.sqs.SendMessageBatch", record)
    return batches


def listing(keys: list[str], token: str | None = None) -> dict[str, Any]:
    page: dict[str, Any] = {
        "Contents": [{"Key": k, "Size": 10, "ETag": '"e"'} for k in keys],
        "IsTruncated": token is not None,
    }
    if token:
        page["NextContinuationToken"] = token
    return page


def successful(count: int) -> dict[str, Any]:
    return {
        "Successful": [
            {"Id": str(i), "MessageId": f"m{i}", "MD5OfMessageBody": "x"} for i in range(count)
        ],
        "Failed": [],
    }


def test_backfill_enqueues_every_object_in_batches_of_ten() -> None:
    # Given 23 objects over two listing pages, plus a folder placeholder
    keys = [f"uploads/img {i:02d}+x.jpg" for i in range(23)]
    clients = moto_clients()
    batches = capture_batches(clients["sqs"])
    session, _ = local_api()
    out = io.StringIO()
    with Stubber(clients["s3"]) as s3, Stubber(clients["sqs"]) as sqs:
        s3.add_response(
            "list_objects_v2",
            listing(["uploads/", *keys[:15]], token="t1"),
            {"Bucket": "local-images", "Prefix": "uploads/"},
        )
        s3.add_response(
            "list_objects_v2",
            listing(keys[15:]),
            {"Bucket": "local-images", "Prefix": "uploads/", "ContinuationToken": "t1"},
        )
        for size in (10, 10, 3):
            sqs.add_response("send_message_batch", successful(size))

        # When backfilling with --force
        code = run(
            ["--url", LOCAL, "backfill", "--force"],
            http=session,
            clients=clients,
            stdout=out,
            stderr=io.StringIO(),
        )
        sqs.assert_no_pending_responses()

    # Then 3 batches (10, 10, 3) carry one backfill notification per key, forced
    assert code == 0
    assert [len(batch) for batch in batches] == [10, 10, 3]
    events = [
        event
        for batch in batches
        for entry in batch
        for event in parse_message_body(entry["MessageBody"])
    ]
    assert [e.key for e in events] == keys
    assert {(e.bucket, e.kind, e.backfill, e.force) for e in events} == {
        ("local-images", "created", True, True)
    }
    assert out.getvalue() == (
        "enqueued 23 objects under s3://local-images/uploads/"
        " (--force: records of another model or dimension are re-embedded, and images the"
        " model refused are asked again)\n"
    )


def test_backfill_retries_entries_sqs_failed_and_reports_sender_faults() -> None:
    clients = moto_clients()
    batches = capture_batches(clients["sqs"])
    session, _ = local_api()
    err = io.StringIO()
    with Stubber(clients["s3"]) as s3, Stubber(clients["sqs"]) as sqs:
        s3.add_response("list_objects_v2", listing(["uploads/a.jpg", "uploads/b.jpg"]))
        sqs.add_response(
            "send_message_batch",
            {
                "Successful": [],
                "Failed": [
                    {"Id": "0", "SenderFault": False, "Code": "InternalError", "Message": "busy"},
                    {"Id": "1", "SenderFault": True, "Code": "InvalidMessage", "Message": "bad"},
                ],
            },
        )
        sqs.add_response("send_message_batch", successful(1))

        code = run(
            ["--url", LOCAL, "backfill"],
            http=session,
            clients=clients,
            stderr=err,
            stdout=io.StringIO(),
        )

    assert code == 1
    # Only the entry that failed on SQS's side was sent again.
    assert [[e["Id"] for e in batch] for batch in batches] == [["0", "1"], ["0"]]
    assert not parse_message_body(batches[0][0]["MessageBody"])[0].force
    assert "failed: uploads/b.jpg: InvalidMessage: bad" in err.getvalue()
    assert err.getvalue().endswith("imagesearch: error: 1 object(s) could not be enqueued\n")


def test_backfill_of_an_empty_prefix_says_so() -> None:
    clients = moto_clients()
    session, _ = local_api()
    out = io.StringIO()
    with Stubber(clients["s3"]) as s3:
        s3.add_response("list_objects_v2", {"IsTruncated": False, "KeyCount": 0})
        code = run(["--url", LOCAL, "backfill"], http=session, clients=clients, stdout=out)

    assert code == 0
    assert out.getvalue() == "no objects under s3://local-images/uploads/: nothing to backfill\n"


# --- status -----------------------------------------------------------------------------


def count_params(status: str, **extra: Any) -> dict[str, Any]:
    names = {"#s": r.ATTR_STATUS, **extra.pop("names", {})}
    values = {":s": {"S": status}, **extra.pop("values", {})}
    return {
        "TableName": "local-table",
        "IndexName": r.INDEX_BY_STATUS,
        "KeyConditionExpression": "#s = :s",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
        "Select": "COUNT",
        **extra,
    }


def stub_status(
    db: Stubber,
    sqs: Stubber,
    *,
    other_model: int,
    dead_letters: int = 0,
    failed: int = 0,
    state: dict[str, Any] | None = None,
    covered: int = 0,
) -> None:
    db.add_response("query", {"Count": 7, "ScannedCount": 7}, count_params("indexed"))
    db.add_response("query", {"Count": 2, "ScannedCount": 2}, count_params("rejected"))
    db.add_response("query", {"Count": failed, "ScannedCount": failed}, count_params("failed"))
    for waiting, in_flight in ((4, 1), (dead_letters, 0)):
        sqs.add_response(
            "get_queue_attributes",
            {
                "Attributes": {
                    "ApproximateNumberOfMessages": str(waiting),
                    "ApproximateNumberOfMessagesNotVisible": str(in_flight),
                }
            },
        )
    db.add_response(
        "query",
        {
            "Items": [
                {
                    "image_id": {"S": "1" * 32},
                    "status": {"S": "rejected"},
                    "key": {"S": "uploads/old.txt"},
                    "reason": {"S": "not an image"},
                    "indexed_at": {"S": "2026-01-01T00:00:00.000Z"},
                },
                {
                    "image_id": {"S": "2" * 32},
                    "status": {"S": "rejected"},
                    "key": {"S": "uploads/huge.tif"},
                    "reason": {"S": "image has 300000000 pixels"},
                    "indexed_at": {"S": "2026-02-01T00:00:00.000Z"},
                },
            ],
            "Count": 2,
        },
    )
    failures = [
        {
            "image_id": {"S": "3" * 32},
            "status": {"S": "failed"},
            "key": {"S": "uploads/denied.jpg"},
            "reason": {"S": "Bedrock denied access to amazon.titan-embed-image-v1"},
            "indexed_at": {"S": "2026-03-01T00:00:00.000Z"},
        }
    ][:failed]
    db.add_response("query", {"Items": failures, "Count": len(failures)})
    # The model switch's state item, and during a switch its live progress
    db.add_response(
        "get_item",
        {"Item": state} if state else {},
        {
            "TableName": "local-table",
            "Key": {"image_id": {"S": r.MODEL_STATE_ID}},
            "ConsistentRead": True,
        },
    )
    if state and state["phase"]["S"] == "switching":
        db.add_response(
            "query",
            {"Count": covered, "ScannedCount": 7},
            count_params(
                "indexed",
                FilterExpression="#m = :m AND #d = :d",
                names={"#m": "model_id", "#d": "dimension"},
                values={":m": state["target_model_id"], ":d": state["target_dimension"]},
            ),
        )
        # and the records the target gave up (none here)
        target = f"{state['target_model_id']['S']} ({state['target_dimension']['N']})"
        db.add_response(
            "query",
            {"Count": 0, "ScannedCount": 7},
            count_params(
                "indexed",
                FilterExpression="begins_with(#r, :failed) OR begins_with(#r, :refused)",
                names={"#r": "reason"},
                values={
                    ":failed": {"S": f"not embedded by {target}: "},
                    ":refused": {"S": f"refused by {target}: "},
                },
            ),
        )
    db.add_response(
        "query",
        {"Count": other_model, "ScannedCount": 7},
        count_params(
            "indexed",
            FilterExpression="#m <> :m OR #d <> :d",
            names={"#m": "model_id", "#d": "dimension"},
            values={":m": {"S": "amazon.titan-embed-image-v1"}, ":d": {"N": "1024"}},
        ),
    )


def test_status_reports_counts_queues_rejections_and_the_backfill_hint() -> None:
    clients = moto_clients()
    session, _ = local_api()
    out = io.StringIO()
    with Stubber(clients["dynamodb"]) as db, Stubber(clients["sqs"]) as sqs:
        stub_status(db, sqs, other_model=3)
        code = run(["--url", LOCAL, "status"], http=session, clients=clients, stdout=out)

    assert code == 0
    text = out.getvalue()
    assert "images       7 indexed, 2 rejected" in text
    assert "ingest queue 4 waiting, 1 in flight" in text
    assert "dead letters 0" in text
    assert "model        amazon.titan-embed-image-v1 (1024 dimensions)" in text
    rejections = text.split("latest rejections:\n")[1].splitlines()
    # Newest first.
    assert "uploads/huge.tif" in rejections[0] and "300000000 pixels" in rejections[0]
    assert "uploads/old.txt" in rejections[1] and "not an image" in rejections[1]
    assert (
        "hint: 3 indexed records were embedded with another model or dimension than"
        " amazon.titan-embed-image-v1 (1024): run `imagesearch backfill --force` to re-embed them"
    ) in text


def test_status_has_the_models_state_from_health() -> None:
    # Given local mode whose start-up check found no credentials
    unusable = {
        **HEALTH,
        "status": "degraded",
        "model": {
            "state": "unusable",
            "cause": "AWS credentials: none found",
            "fix": "set AWS_PROFILE",
            "since": "2026-01-01T12:00:00+00:00",
        },
    }
    clients = moto_clients()
    session, _ = local_api(extra={("GET", "/health"): (200, unusable)})
    out = io.StringIO()
    with Stubber(clients["dynamodb"]) as db, Stubber(clients["sqs"]) as sqs:
        stub_status(db, sqs, other_model=0)
        code = run(["--url", LOCAL, "status"], http=session, clients=clients, stdout=out)

    assert code == 0
    assert (
        "model        amazon.titan-embed-image-v1 (1024 dimensions): unusable since"
        " 2026-01-01T12:00:00+00:00: AWS credentials: none found; fix: set AWS_PROFILE"
    ) in out.getvalue()


def test_status_says_the_model_is_ok() -> None:
    healthy = {**HEALTH, "model": {"state": "ok"}}
    clients = moto_clients()
    session, _ = local_api(extra={("GET", "/health"): (200, healthy)})
    out = io.StringIO()
    with Stubber(clients["dynamodb"]) as db, Stubber(clients["sqs"]) as sqs:
        stub_status(db, sqs, other_model=0)
        run(["--url", LOCAL, "status", "--json"], http=session, clients=clients, stdout=out)

    assert json.loads(out.getvalue())["model"] == {"state": "ok"}


def test_status_shows_a_model_switchs_progress_instead_of_the_backfill_hint() -> None:
    clients = moto_clients()
    session, _ = local_api()
    out = io.StringIO()
    state = {
        "image_id": {"S": r.MODEL_STATE_ID},
        "phase": {"S": "switching"},
        "version": {"N": "4"},
        "enqueued": {"N": "7"},
        "removed": {"N": "0"},
        "serving_model_id": {"S": "amazon.titan-embed-image-v1"},
        "serving_dimension": {"N": "1024"},
        "target_model_id": {"S": r.NOVA_MODEL_ID},
        "target_dimension": {"N": "1024"},
        "started_at": {"S": "2026-03-01T00:00:00.000Z"},
    }
    with Stubber(clients["dynamodb"]) as db, Stubber(clients["sqs"]) as sqs:
        stub_status(db, sqs, other_model=4, state=state, covered=3)
        code = run(["--url", LOCAL, "status"], http=session, clients=clients, stdout=out)
    assert code == 0
    text = out.getvalue()
    assert (
        "switch       amazon.titan-embed-image-v1 (1024) -> "
        f"{r.NOVA_MODEL_ID} (1024): 3/7 re-embedded, serving amazon.titan-embed-image-v1 (1024)"
    ) in text
    assert "backfill --force" not in text  # the 4 of the old model are being re-embedded
    assert "hint: switching models: search answers from amazon.titan-embed-image-v1" in text

    with Stubber(clients["dynamodb"]) as db, Stubber(clients["sqs"]) as sqs:
        stub_status(db, sqs, other_model=4, state=state, covered=3)
        out = io.StringIO()
        assert (
            run(["--url", LOCAL, "status", "--json"], http=session, clients=clients, stdout=out)
            == 0
        )
    switch = json.loads(out.getvalue())["switch"]
    assert (switch["phase"], switch["covered"], switch["total"]) == ("switching", 3, 7)
    assert switch["target"] == {"model_id": r.NOVA_MODEL_ID, "dimension": 1024}


def test_status_json_without_records_of_another_model_has_no_hint() -> None:
    clients = moto_clients()
    session, _ = local_api()
    out = io.StringIO()
    with Stubber(clients["dynamodb"]) as db, Stubber(clients["sqs"]) as sqs:
        stub_status(db, sqs, other_model=0)
        code = run(["--url", LOCAL, "status", "--json"], http=session, clients=clients, stdout=out)

    assert code == 0
    report = json.loads(out.getvalue())
    assert report["images"] == {"indexed": 7, "rejected": 2, "failed": 0}
    assert report["queues"]["ingest"] == {"waiting": 4, "in_flight": 1}
    assert report["other_model"] == 0
    assert report["hints"] == []
    assert [item["key"] for item in report["latest_rejections"]] == [
        "uploads/huge.tif",
        "uploads/old.txt",
    ]


def test_access_denied_from_dynamodb_is_one_line() -> None:
    clients = moto_clients()
    session, _ = local_api()
    err = io.StringIO()
    with Stubber(clients["dynamodb"]) as db:
        db.add_client_error(
            "query",
            service_error_code="AccessDeniedException",
            service_message="not authorized to perform: dynamodb:Query",
            http_status_code=400,
        )
        code = run(["--url", LOCAL, "status"], http=session, clients=clients, stderr=err)

    assert code == 1
    assert err.getvalue() == (
        "imagesearch: error: access denied (Query): not authorized to perform: dynamodb:Query\n"
    )


def test_status_warns_at_80_percent_of_the_embedded_capacity() -> None:
    # Given a deployment whose embedded index holds 7 of at most 8 images
    clients = moto_clients()
    session, _ = local_api(extra={("GET", "/health"): (200, {**HEALTH, "capacity": 8})})
    out = io.StringIO()
    with Stubber(clients["dynamodb"]) as db, Stubber(clients["sqs"]) as sqs:
        stub_status(db, sqs, other_model=0)
        code = run(["--url", LOCAL, "status", "--json"], http=session, clients=clients, stdout=out)

    # Then status says so, counting from the table
    assert code == 0
    report = json.loads(out.getvalue())
    assert report["embedded_capacity"] == 8
    assert report["hints"] == [
        "7 indexed images reach 88% of the embedded index's capacity (8, embeddedMaxImages):"
        " raise embeddedMaxImages or deploy with -c vectorStore=s3vectors"
    ]
