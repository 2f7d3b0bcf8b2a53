"""A small stand-in for API Gateway (REST, Lambda proxy integration) on 127.0.0.1.

Each HTTP request becomes the proxy event API Gateway would send (resource
template, path and query parameters with their multi-value forms, headers, body,
``isBase64Encoded``) and the real API handler's response becomes the HTTP
response. No auth (the deployed API uses IAM). Besides the API routes it serves
the web page at ``/`` and two local-only routes under ``/local/``.

Without auth, the browser is the threat: a request whose ``Host`` is not one this
server answers to is refused (DNS rebinding: a hostile name resolved to 127.0.0.1),
and so is any state-changing request another web origin sends (a cross-site form
needs no CORS preflight). Loopback hosts only, unless ``--host`` says otherwise.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from imagesearch import resources as r
from imagesearch.local.hosts import (  # noqa: F401  (allowed_hosts: the gateway's API)
    LOOPBACK_HOSTS,
    WILDCARD_HOSTS,
    allowed_hosts,
    host_name,
)
from imagesearch.local.lambda_runtime import FakeLambdaContext

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]

# Larger bodies never reach the deployed function (Lambda's synchronous payload limit;
# API Gateway's own 10 MB lets them through to a failed invoke): refused up front.
MAX_BODY_BYTES = r.API_PAYLOAD_LIMIT_BYTES
# Methods a page of another origin can send without a CORS preflight change state here.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# What the API and the page use; anything else (TRACE, CONNECT, WebDAV...) is a JSON 405.
KNOWN_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# On every response: no other site may frame the page (clickjacking its delete buttons).
NO_FRAMING = (
    ("Content-Security-Policy", "frame-ancestors 'none'"),
    ("X-Frame-Options", "DENY"),
)
API_FUNCTION_NAME = "imagesearch-local-api"
STAGE = "local"
# The API's resources (SPEC section 6); anything else reaches the handler as a
# greedy proxy resource so the handler's own router answers (404).
RESOURCES = tuple(dict.fromkeys(path for path, _, _ in r.API_ROUTES))
PROXY_RESOURCE = "/{proxy+}"
WEB_ROOT = Path(__file__).resolve().parent / "web"
_STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
_HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "keep-alive"}


def _template_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^/{}]+\})", template)
    regex = "".join(
        f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") else re.escape(part) for part in parts
    )
    return re.compile(f"^{regex}$")


_PATTERNS = [(template, _template_pattern(template)) for template in RESOURCES]


def match_resource(path: str) -> tuple[str, dict[str, str] | None]:
    """The resource template of ``path`` and its (decoded) path parameters."""
    for template, pattern in _PATTERNS:
        found = pattern.match(path)
        if found:
            params = {name: unquote(value) for name, value in found.groupdict().items()}
            return template, params or None
    return PROXY_RESOURCE, {"proxy": unquote(path.lstrip("/"))}


def proxy_event(
    *,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
) -> dict[str, Any]:
    """The API Gateway REST proxy event of one request. ``path`` keeps its percent
    encoding, path and query parameters are decoded, as API Gateway does."""
    split = urlsplit(target)
    path = split.path or "/"
    resource, path_parameters = match_resource(path)
    query = parse_qsl(split.query, keep_blank_values=True)
    multi_query: dict[str, list[str]] = {}
    for name, value in query:
        multi_query.setdefault(name, []).append(value)
    multi_headers: dict[str, list[str]] = {}
    for name, value in [*headers, ("X-Forwarded-For", source_ip), ("X-Forwarded-Proto", "http")]:
        multi_headers.setdefault(name, []).append(value)
    text, is_base64 = _body_text(body)
    now = datetime.now(UTC)
    request_id = str(uuid.uuid4())
    host = next((value for name, value in headers if name.lower() == "host"), "127.0.0.1")
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": {name: values[-1] for name, values in multi_headers.items()},
        "multiValueHeaders": multi_headers,
        "queryStringParameters": {n: v[-1] for n, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            # The routes are at the root here (no stage in the URL), as behind a custom
            # domain: the handler builds the OpenAPI server URL from this.
            "path": path,
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainPrefix": host.split(".")[0],
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": next(
                    (value for name, value in headers if name.lower() == "user-agent"), None
                ),
                "user": None,
            },
            "domainName": host,
            "apiId": "local",
        },
        "body": text,
        "isBase64Encoded": is_base64,
    }


def _body_text(body: bytes) -> tuple[str | None, bool]:
    # Text (JSON) arrives as a string; anything that is not UTF-8 as base64,
    # like API Gateway with binary media types.
    if not body:
        return None, False
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), True


def response_parts(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body bytes of a Lambda proxy response. A malformed one
    is a 502, as API Gateway answers."""
    if not isinstance(response, dict) or not isinstance(response.get("statusCode"), int):
        logger.error("the API handler returned a malformed proxy response")
        return _json_parts(HTTPStatus.BAD_GATEWAY, "Internal server error")
    merged: dict[str, tuple[str, list[str]]] = {}
    for name, value in (response.get("headers") or {}).items():
        merged[name.lower()] = (name, [str(value)])
    # As in API Gateway, multiValueHeaders win over headers for the same name.
    for name, values in (response.get("multiValueHeaders") or {}).items():
        merged[name.lower()] = (name, [str(value) for value in values])
    headers = [
        (name, value)
        for lowered, (name, values) in merged.items()
        if lowered not in _HOP_BY_HOP
        for value in values
    ]
    body = response.get("body") or ""
    data = base64.b64decode(body) if response.get("isBase64Encoded") else str(body).encode()
    return response["statusCode"], headers, data


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in headers if key.lower() == name), None)


