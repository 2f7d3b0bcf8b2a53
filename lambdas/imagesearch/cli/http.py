"""HTTP client of the search API: JSON in and out, SigV4 for deployed stacks.

Requests to local mode (a loopback, private-network or ``.local`` URL) go unsigned;
everything else is signed for ``execute-api`` with the credentials of the boto3 session
(the standard chain).
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

from imagesearch.cli.errors import ApiError, CliError, UsageError

# (connect, read) seconds: a search embeds the query with Bedrock, allow for it.
DEFAULT_TIMEOUT = (5.0, 60.0)
_LOOPBACK_NAMES = frozenset({"localhost", "::1", "0.0.0.0"})  # noqa: S104  (a name, not a bind)
_EXECUTE_API_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


def is_loopback_url(url: str) -> bool:
    """True for local mode's ``http://127.0.0.1:PORT`` and the like."""
    host = (urlsplit(url).hostname or "").lower()
    return host in _LOOPBACK_NAMES or host.startswith("127.") or host.endswith(".localhost")


def is_local_url(url: str) -> bool:
    """Local mode, on this machine or served to the network with ``--host``: loopback,
    a private or link-local IP address, or an mDNS ``.local`` name. Such URLs go
    unsigned; a deployed API is never reached at one of them."""
    if is_loopback_url(url):
        return True
    host = (urlsplit(url).hostname or "").lower()
    if host.endswith(".local"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_link_local


def region_from_url(url: str) -> str | None:
    """The region of an ``https://ID.execute-api.REGION.amazonaws.com/...`` URL."""
    match = _EXECUTE_API_HOST.search(urlsplit(url).hostname or "")
    return match.group(1) if match else None


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--url must be an http(s) URL such as http://127.0.0.1:8000, not {url!r}")
    return url.rstrip("/")


class SigV4Signer:
    """Signs requests for API Gateway with credentials from botocore's chain."""

    def __init__(self, credentials: Any, region: str, *, service: str = "execute-api") -> None:
        self._credentials = credentials
        self.region = region
        self.service = service

    def sign(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> dict[str, str]:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url, data=body or b"", headers=dict(headers))
        # Frozen per request: refreshable credentials (SSO, assumed roles) rotate.
        frozen = self._credentials.get_frozen_credentials()
        SigV4Auth(frozen, self.service, self.region).add_auth(request)
        return dict(request.headers.items())


class ApiClient:
    """Calls the search API; raises CliError/ApiError with a readable message."""

    def __init__(
        self,
        base_url: str,
        *,
        session: requests.Session | None = None,
        signer: SigV4Signer | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session or requests.Session()
        self.signer = signer
        self.timeout = timeout

    @property
    def signed(self) -> bool:
        return self.signer is not None

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.request("POST", path, body=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        url = self.base_url + path
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if query:
            url += "?" + urlencode(query)
        data = json.dumps(body).encode("utf-8") if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.signer is not None:
            headers = self.signer.sign(method, url, data, headers)
        response = send(self.session, method, url, data=data, headers=headers, timeout=self.timeout)
        if response.status_code >= 400:
            raise api_error(response, self.base_url)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as error:
            raise CliError(
                f"{self.base_url} answered {method} {path} with something that is not JSON"
                " (is --url the search API?)"
            ) from error


def send(session: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
    """``session.request`` with connection failures turned into one readable line."""
    try:
        return session.request(method, url, **kwargs)
    except requests.Timeout as error:
        raise CliError(f"{method} {_origin(url)} timed out") from error
    except requests.ConnectionError as error:
        raise CliError(connection_message(url, error)) from error


def connection_message(url: str, error: BaseException) -> str:
    origin = _origin(url)
    text = str(error)
    if "refused" in text.lower() or _caused_by(error, ConnectionRefusedError):
        hint = (
            " (is `imagesearch local` running? start it with `make local`)"
            if is_loopback_url(url)
            else ""
        )
        return f"cannot connect to {origin}: connection refused{hint}"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return f"cannot connect to {origin}: host not found"
    return f"cannot connect to {origin}: {text[:300]}"


def api_error(response: requests.Response, base_url: str) -> ApiError:
    status = response.status_code
    message = _error_message(response)
    if status in (401, 403):
        text = (
            f"access denied by {_origin(base_url)} ({status}): {message}. The credentials"
            " need execute-api:Invoke on this API"
        )
        if "Missing Authentication Token" in message:
            text = (
                f"access denied by {_origin(base_url)} ({status}): {message}. The request was"
                " not signed or the route does not exist: check the URL"
            )
        return ApiError(text, status=status)
    if status == 429:
        retry = response.headers.get("Retry-After")
        suffix = f"; retry after {retry} s" if retry else ""
        return ApiError(f"throttled (429): {message}{suffix}", status=status)
    return ApiError(f"API error {status}: {message}", status=status)


def _error_message(response: requests.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        for name in ("message", "Message", "error"):
            if isinstance(payload.get(name), str) and payload[name]:
                return str(payload[name])
    text = (response.text or "").strip()
    return text[:300] if text else (response.reason or "no details")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return True
        stack.extend([current.__cause__, current.__context__])
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return False
