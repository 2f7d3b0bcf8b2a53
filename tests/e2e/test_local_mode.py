"""Local mode end to end: files dropped into the folder become searchable over HTTP.

One local mode (module-scoped, see conftest) serves most tests; each test uses its
own file names. Colours carry the meaning: the fake Bedrock embeds images by
their colours and texts by the colour words they contain.
"""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from fakes import imagefactory as images
from fakes.bedrock import FakeBedrock
from imagesearch.records import image_id_for_key
from tests.e2e.conftest import ROOT, LocalProcess, _new_instance

PURPLE = (130, 50, 170)
ORANGE = (250, 140, 20)
# The collection every test can rely on (dropped once per module).
RED = "red.jpg"
RED_AGAIN = "red again.jpg"
GREEN = "green.png"
BLUE = "Ferien 2024/blauer Himmel ü.jpg"  # a subfolder, spaces and non-ASCII
BROKEN = "broken photo.jpg"
API_ROUTES = {
    "/search": {"post"},
    "/images": {"get"},
    "/images/{image_id}": {"get", "delete"},
    "/uploads": {"post"},
    "/health": {"get"},
    "/openapi.json": {"get"},
}


@pytest.fixture(scope="module", params=["dynamodb", "s3vectors"])
def local_mode(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    imagesearch_command: list[str],
    local_env: dict[str, str],
) -> Any:
    """This module's shared local mode, once per vector store: the scale tier (on the
    S3 Vectors emulator) must behave for a user exactly like the default."""
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
def collection(local_mode: LocalProcess) -> dict[str, dict[str, Any]]:
    """Given red, red again, green and blue images and a broken file in the drop folder."""
    local_mode.drop(RED, images.jpeg(96, 64, images.RED))
    local_mode.drop(RED_AGAIN, images.jpeg(160, 120, images.RED))
    local_mode.drop(GREEN, images.png(80, 80, images.GREEN))
    local_mode.drop(BLUE, images.jpeg(64, 96, images.BLUE))
    local_mode.drop(BROKEN, images.truncated_jpeg())
    records = local_mode.wait_indexed(RED, RED_AGAIN, GREEN, BLUE)
    keys = {record["key"] for record in records}
    # The search index refreshes within seconds of a write: wait until it has them all.
    local_mode.wait_until(
        lambda: keys <= {hit["key"] for hit in local_mode.search(text="image", top_k=100)},
        message="the collection to be searchable",
    )
    return {record["key"]: record for record in records}


def _keys(results: list[dict[str, Any]]) -> list[str]:
    return [hit["key"] for hit in results]


def test_dropped_files_are_mirrored_under_the_upload_prefix(
    local_mode: LocalProcess, collection: dict[str, dict[str, Any]]
) -> None:
    # Then every file is an object under uploads/ + its relative path, with its record.
    assert set(collection) == {
        "uploads/red.jpg",
        "uploads/red again.jpg",
        "uploads/green.png",
        "uploads/Ferien 2024/blauer Himmel ü.jpg",
    }
    blue = collection[local_mode.key_for(BLUE)]
    assert blue["image_id"] == image_id_for_key("uploads/Ferien 2024/blauer Himmel ü.jpg")
    assert (blue["width"], blue["height"]) == (64, 96)
    assert blue["content_type"] == "image/jpeg"
    assert collection[local_mode.key_for(GREEN)]["content_type"] == "image/png"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("red", {RED, RED_AGAIN}), ("green", {GREEN}), ("a blue sky", {BLUE})],
)
def test_text_search_ranks_the_matching_colour_first(
    local_mode: LocalProcess,
    collection: dict[str, dict[str, Any]],
    text: str,
    expected: set[str],
) -> None:
    # When searching by text over HTTP
    response = local_mode.post("/search", json={"text": text, "top_k": 10})

    # Then the images of that colour come first, best score first
    assert response.status_code == 200, response.text
    payload = response.json()
    results = payload["results"]
    wanted = {local_mode.key_for(name) for name in expected}
    assert set(_keys(results)[: len(wanted)]) == wanted
    scores = [hit["score"] for hit in results]
    assert scores == sorted(scores, reverse=True)
    assert payload["count"] == len(results)
    assert payload["model_id"] == "amazon.titan-embed-image-v1"
    assert payload["dimension"] == 1024
    assert local_mode.key_for(BROKEN) not in _keys(results)