def _json_parts(status: int, message: str) -> tuple[int, list[tuple[str, str]], bytes]:
    body = json.dumps({"message": message}).encode()
    return int(status), [("Content-Type", "application/json")], body


class Gateway:
    """Routes requests: web page, local-only routes, everything else to the API handler."""

    def __init__(
        self,
        api_handler: Handler,
        *,
        local_routes: Mapping[str, Callable[[], dict[str, Any]]],
        region: str,
        hosts: frozenset[str] | None = LOOPBACK_HOSTS,
    ) -> None:
        self._api_handler = api_handler
        self._local_routes = local_routes
        self._region = region
        self._hosts = hosts  # None: any Host header (listening on every interface)
        # One warm Lambda instance handles one request at a time; the handler's
        # in-memory index and caches are written with that assumption.
        self._invoke_lock = threading.Lock()
        self._static = {
            f"/static/{path.name}": path for path in WEB_ROOT.iterdir() if path.is_file()
        }
        self._static["/"] = WEB_ROOT / "index.html"

    def handle(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, source_ip: str
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        status, response_headers, data = self._handle(method, target, headers, body, source_ip)
        return status, [*response_headers, *NO_FRAMING], data

    def _handle(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, source_ip: str
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        refused = self._refusal(method, headers)
        if refused is not None:
            return refused
        if method not in KNOWN_METHODS:
            status, response_headers, data = _json_parts(
                HTTPStatus.METHOD_NOT_ALLOWED, f"method {method[:20]} is not allowed"
            )
            return status, [*response_headers, ("Allow", ", ".join(KNOWN_METHODS))], data
        path = urlsplit(target).path
        if method in ("GET", "HEAD") and path in self._static:
            return self._static_file(self._static[path])
        if path in self._local_routes:
            if method != "GET":
                return _json_parts(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed")
            return self._local(path)
        event = proxy_event(
            method=method, target=target, headers=headers, body=body, source_ip=source_ip
        )
        context = FakeLambdaContext(API_FUNCTION_NAME, region=self._region, timeout_seconds=29)
        try:
            with self._invoke_lock:
                response = self._api_handler(event, context)
        except Exception:
            # API Gateway shows a failed invocation as a bare 502; the terminal
            # gets the traceback, which is what a developer needs here.
            logger.exception("the API handler failed on %s %s", method, path)
            return _json_parts(HTTPStatus.BAD_GATEWAY, "Internal server error")
        return response_parts(response)

    def _refusal(
        self, method: str, headers: list[tuple[str, str]]
    ) -> tuple[int, list[tuple[str, str]], bytes] | None:
        host = _header(headers, "host")
        if host is not None and self._hosts is not None and host_name(host) not in self._hosts:
            # 421: this server does not answer for that name (DNS rebinding).
            return _json_parts(
                HTTPStatus.MISDIRECTED_REQUEST,
                f"host {host[:100]!r} is not served here: use http://127.0.0.1 or "
                "localhost (or start local mode with --host)",
            )
        origin = _header(headers, "origin")
        # Browsers send Origin with every cross-site POST/DELETE: only this server's
        # own page may change anything (a form elsewhere needs no preflight).
        if (
            method not in _SAFE_METHODS
            and origin is not None
            and (host is None or origin.rstrip("/").lower() != f"http://{host.lower()}")
        ):
            return _json_parts(
                HTTPStatus.FORBIDDEN,
                f"cross-origin {method} refused: local mode accepts changes only "
                "from its own page (or from clients that send no Origin)",
            )
        return None

    def _local(self, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        try:
            payload = self._local_routes[path]()
        except (BotoCoreError, ClientError) as error:
            logger.warning("%s failed: %s", path, error)
            return _json_parts(HTTPStatus.SERVICE_UNAVAILABLE, f"{path} failed: {error}")
        return 200, [("Content-Type", "application/json")], json.dumps(payload).encode()

    @staticmethod
    def _static_file(path: Path) -> tuple[int, list[tuple[str, str]], bytes]:
        content_type = _STATIC_TYPES.get(path.suffix, "application/octet-stream")
        headers = [("Content-Type", content_type), ("Cache-Control", "no-cache")]
        return 200, headers, path.read_bytes()


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the page and the benchmark reuse connections
    # Headers and body leave in two writes: with Nagle's algorithm the body waits
    # for the client's delayed ACK of the headers, 40 ms on Linux, every response.
    disable_nagle_algorithm = True
    server_version = "imagesearch-local"
    gateway: Gateway  # set on the subclass made per server

    def _serve(self) -> None:
        started = time.perf_counter()
        length_header = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            # API Gateway needs the length up front as well.
            self._send(*_json_parts(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required"))
            self.close_connection = True
            return
        try:
            length = int(length_header) if length_header else 0
        except ValueError:
            length = -1
        if length < 0:
            self._send(*_json_parts(HTTPStatus.BAD_REQUEST, "invalid Content-Length"))
            self.close_connection = True
            return
        if length > MAX_BODY_BYTES:
            # Refused unread, so the connection cannot be reused.
            self._send(
                *_json_parts(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    f"request body is {length} bytes: the API accepts at most "
                    f"{r.API_PAYLOAD_LIMIT_TEXT} ({MAX_BODY_BYTES} bytes); upload images "
                    "larger than that with POST /uploads",
                )
            )
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        status, headers, data = self.gateway.handle(
            self.command, self.path, list(self.headers.items()), body, self.client_address[0]
        )
        self._send(status, headers, data)
        logger.debug(
            "%s %s -> %d (%.1f ms)",
            self.command,
            self.path,
            status,
            (time.perf_counter() - started) * 1000,
        )

    def _send(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE...) reaches the gateway too, which answers a JSON 405
        # (the standard library would send an HTML 501).
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-request is routine, not a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class GatewayServer:
    """A threading HTTP server for a ``Gateway``. Binds in the constructor, so a
    busy port fails before anything else starts; serves from ``start``."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 8000) -> None:
        self._handler_class: type[_RequestHandler] = type("RequestHandler", (_RequestHandler,), {})
        self._server = _QuietServer((host, port), self._handler_class)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="http-gateway", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self, gateway: Gateway) -> None:
        self._handler_class.gateway = gateway
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(10)
        self._server.server_close()
