"""Local mode's HTTP gateway (finding 9.14): which requests reach the handler, and as what.

No auth in local mode, so the browser is the threat: DNS rebinding (a hostile name
resolved to 127.0.0.1) and cross-site form posts (no CORS preflight) are refused
before the handler runs; everything else reaches it as API Gateway would send it.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from imagesearch import resources as r
from imagesearch.local.gateway import (
    LOOPBACK_HOSTS,
    MAX_BODY_BYTES,
    Gateway,
    allowed_hosts,
    host_name,
    proxy_event,
)


class RecordingHandler:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": "{}"}


def gateway(hosts: frozenset[str] | None = LOOPBACK_HOSTS) -> tuple[Gateway, RecordingHandler]:
    handler = RecordingHandler()
    return Gateway(handler, local_routes={}, region="us-east-1", hosts=hosts), handler


def send(
    target: Gateway, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, dict[str, Any]]:
    status, response_headers, data = target.handle(
        method, path, list(headers.items()), body, "127.0.0.1"
    )
    assert dict(response_headers)["Content-Type"].startswith(("application/json", "text/html"))
    return status, json.loads(data) if data.startswith(b"{") else {}


@pytest.mark.parametrize(
    "host", ["127.0.0.1:8000", "localhost:8000", "LOCALHOST", "[::1]:8000", "127.0.0.1"]
)
def test_loopback_hosts_reach_the_handler(host: str) -> None:
    target, handler = gateway()

    status, _ = send(target, "GET", "/health", {"Host": host})

    assert status == 200 and len(handler.events) == 1


@pytest.mark.parametrize("path", ["/health", "/images", "/", "/local/resources"])
@pytest.mark.parametrize("host", ["attacker.example:8000", "127.0.0.1.nip.io:8000", "10.0.0.7"])
def test_other_hosts_are_refused_before_anything_runs(path: str, host: str) -> None:
    # Given a page on a hostile name that now resolves to 127.0.0.1 (DNS rebinding)
    target, handler = gateway()

    status, body = send(target, "GET", path, {"Host": host})

    assert status == 421
    assert "--host" in body["message"]
    assert handler.events == []


def test_host_flag_adds_its_address() -> None:
    assert allowed_hosts("127.0.0.1") == LOOPBACK_HOSTS
    assert allowed_hosts("192.168.1.20") == LOOPBACK_HOSTS | {"192.168.1.20"}
    assert allowed_hosts("[::1]") == LOOPBACK_HOSTS


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::"])
def test_a_wildcard_host_accepts_this_machines_names_only(wildcard: str) -> None:
    # Given local mode on every interface of a machine called my-laptop
    machine = frozenset({"my-laptop", "my-laptop.lan", "192.168.1.20", "fd00::2"})
    hosts = allowed_hosts(wildcard, machine=lambda: machine)
    assert hosts == LOOPBACK_HOSTS | machine
    target, handler = gateway(hosts)

    for host in ["my-laptop.lan:8000", "192.168.1.20:8000", "[fd00::2]:8000", "localhost"]:
        assert send(target, "GET", "/health", {"Host": host})[0] == 200
    # A hostile name resolved to this machine is still refused (DNS rebinding).
    assert send(target, "GET", "/health", {"Host": "attacker.example:8000"})[0] == 421
    assert len(handler.events) == 4


@pytest.mark.parametrize(
    ("value", "name"),
    [("127.0.0.1:8000", "127.0.0.1"), ("[::1]:80", "::1"), ("Example.COM", "example.com")],
)
def test_host_name(value: str, name: str) -> None:
    assert host_name(value) == name


FORMS = [
    ("application/x-www-form-urlencoded", b"text=red&top_k=5"),
    (
        "multipart/form-data; boundary=x",
        b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--x--\r\n',
    ),
    ("text/plain", b'{"filename": "a.jpg", "content_type": "image/jpeg", "size": 5}'),
]


@pytest.mark.parametrize(("content_type", "body"), FORMS)
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/search"), ("POST", "/uploads"), ("DELETE", "/images/" + "a" * 32)],
)
def test_cross_site_requests_that_change_state_are_refused(
    content_type: str, body: bytes, method: str, path: str
) -> None:
    # Given a form on another site posting to local mode (no CORS preflight needed)
    target, handler = gateway()
    headers = {
        "Host": "127.0.0.1:8000",
        "Origin": "https://attacker.example",
        "Content-Type": content_type,
    }

    status, answer = send(target, method, path, headers, body)

    assert status == 403
    assert "cross-origin" in answer["message"]
    assert handler.events == []


@pytest.mark.parametrize("origin", ["null", "http://localhost:8000", "http://127.0.0.1:9999"])
def test_only_the_pages_own_origin_counts_as_same_site(origin: str) -> None:
    target, handler = gateway()
    headers = {"Host": "127.0.0.1:8000", "Origin": origin, "Content-Type": "application/json"}

    assert send(target, "POST", "/search", headers, b"{}")[0] == 403
    assert handler.events == []


def test_the_pages_own_requests_and_clients_without_origin_pass() -> None:
    target, handler = gateway()
    json_headers = {"Host": "127.0.0.1:8000", "Content-Type": "application/json"}

    own = send(
        target, "POST", "/search", {**json_headers, "Origin": "http://127.0.0.1:8000"}, b"{}"
    )
    cli = send(target, "POST", "/search", json_headers, b"{}")

    assert own[0] == cli[0] == 200
    assert len(handler.events) == 2


def test_content_type_and_body_reach_the_handler_untouched() -> None:
    # The handler decides what it accepts: the gateway neither drops nor rewrites the
    # media type (whatever its case), and non-UTF-8 bodies arrive base64-encoded.
    multipart = b"--x\r\n\xff\xd8\xff binary\r\n--x--\r\n"
    event = proxy_event(
        method="POST",
        target="/search",
        headers=[("Host", "127.0.0.1:8000"), ("Content-Type", "multipart/form-data; boundary=x")],
        body=multipart,
        source_ip="127.0.0.1",
    )
    assert event["headers"]["Content-Type"] == "multipart/form-data; boundary=x"
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == multipart

    upper = proxy_event(
        method="POST",
        target="/search",
        headers=[("Host", "127.0.0.1:8000"), ("Content-Type", "APPLICATION/JSON")],
        body=b'{"text": "red"}',
        source_ip="127.0.0.1",
    )
    assert upper["headers"]["Content-Type"] == "APPLICATION/JSON"
    assert (upper["body"], upper["isBase64Encoded"]) == ('{"text": "red"}', False)


def test_the_request_path_has_no_stage_as_the_routes_have_none() -> None:
    # The handler derives the OpenAPI server URL from requestContext.path: with
    # "/local/openapi.json" it advertised http://host/local, where no route answers.
    event = proxy_event(
        method="GET",
        target="/openapi.json",
        headers=[("Host", "127.0.0.1:8000")],
        body=b"",
        source_ip="127.0.0.1",
    )
    assert event["requestContext"]["path"] == event["path"] == "/openapi.json"


def test_openapi_served_locally_points_at_the_root() -> None:
    from imagesearch.handlers import api

    event = proxy_event(
        method="GET",
        target="/openapi.json",
        headers=[("Host", "127.0.0.1:8000")],
        body=b"",
        source_ip="127.0.0.1",
    )
    assert api._server_url(event) == "http://127.0.0.1:8000"


def test_the_body_limit_is_lambdas_not_api_gateways() -> None:
    assert MAX_BODY_BYTES == r.API_PAYLOAD_LIMIT_BYTES == 6 * 1024 * 1024


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/", {"Host": "127.0.0.1"}),
        ("GET", "/health", {"Host": "127.0.0.1"}),
        ("GET", "/health", {"Host": "attacker.example"}),
        ("POST", "/search", {"Host": "127.0.0.1", "Origin": "http://attacker.example"}),
    ],
)
def test_no_other_site_may_frame_any_response(
    method: str, path: str, headers: dict[str, str]
) -> None:
    target, _ = gateway()

    _, response_headers, _ = target.handle(method, path, list(headers.items()), b"", "127.0.0.1")

    names = dict(response_headers)
    assert names["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert names["X-Frame-Options"] == "DENY"