def test_search_by_image(local_mode: LocalProcess, collection: dict[str, dict[str, Any]]) -> None:
    # Given a query image that is not in the collection (other size, other bytes)
    query = base64.b64encode(images.jpeg(40, 30, images.BLUE)).decode()

    # When searching by it
    results = local_mode.search(image=query, top_k=3)

    # Then the blue image ranks first
    assert _keys(results)[0] == local_mode.key_for(BLUE)


def test_more_like_this(local_mode: LocalProcess, collection: dict[str, dict[str, Any]]) -> None:
    red_id = local_mode.image_id_for(RED)

    results = local_mode.search(image_id=red_id, top_k=10)

    # Then the other red image is the nearest neighbour, and the query image is left out
    assert _keys(results)[0] == local_mode.key_for(RED_AGAIN)
    assert red_id not in [hit["image_id"] for hit in results]


def test_filters_by_prefix_content_type_and_min_score(
    local_mode: LocalProcess, collection: dict[str, dict[str, Any]]
) -> None:
    # A folder prefix, and the same folder relative to the upload prefix
    for prefix in ("uploads/Ferien 2024/", "Ferien 2024/"):
        assert _keys(local_mode.search(text="red", top_k=10, prefix=prefix)) == [
            local_mode.key_for(BLUE)
        ]
    # A prefix that ends mid-name
    reds = local_mode.search(text="red", top_k=10, prefix="uploads/red")
    assert set(_keys(reds)) == {local_mode.key_for(RED), local_mode.key_for(RED_AGAIN)}
    # Content types
    pngs = local_mode.search(text="green", top_k=100, content_type=["image/png"])
    assert _keys(pngs)[0] == local_mode.key_for(GREEN)
    assert {hit["content_type"] for hit in pngs} == {"image/png"}
    both = local_mode.search(text="green", top_k=100, content_type=["image/png", "image/jpeg"])
    assert {local_mode.key_for(n) for n in (RED, GREEN, BLUE)} <= set(_keys(both))
    # A score cut-off between the best hit and the next
    ranked = local_mode.search(text="green", top_k=10, prefix="uploads/")
    cut = (ranked[0]["score"] + ranked[1]["score"]) / 2
    best = local_mode.search(text="green", top_k=10, prefix="uploads/", min_score=cut)
    assert _keys(best) == [local_mode.key_for(GREEN)]
    assert local_mode.search(text="green", top_k=10, min_score=1.0) == []


def test_a_broken_file_is_rejected_with_a_reason(
    local_mode: LocalProcess, collection: dict[str, dict[str, Any]]
) -> None:
    record = local_mode.wait_status(BROKEN, "rejected")
    assert record["reason"]

    response = local_mode.get("/images", params={"status": "rejected"})
    assert response.status_code == 200
    listed = {item["key"]: item for item in response.json()["items"]}
    assert listed[local_mode.key_for(BROKEN)]["reason"] == record["reason"]


def test_every_api_route_answers_on_the_port(
    local_mode: LocalProcess, collection: dict[str, dict[str, Any]]
) -> None:
    health = local_mode.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert health.json()["images"] >= len(collection)

    document = local_mode.get("/openapi.json").json()
    for path, methods in API_ROUTES.items():
        assert methods <= set(document["paths"][path]), path

    first = local_mode.get("/images", params={"status": "indexed", "limit": 2}).json()
    assert len(first["items"]) == 2 and first["cursor"]
    rest = local_mode.get(
        "/images", params={"status": "indexed", "limit": 100, "cursor": first["cursor"]}
    ).json()
    paged = _keys(first["items"]) + _keys(rest["items"])
    assert set(collection) <= set(paged) and len(paged) == len(set(paged))

    record = local_mode.get(f"/images/{local_mode.image_id_for(RED)}").json()
    assert record["status"] == "indexed" and "vector" not in record
    # Presigned URLs point at the local moto server and work from here, as from a browser.
    thumbnail = requests.get(record["thumbnail_url"], timeout=30)
    assert thumbnail.status_code == 200 and thumbnail.content[:3] == b"\xff\xd8\xff"
    original = requests.get(record["url"], timeout=30)
    assert original.content == (local_mode.dropbox / RED).read_bytes()


