"""CLI HTTP client: SigV4 for deployed APIs, unsigned local mode, error messages.

Also home of the fake ``requests`` transport the other CLI unit tests use: a real
``requests.Session`` whose adapter answers from Python instead of the network.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from imagesearch.cli.errors import ApiError, CliError
from imagesearch.cli.http import (
    ApiClient,
    SigV4Signer,
    is_local_url,
    is_loopback_url,
    region_from_url,
)
from imagesearch.cli.main import run

LOCAL = "http://127.0.0.1:8000"
DEPLOYED = "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"

Reply = tuple[int, Any] | tuple[int, Any, dict[str, str]] | BaseException


class Sent:
    """One request as it reached the transport."""

    def __init__(self, prepared: requests.PreparedRequest) -> None:
        self.method = prepared.method or ""
        self.url = prepared.url or ""
        parts = urlsplit(self.url)
        self.path = parts.path
        self.query = parts.query
        self.headers = dict(prepared.headers)
        body = prepared.body
        if hasattr(body, "read"):
            body = body.read()  # type: ignore[union-attr]
        self.body: bytes = body.encode() if isinstance(body, str) else (body or b"")

    def json(self) -> Any:
        return json.loads(self.body)


class FakeTransport(BaseAdapter):
    """Answers every request with ``handler(sent)``: (status, json-able body[, headers]),
    or raises the exception the handler returns."""

    def __init__(self, handler: Callable[[Sent], Reply]) -> None:
        super().__init__()
        self.handler = handler
        self.sent: list[Sent] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        sent = Sent(request)
        self.sent.append(sent)
        reply = self.handler(sent)
        if isinstance(reply, BaseException):
            raise reply
        status, body, *rest = reply
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict(rest[0] if rest else {})
        if isinstance(body, bytes | str):
            response._content = body.encode() if isinstance(body, str) else body
        else:
            response._content = b"" if body is None else json.dumps(body).encode()
            response.headers.setdefault("Content-Type", "application/json")
        response.url = sent.url
        response.request = request
        response.reason = "fake"
        response.raw = io.BytesIO(response._content)
        return response

    def close(self) -> None:
        pass


def fake_http(handler: Callable[[Sent], Reply]) -> tuple[requests.Session, FakeTransport]:
    session = requests.Session()
    transport = FakeTransport(handler)
    session.mount("http://", transport)
    session.mount("https://", transport)
    return session, transport


def refused(sent: Sent) -> Reply:
    error = requests.ConnectionError(
        "HTTPConnectionPool(host='127.0.0.1', port=8000): Max retries exceeded"
    )
    error.__cause__ = ConnectionRefusedError(111, "Connection refused")
    return error


def verify_sigv4(sent: Sent, credentials: Credentials, region: str) -> None:
    """Recompute the signature from what was sent: valid for this method, URL and body."""
    authorization = sent.headers["Authorization"]
    match = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<day>\d{8})/(?P<region>[^/]+)/"
        r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[^,]+), "
        r"Signature=(?P<signature>[0-9a-f]{64})",
        authorization,
    )
    assert match, authorization
    assert match["key"] == credentials.access_key
    assert match["region"] == region
    assert match["service"] == "execute-api"
    signed = match["signed"].split(";")
    assert "host" in signed and "x-amz-date" in signed
    headers = {
        name: value
        for name, value in sent.headers.items()
        if name.lower() in signed and name.lower() != "host"
    }
    request = AWSRequest(method=sent.method, url=sent.url, data=sent.body, headers=headers)
    request.context["timestamp"] = sent.headers["X-Amz-Date"]
    auth = SigV4Auth(credentials, "execute-api", region)
    string_to_sign = auth.string_to_sign(request, auth.canonical_request(request))
    assert auth.signature(string_to_sign, request) == match["signature"]


# --- URL classification -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8000", True),
        ("http://localhost:9000/", True),
        ("http://[::1]:8000", True),
        ("http://127.0.0.2:8000", True),
        (DEPLOYED, False),
        ("https://search.example.com", False),
        ("http://10.0.0.5:8000", False),
    ],
)
def test_loopback_urls_are_local_mode(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8000", True),
        ("http://192.168.1.20:8000", True),  # local mode served with --host 0.0.0.0
        ("http://10.0.0.5:8000", True),
        ("http://[fe80::1]:8000", True),
        ("http://laptop.local:8000", True),
        (DEPLOYED, False),
        ("https://search.example.com", False),
        ("http://8.8.8.8:8000", False),
    ],
)
def test_local_mode_urls_on_the_network_go_unsigned(url: str, local: bool) -> None:
    assert is_local_url(url) is local


def test_region_is_read_from_an_execute_api_host() -> None:
    assert region_from_url(DEPLOYED) == "eu-west-1"
    assert region_from_url("https://search.example.com/prod") is None


# --- Signing ---------------------------------------------------------------------------


def test_requests_to_local_mode_are_not_signed() -> None:
    session, transport = fake_http(lambda sent: (200, {"results": []}))
    api = ApiClient(LOCAL, session=session)

    assert api.post("/search", {"text": "red"}) == {"results": []}

    (sent,) = transport.sent
    assert sent.url == f"{LOCAL}/search"
    assert sent.json() == {"text": "red"}
    assert "Authorization" not in sent.headers
    assert not any(name.lower().startswith("x-amz-") for name in sent.headers)


def test_requests_to_a_deployed_api_carry_a_valid_sigv4_signature() -> None:
    credentials = Credentials("AKIDEXAMPLE", "secret-example", token="session-token")
    session, transport = fake_http(lambda sent: (200, {"ok": True}))
    api = ApiClient(DEPLOYED, session=session, signer=SigV4Signer(credentials, "eu-west-1"))

    api.post("/search", {"text": "red suede sneaker", "top_k": 3})
    api.get("/images", params={"prefix": "uploads/a b+c", "limit": 5, "cursor": None})

    post, get = transport.sent
    assert post.url == f"{DEPLOYED}/search"
    assert get.query == "prefix=uploads%2Fa+b%2Bc&limit=5"
    for sent in (post, get):
        assert sent.headers["X-Amz-Security-Token"] == "session-token"
        verify_sigv4(sent, credentials, "eu-west-1")


def test_a_tampered_body_would_not_match_the_signature() -> None:
    # Guards verify_sigv4 itself: it must reject a request whose body changed.
    credentials = Credentials("AKIDEXAMPLE", "secret-example")
    session, transport = fake_http(lambda sent: (200, {}))
    ApiClient(DEPLOYED, session=session, signer=SigV4Signer(credentials, "eu-west-1")).post(
        "/search", {"text": "red"}
    )
    (sent,) = transport.sent
    sent.body = b'{"text": "blue"}'

    with pytest.raises(AssertionError):
        verify_sigv4(sent, credentials, "eu-west-1")


def test_cli_signs_a_deployed_url_with_the_default_credential_chain() -> None:
    # Given credentials in the environment (tests/conftest.py: testing/testing)
    session, transport = fake_http(lambda sent: (200, {"image_id": "a" * 32, "key": "k"}))

    # When the CLI gets an image from an execute-api URL
    code = run(["--url", DEPLOYED, "get", "a" * 32], http=session, stdout=io.StringIO())

    # Then the request was signed for that URL's region with those credentials
    assert code == 0
    (sent,) = transport.sent
    verify_sigv4(sent, Credentials("testing", "testing"), "eu-west-1")


def test_cli_sends_local_mode_requests_unsigned(capsys: pytest.CaptureFixture[str]) -> None:
    session, transport = fake_http(lambda sent: (200, {"image_id": "a" * 32, "key": "k"}))

    assert run(["--url", LOCAL, "get", "a" * 32], http=session) == 0

    assert "Authorization" not in transport.sent[0].headers
    assert "k" in capsys.readouterr().out


# --- Errors ----------------------------------------------------------------------------


def test_connection_refused_on_a_local_url_says_to_start_local_mode() -> None:
    session, _ = fake_http(refused)
    err = io.StringIO()

    code = run(["--url", LOCAL, "search", "red"], http=session, stderr=err)

    assert code == 1
    assert err.getvalue() == (
        "imagesearch: error: cannot connect to http://127.0.0.1:8000: connection refused"
        " (is `imagesearch local` running? start it with `make local`)\n"
    )


def test_a_403_from_the_api_is_reported_as_access_denied() -> None:
    message = (
        "User: arn:aws:iam::123456789012:user/bob is not authorized to perform: execute-api:Invoke"
    )
    session, _ = fake_http(lambda sent: (403, {"Message": message}))
    err = io.StringIO()

    code = run(["--url", DEPLOYED, "search", "red"], http=session, stderr=err)

    assert code == 1
    line = err.getvalue()
    assert line.count("\n") == 1
    assert line.startswith(
        "imagesearch: error: access denied by"
        " https://abc123.execute-api.eu-west-1.amazonaws.com (403):"
    )
    assert message in line
    assert "execute-api:Invoke on this API" in line


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (404, {"message": "no image 0123"}, {}, "API error 404: no image 0123"),
        (422, {"message": "top_k: too big"}, {}, "API error 422: top_k: too big"),
        (
            429,
            {"message": "model throttled"},
            {"Retry-After": "2"},
            "throttled (429): model throttled; retry after 2 s",
        ),
        (503, {"message": "model unavailable"}, {}, "API error 503: model unavailable"),
        (502, "<html>Bad Gateway</html>", {}, "API error 502: <html>Bad Gateway</html>"),
    ],
)
def test_api_errors_show_the_message(
    status: int, body: Any, headers: dict[str, str], expected: str
) -> None:
    session, _ = fake_http(lambda sent: (status, body, headers))

    with pytest.raises(ApiError) as raised:
        ApiClient(LOCAL, session=session).post("/search", {"text": "x"})

    assert str(raised.value) == expected
    assert raised.value.status == status


def test_cli_prints_api_error_message_on_one_line_with_exit_code_1() -> None:
    session, _ = fake_http(lambda sent: (404, {"message": "image 0000 not found"}))
    err = io.StringIO()

    code = run(["--url", LOCAL, "get", "0" * 32], http=session, stderr=err)

    assert code == 1
    assert err.getvalue() == "imagesearch: error: API error 404: image 0000 not found\n"


def test_a_non_json_success_body_is_a_clear_error() -> None:
    session, _ = fake_http(lambda sent: (200, "<html>not the api</html>"))

    with pytest.raises(CliError, match="not JSON"):
        ApiClient(LOCAL, session=session).get("/health")


def test_a_timeout_is_one_line() -> None:
    session, _ = fake_http(lambda sent: requests.ReadTimeout("read timed out"))

    with pytest.raises(CliError, match=r"^POST http://127.0.0.1:8000 timed out$"):
        ApiClient(LOCAL, session=session).post("/search", {"text": "x"})


def test_no_credentials_for_a_deployed_url(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no credentials anywhere in the chain
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    session, transport = fake_http(lambda sent: (200, {}))
    err = io.StringIO()

    code = run(["--url", DEPLOYED, "search", "red"], http=session, stderr=err)

    assert code == 1
    assert err.getvalue() == (
        "imagesearch: error: no AWS credentials found: set AWS_PROFILE or run aws configure\n"
    )
    assert transport.sent == []
