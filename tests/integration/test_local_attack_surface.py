"""Local mode's servers against a hostile web page (issue 17, item 9), over real sockets.

moto and the gateway run on this machine with no auth: a page the user visits can
reach their ports. moto answers only local mode (a secret path prefix, loopback Host,
no other web origin, no ``/moto-api``); the gateway answers this machine's names only,
refuses to be framed and answers unknown methods with a JSON 405.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
import requests

from imagesearch.local.app import lan_address
from imagesearch.local.gateway import KNOWN_METHODS, LOOPBACK_HOSTS, Gateway, GatewayServer
from imagesearch.local.hosts import machine_hosts
from imagesearch.local.moto_env import MotoServer, page_origins

PAGE = "http://127.0.0.1:8000"  # local mode's page
BUCKET = "guarded-bucket"


def test_this_machines_names_include_its_hostname_and_addresses() -> None:
    names = machine_hosts()

    assert socket.gethostname().lower() in names
    route = lan_address()
    if route is not None:
        assert route in names
    assert "attacker.example" not in names


def test_the_page_origins_are_the_gateways_names_on_its_port() -> None:
    assert page_origins(LOOPBACK_HOSTS, 8000) == {
        "http://127.0.0.1:8000",
        "http://localhost:8000",
        "http://[::1]:8000",
    }


class _Ok:
    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "{}"}


@pytest.fixture
def served() -> Iterator[GatewayServer]:
    server = GatewayServer(host="127.0.0.1", port=0)
    server.start(Gateway(_Ok(), local_routes={}, region="us-east-1"))
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", "BREW"])
def test_unknown_methods_get_a_json_405(served: GatewayServer, method: str) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    try:
        connection.request(method, "/health", headers={"Host": "127.0.0.1"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()

    assert response.status == 405
    assert response.getheader("Content-Type") == "application/json"
    assert response.getheader("Allow") == ", ".join(KNOWN_METHODS)
    assert response.getheader("X-Frame-Options") == "DENY"
    assert json.loads(body) == {"message": f"method {method} is not allowed"}


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Any]]:
    """A guarded moto server with one object in a bucket, and an S3 client of local mode."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "local")
    server = MotoServer()
    endpoint = server.start(frozenset({PAGE}))
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="uploads/a b%2F.jpg", Body=b"secret bytes")
        yield endpoint, s3
    finally:
        server.stop()


def _port_root(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


def test_local_modes_clients_use_moto_through_the_secret_prefix(moto: tuple[str, Any]) -> None:
    endpoint, s3 = moto
    # Given an endpoint with a long random path (what a page cannot guess)
    assert len(urlsplit(endpoint).path) > 20

    listed = s3.list_objects_v2(Bucket=BUCKET)["Contents"]

    assert [item["Key"] for item in listed] == ["uploads/a b%2F.jpg"]
    assert s3.get_object(Bucket=BUCKET, Key="uploads/a b%2F.jpg")["Body"].read() == (
        b"secret bytes"
    )


def test_the_page_reads_presigned_urls_with_cors_for_its_origin_only(
    moto: tuple[str, Any],
) -> None:
    _, s3 = moto
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "uploads/a b%2F.jpg"}
    )

    own = requests.get(url, headers={"Origin": PAGE}, timeout=10)
    plain = requests.get(url, timeout=10)  # an <img> sends no Origin
    other = requests.get(url, headers={"Origin": "http://127.0.0.1:9999"}, timeout=10)

    assert own.status_code == 200 and own.content == b"secret bytes"
    assert own.headers["Access-Control-Allow-Origin"] == PAGE
    assert plain.status_code == 200 and "Access-Control-Allow-Origin" not in plain.headers
    # An <img>'s cached answer must not serve a later fetch() of the same URL
    assert plain.headers["Vary"] == own.headers["Vary"] == "Origin"
    assert other.status_code == 403 and b"secret" not in other.content
    assert "Access-Control-Allow-Origin" not in other.headers


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/{BUCKET}?list-type=2"),
        ("GET", f"/{BUCKET}/uploads/a%20b%252F.jpg"),
        ("DELETE", f"/{BUCKET}/uploads/a%20b%252F.jpg"),
        ("POST", "/moto-api/reset"),
        ("GET", "/moto-api/data.json"),
        ("GET", "/?Action=ListQueues"),
    ],
)
def test_requests_without_the_secret_prefix_reach_nothing(
    moto: tuple[str, Any], method: str, path: str
) -> None:
    endpoint, s3 = moto

    response = requests.request(method, _port_root(endpoint) + path, timeout=10)

    assert response.status_code == 404
    assert "Access-Control-Allow-Origin" not in response.headers
    assert s3.head_object(Bucket=BUCKET, Key="uploads/a b%2F.jpg")["ContentLength"] == 12


def test_moto_api_is_refused_even_with_the_prefix(moto: tuple[str, Any]) -> None:
    endpoint, s3 = moto

    reset = requests.post(f"{endpoint}/moto-api/reset", timeout=10)

    assert reset.status_code == 403
    assert s3.head_object(Bucket=BUCKET, Key="uploads/a b%2F.jpg")["ContentLength"] == 12


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "attacker.example"},  # DNS rebinding: a hostile name resolved to 127.0.0.1
        {"Origin": "http://attacker.example"},
        {"Origin": PAGE},  # the page itself only reads
    ],
)
def test_other_hosts_origins_and_page_writes_are_refused(
    moto: tuple[str, Any], headers: dict[str, str]
) -> None:
    endpoint, s3 = moto

    response = requests.delete(
        f"{endpoint}/{BUCKET}/uploads/a%20b%252F.jpg", headers=headers, timeout=10
    )

    assert response.status_code in (403, 421)
    assert s3.head_object(Bucket=BUCKET, Key="uploads/a b%2F.jpg")["ContentLength"] == 12