def test_upload_through_a_presigned_url_then_delete(local_mode: LocalProcess) -> None:
    # Given a presigned upload from the API, bounded to the declared size
    data = images.png(50, 50, ORANGE)
    response = local_mode.post(
        "/uploads",
        json={"filename": "uploaded orange.png", "content_type": "image/png", "size": len(data)},
    )
    assert response.status_code == 200, response.text
    upload = response.json()
    assert upload["key"].startswith("uploads/")

    # When the client PUTs the image there, it is indexed like a dropped file
    put = requests.put(
        upload["url"],
        data=data,
        headers=upload["headers"],
        timeout=30,
    )
    assert put.status_code == 200, put.text
    image_id = image_id_for_key(upload["key"])
    local_mode.wait_until(
        lambda: (local_mode.get(f"/images/{image_id}").json() or {}).get("status") == "indexed",
        message="the uploaded image to be indexed",
    )

    # And DELETE removes it: 202 now, 404 once the event went through
    deleted = local_mode.delete(f"/images/{image_id}")
    assert deleted.status_code == 202, deleted.text
    local_mode.wait_until(
        lambda: local_mode.get(f"/images/{image_id}").status_code == 404,
        message="the deleted image to disappear",
    )


@pytest.mark.parametrize(
    ("send", "status"),
    [
        (lambda p: p.post("/search", json={}), 422),
        (lambda p: p.post("/search", json={"text": "red", "top_k": 1000}), 422),
        (
            lambda p: p.post(
                "/search", data="{not json", headers={"Content-Type": "application/json"}
            ),
            400,
        ),
        (lambda p: p.get("/images/" + "0" * 32), 404),
        (lambda p: p.get("/images", params={"status": "bogus"}), 422),
        (lambda p: p.post("/search", json={"image_id": "f" * 32}), 404),
        # API Gateway's 10 MB payload limit, answered before the handler runs.
        (
            lambda p: p.post(
                "/search",
                data=b"x" * (10 * 1024 * 1024 + 1),
                headers={"Content-Type": "application/json"},
            ),
            413,
        ),
        # Between Lambda's 6 MB and API Gateway's 10 MB: refused as well, not a 5xx.
        (
            lambda p: p.post(
                "/search",
                data=b"x" * (7 * 1024 * 1024),
                headers={"Content-Type": "application/json"},
            ),
            413,
        ),
        # DNS rebinding: a hostile name resolved to 127.0.0.1 gets nothing.
        (lambda p: p.get("/health", headers={"Host": "rebound.attacker.example"}), 421),
    ],
)
def test_errors_are_json_messages(
    local_mode: LocalProcess,
    send: Callable[[LocalProcess], requests.Response],
    status: int,
) -> None:
    response = send(local_mode)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert isinstance(response.json()["message"], str) and response.json()["message"]


def test_the_size_limit_named_is_the_one_that_applies(local_mode: LocalProcess) -> None:
    response = local_mode.post(
        "/search", data=b"x" * (7 * 1024 * 1024), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert "6 MB" in response.json()["message"] and "POST /uploads" in response.json()["message"]


def test_openapi_describes_where_the_routes_are(local_mode: LocalProcess) -> None:
    document = local_mode.get("/openapi.json").json()

    (server,) = document["servers"]
    # The routes answer at the root of the server it names (not under /local).
    assert not server["url"].rstrip("/").endswith("/local")
    base = server["url"].rstrip("/")
    if not base.startswith("http"):
        base = local_mode.url + base
    assert requests.get(base + "/health", timeout=30).status_code == 200


_CROSS_SITE_FORMS = [
    ("application/x-www-form-urlencoded", b"filename=a.jpg&content_type=image%2Fjpeg&size=5"),
    (
        "multipart/form-data; boundary=b0undary",
        b'--b0undary\r\nContent-Disposition: form-data; name="filename"\r\n\r\na.jpg\r\n'
        b"--b0undary--\r\n",
    ),
    # enctype=text/plain can smuggle a JSON-looking body past a careless server.
    ("text/plain", b'{"filename": "a.jpg", "content_type": "image/jpeg", "size": 5, "x": "="}'),
]


@pytest.mark.parametrize(("content_type", "body"), _CROSS_SITE_FORMS)
@pytest.mark.parametrize("path", ["/uploads", "/search"])
def test_cross_site_form_posts_are_refused(
    local_mode: LocalProcess, content_type: str, body: bytes, path: str
) -> None:
    # Given what a browser sends when another site's form posts to local mode
    from_a_form = {"Content-Type": content_type, "Origin": "https://attacker.example"}

    # Then the request is refused before the handler, as JSON
    refused = local_mode.post(path, data=body, headers=from_a_form)
    assert refused.status_code == 403, refused.text
    assert "cross-origin" in refused.json()["message"]

    # And without the Origin header (a non-browser client) the handler still takes
    # JSON only: form and multipart bodies are a 4xx, never a result or a 5xx
    no_origin = local_mode.post(path, data=body, headers={"Content-Type": content_type})
    assert 400 <= no_origin.status_code < 500, no_origin.text
    assert isinstance(no_origin.json()["message"], str)


def test_json_media_types_are_case_insensitive_through_the_gateway(
    local_mode: LocalProcess, collection: dict[str, dict[str, Any]]
) -> None:
    response = local_mode.post(
        "/search",
        data=json.dumps({"text": "red", "top_k": 1}),
        headers={"Content-Type": "APPLICATION/JSON; charset=UTF-8"},
    )
    assert response.status_code == 200, response.text


def test_the_pages_own_origin_may_post(local_mode: LocalProcess) -> None:
    response = local_mode.post(
        "/search", json={"text": "red", "top_k": 1}, headers={"Origin": local_mode.url}
    )
    assert response.status_code == 200, response.text


def test_a_changed_file_is_reindexed(local_mode: LocalProcess) -> None:
    # Given an indexed yellow image
    name = "changing/colour.jpg"
    local_mode.drop(name, images.jpeg(64, 64, images.YELLOW))
    before = local_mode.wait_status(name, "indexed")

    # When the file is overwritten with a purple image
    local_mode.drop(name, images.jpeg(64, 64, PURPLE))

    # Then the record follows (new etag) and "purple" finds it first
    after = local_mode.wait_until(
        lambda: (record := local_mode.record(name)) and record["etag"] != before["etag"] and record,
        message="the changed file to be re-indexed",
    )
    assert after["status"] == "indexed"
    key = local_mode.key_for(name)
    local_mode.wait_until(
        lambda: _keys(local_mode.search(text="purple", top_k=1)) == [key],
        message="the re-indexed image to rank first for 'purple'",
    )


def test_removed_files_leave_the_results(local_mode: LocalProcess) -> None:
    # Given an indexed orange image that search finds
    name = "short lived/orange.jpg"
    local_mode.drop(name, images.jpeg(64, 64, ORANGE))
    local_mode.wait_status(name, "indexed")
    key = local_mode.key_for(name)
    local_mode.wait_until(
        lambda: key in _keys(local_mode.search(text="orange", top_k=5)),
        message="the orange image to be searchable",
    )

    # When the file is removed from the drop folder
    local_mode.remove(name)

    # Then its record is gone (404) and search no longer returns it
    local_mode.wait_gone(name)
    local_mode.wait_until(
        lambda: key not in _keys(local_mode.search(text="orange", top_k=100)),
        message="the removed image to leave the results",
    )


def test_deleting_a_dropped_image_through_the_api_moves_its_file_aside(
    local_mode: LocalProcess,
) -> None:
    # Given a dropped, indexed image
    name = "api deleted/violet.jpg"
    local_mode.drop(name, images.jpeg(48, 48, PURPLE))
    local_mode.wait_status(name, "indexed")

    # When it is deleted through the API
    assert local_mode.delete(f"/images/{local_mode.image_id_for(name)}").status_code == 202

    # Then it leaves the index and its file moves to .deleted/ (kept, not re-uploaded)
    local_mode.wait_gone(name)
    trash = local_mode.dropbox / ".deleted" / name
    local_mode.wait_until(trash.exists, message="the file to move to .deleted/")
    assert not (local_mode.dropbox / name).exists()
    assert local_mode.get(f"/images/{local_mode.image_id_for(name)}").status_code == 404


def test_files_the_bucket_cannot_take_are_listed_as_refused(local_mode: LocalProcess) -> None:
    local_mode.drop("new\nline.jpg", images.jpeg(16, 16, images.RED))

    refused = local_mode.wait_until(
        lambda: [
            item
            for item in local_mode.get("/local/stats").json()["dropbox"]["refusals"]
            if item["path"] == "new\nline.jpg"
        ],
        message="the refusal in /local/stats",
    )
    assert "control character" in refused[0]["reason"]
    assert local_mode.log().count("not mirrored: 'new\\nline.jpg'") == 1


def test_local_routes_describe_the_resources_and_counts(
    local_mode: LocalProcess, collection: dict[str, dict[str, Any]]
) -> None:
    resources = local_mode.get("/local/resources").json()
    vectors = {"vector_bucket", "vector_index", "vectors_endpoint_url"}
    assert set(resources) == {
        "endpoint_url",
        "region",
        "bucket",
        "table",
        "queue_url",
        "dlq_url",
        "upload_prefix",
        "vector_store",
        *(vectors if resources["vector_store"] == "s3vectors" else ()),
    }
    assert resources["upload_prefix"] == "uploads/"
    assert resources["endpoint_url"].startswith("http://127.0.0.1:")

    stats = local_mode.get("/local/stats").json()
    assert stats["images"]["indexed"] >= len(collection)
    assert stats["images"]["rejected"] >= 1
    assert {"waiting", "in_flight"} <= set(stats["queue"])
    assert stats["dead_letter"] == 0


def test_one_line_per_file_in_the_log(
    local_mode: LocalProcess, collection: dict[str, dict[str, Any]]
) -> None:
    local_mode.wait_status(BROKEN, "rejected")
    log = local_mode.wait_until(
        lambda: (text := local_mode.log()) and f"rejected uploads/{BROKEN}:" in text and text,
        message="the rejection in the log",
    )
    for key in collection:
        assert f"indexed {key}" in log
    assert "Traceback" not in log


def test_hidden_and_partial_files_stay_local(local_mode: LocalProcess) -> None:
    # Given files that are not finished or not meant to be shared, then a real one
    local_mode.drop(".hidden.jpg", images.jpeg(32, 32, images.RED))
    local_mode.drop("download.jpg.crdownload", images.jpeg(32, 32, images.RED))
    local_mode.drop("marker/done.jpg", images.jpeg(32, 32, images.GREEN))
    local_mode.wait_status("marker/done.jpg", "indexed")

    # Then only the real one reached the bucket
    listed = local_mode.get("/images", params={"prefix": "uploads/", "limit": 100}).json()
    keys = set(_keys(listed["items"]))
    assert "uploads/marker/done.jpg" in keys
    assert not {"uploads/.hidden.jpg", "uploads/download.jpg.crdownload"} & keys


def test_ctrl_c_stops_cleanly(start_local_mode: Callable[..., LocalProcess]) -> None:
    instance = start_local_mode()

    exit_code = instance.stop(signal.SIGINT)

    assert exit_code == 0
    log = instance.log()
    assert "Traceback" not in log
    assert "stopped" in log


def test_sigterm_stops_cleanly(start_local_mode: Callable[..., LocalProcess]) -> None:
    instance = start_local_mode()

    assert instance.stop(signal.SIGTERM) == 0
    assert "Traceback" not in instance.log()


def test_a_busy_port_is_a_clear_error(
    tmp_path: Path, imagesearch_command: list[str], local_env: dict[str, str]
) -> None:
    # Given a port something else listens on
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        # When local mode is started on it
        result = subprocess.run(
            [*imagesearch_command, "local", "--port", str(port), "--dropbox", str(tmp_path)],
            env=local_env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    # Then it exits non-zero with what to do, not a traceback
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"cannot listen on 127.0.0.1:{port}" in output and "--port" in output
    assert "Traceback" not in output


def test_a_file_that_keeps_failing_ends_in_the_dead_letter_queue(
    start_local_mode: Callable[..., LocalProcess], bedrock: FakeBedrock
) -> None:
    # Given a private local mode whose model refuses access five times in a row
    instance = start_local_mode()
    bedrock.fail_next(5, "AccessDeniedException")
    try:
        # When an image is dropped
        instance.drop("denied.jpg", images.jpeg(32, 32, images.RED))

        # Then each receive fails, and after five the message is parked in the DLQ
        instance.wait_until(
            lambda: instance.get("/local/stats").json()["dead_letter"] == 1,
            timeout=120,
            message="the message to reach the dead-letter queue",
        )
    finally:
        bedrock.reset()
    # visible as failed, with the model's cause (SPEC section 5)
    record = instance.get(f"/images/{instance.image_id_for('denied.jpg')}").json()
    assert record["status"] == "failed"
    assert "Bedrock denied access" in record["reason"]
    log = instance.log()
    assert "failed uploads/denied.jpg (attempt 1 of 5): will retry" in log
    # from the second attempt on, alone from the retry queue (decision 43)
    assert "retrying uploads/denied.jpg alone" in log
    assert "failed uploads/denied.jpg (attempt 2 of 5): will retry" in log
    assert "dead-letter queue" in log
    assert json.loads(instance.get("/health").text)["images"] == 0


# Runs in a child Python: LocalMode imports the handlers and changes the environment
# of its process, which must not leak into this test process.
_IN_PROCESS_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time, urllib.request
    from pathlib import Path
    from imagesearch.local import LocalMode
    from fakes import imagefactory

    def get(url):
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.load(response)

    def wait_indexed(mode, count):
        deadline = time.monotonic() + 60
        while get(mode.url + "/local/stats")["images"]["indexed"] < count:
            assert time.monotonic() < deadline, "not indexed in time"
            time.sleep(0.2)

    base = Path(sys.argv[1])
    before = dict(os.environ)
    seen = []
    for run in ("first", "second"):
        folder = base / run
        with LocalMode(port=0, dropbox=folder, poll_seconds=0.2) as mode:
            assert get(mode.url + "/health")["images"] == 0, "state leaked between runs"
            (folder / f"{run}.jpg").write_bytes(imagefactory.jpeg(32, 32, imagefactory.RED))
            wait_indexed(mode, 1)
            seen.append([item["key"] for item in get(mode.url + "/images")["items"]])
        assert dict(os.environ) == before, "environment not restored"
    print(json.dumps(seen))
    """
)


def test_local_mode_object_runs_twice_in_one_process(
    tmp_path: Path, local_env: dict[str, str]
) -> None:
    # When one process runs LocalMode, stops it and runs another one
    result = subprocess.run(
        [sys.executable, "-c", _IN_PROCESS_SCRIPT, str(tmp_path)],
        env=local_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )

    # Then each run saw only its own image, and the environment came back each time
    assert result.returncode == 0, result.stderr[-4000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [
        ["uploads/first.jpg"],
        ["uploads/second.jpg"],
    ]
