"""Fixtures and helpers for the search API integration tests: API Gateway REST proxy
events built the way API Gateway builds them, sent to the real handler, with moto
in-process (the shared ``aws`` fixture) and the fake Bedrock over HTTP.

Import the fixtures into a test module with
``from tests.integration.api_fixtures import api_fixture  # noqa: F401`` (it is
registered under the name ``api``).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from moto import mock_aws

from fakes.bedrock import FakeBedrock
from imagesearch import resources as r
from imagesearch.catalog.dynamodb import DynamoDBCatalog
from imagesearch.embedders.base import Vector, unit_vector
from imagesearch.local.gateway import match_resource
from imagesearch.records import ImageRecord, image_id_for_key
from tests.support.aws import REGION, AwsResources, create_resources
from tests.support.lambda_runtime import FakeLambdaContext

STAGE = "prod"
API_ID = "a1b2c3d4e5"
DOMAIN = f"{API_ID}.execute-api.us-east-1.amazonaws.com"
MODEL_ID = r.CONTEXT_DEFAULTS["modelId"]
DIMENSION = int(r.CONTEXT_DEFAULTS["embeddingDimension"])


def rest_event(
    method: str,
    path: str,
    *,
    body: Any = None,
    raw_body: str | None = None,
    query: dict[str, str | list[str]] | None = None,
    headers: dict[str, str] | None = None,
    base64_encoded: bool = False,
) -> dict[str, Any]:
    """An API Gateway REST (v1) Lambda proxy event, IAM-authenticated."""
    resource, path_parameters = match_resource(path)
    # ``body`` is serialised (and base64-encoded when flagged); ``raw_body`` goes as given.
    text = raw_body
    if body is not None:
        text = json.dumps(body)
        if base64_encoded:
            text = base64.b64encode(text.encode()).decode()
    all_headers = {
        "Accept": "application/json",
        "Host": DOMAIN,
        "User-Agent": "python-requests/2.32",
        "X-Amz-Date": "20250101T000000Z",
        "X-Amzn-Trace-Id": "Root=1-67890abc-0123456789abcdef01234567",
        "X-Forwarded-For": "203.0.113.10",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20250101/us-east-1/"
        "execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
    }
    if text is not None:
        all_headers["Content-Type"] = "application/json"
    all_headers.update(headers or {})
    multi_query = (
        {k: v if isinstance(v, list) else [v] for k, v in query.items()} if query else None
    )
    request_id = str(uuid.uuid4())
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "multiValueHeaders": {k: [v] for k, v in all_headers.items()},
        "queryStringParameters": (
            {k: v[-1] for k, v in multi_query.items()} if multi_query else None
        ),
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": path_parameters,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123",
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": "Ab1CdEFgIAMFxyz=",
            "requestTime": "01/Jan/2025:00:00:00 +0000",
            "path": f"/{STAGE}{path}",
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainPrefix": API_ID,
            "requestTimeEpoch": 1735689600000,
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": "123456789012",
                "cognitoIdentityId": None,
                "caller": "AIDAEXAMPLE",
                "sourceIp": "203.0.113.10",
                "principalOrgId": None,
                "accessKey": "AKIAEXAMPLE",
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": "arn:aws:iam::123456789012:user/tester",
                "userAgent": "python-requests/2.32",
                "user": "AIDAEXAMPLE",
            },
            "domainName": DOMAIN,
            "apiId": API_ID,
        },
        "body": text,
        "isBase64Encoded": base64_encoded,
    }


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str]
    body: Any
    raw: dict[str, Any] = field(repr=False)

    @property
    def message(self) -> str:
        assert isinstance(self.body, dict) and set(self.body) == {"message"}, self.body
        return str(self.body["message"])


@dataclass
class Api:
    """The real search handler behind a tiny client, plus the resources it sees."""

    aws: AwsResources
    bedrock: Any
    catalog: DynamoDBCatalog
    _sequence: int = 0

    def call(self, method: str, path: str, **kwargs: Any) -> ApiResponse:
        from imagesearch.handlers import api

        raw = api.handler(rest_event(method, path, **kwargs), FakeLambdaContext())
        headers = {k.lower(): v for k, v in (raw.get("headers") or {}).items()}
        for name, values in (raw.get("multiValueHeaders") or {}).items():
            headers.setdefault(name.lower(), values[-1])
        text = raw.get("body")
        if raw.get("isBase64Encoded"):
            text = base64.b64decode(text).decode()
        body = json.loads(text) if text else None
        return ApiResponse(int(raw["statusCode"]), headers, body, raw)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> ApiResponse:
        return self.call("POST", path, body=body, **kwargs)

    def get(self, path: str, **kwargs: Any) -> ApiResponse:
        return self.call("GET", path, **kwargs)

    def seed(
        self,
        name: str,
        vector: Vector | None,
        *,
        status: str = r.STATUS_INDEXED,
        body: bytes = b"original",
        **fields: Any,
    ) -> ImageRecord:
        """Object in S3 and record through the real ``DynamoDBCatalog.put``."""
        key = self.aws.upload_prefix + name
        self.aws.s3.put_object(Bucket=self.aws.bucket, Key=key, Body=body)
        self._sequence += 1
        record = ImageRecord(
            image_id=image_id_for_key(key),
            key=key,
            status=status,
            etag="etag",
            size=len(body),
            content_type=fields.pop("content_type", "image/jpeg"),
            width=fields.pop("width", 640),
            height=fields.pop("height", 480),
            uploaded_at="2025-01-01T00:00:00Z",
            indexed_at="2025-01-01T00:00:01Z" if status == r.STATUS_INDEXED else None,
            model_id=MODEL_ID,
            dimension=DIMENSION if vector is not None else None,
            sequencer=f"S{self._sequence:032d}",
            vector=None if vector is None else unit_vector(vector),
            **fields,
        )
        assert self.catalog.put(record)
        return record


def text_vector(bedrock_module: Any, text: str) -> Vector:
    """What the fake Titan returns for ``text`` (unit norm)."""
    return unit_vector(bedrock_module.fake_titan_embedding(text, None, DIMENSION))


def blend(*parts: tuple[float, Vector]) -> Vector:
    total = np.zeros(DIMENSION, dtype=np.float64)
    for weight, vector in parts:
        total += weight * vector.astype(np.float64)
    return unit_vector(total)


def orthogonal_to(vector: Vector, seed: int) -> Vector:
    """A unit vector orthogonal to ``vector`` (Gram-Schmidt on a random one)."""
    rng = np.random.default_rng(seed)
    other = rng.standard_normal(DIMENSION)
    base = vector.astype(np.float64)
    other -= other.dot(base) * base
    return unit_vector(other)


def key_of_url(url: str) -> str:
    """The object key a presigned S3 URL points at (virtual-hosted or path style)."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(url)
    path = unquote(parsed.path.lstrip("/"))
    if not parsed.netloc.startswith("images-test-bucket."):
        path = path.split("/", 1)[1]
    return path


def seconds_valid(url: str) -> float:
    """How long a presigned SigV4 URL stays valid from now (X-Amz-Date + X-Amz-Expires)."""
    from datetime import UTC, datetime
    from urllib.parse import parse_qs, urlparse

    query = parse_qs(urlparse(url).query)
    signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    expires = signed.timestamp() + int(query["X-Amz-Expires"][0])
    return expires - datetime.now(UTC).timestamp()


def quoted(key: str) -> str:
    return quote(key)


@pytest.fixture(name="api")
def api_fixture(
    aws: AwsResources, fake_bedrock: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Api]:
    """The API over moto and the fake Bedrock; dependencies rebuilt for every test."""
    from imagesearch.handlers import api as api_module

    # A second attempt keeps the 429/503 tests fast (botocore backs off between tries).
    monkeypatch.setenv(r.ENV_BEDROCK_MAX_ATTEMPTS, "2")
    api_module.configure(None)
    catalog = DynamoDBCatalog(aws.table)
    yield Api(aws=aws, bedrock=fake_bedrock, catalog=catalog)
    api_module.configure(None)


@pytest.fixture(scope="module")
def _module_api() -> Iterator[Api]:
    """One moto environment, fake Bedrock and warm API for a whole module of read-only
    cases (the bad-input table), with one indexed image to search."""
    from imagesearch.handlers import api as api_module

    with pytest.MonkeyPatch.context() as patch, mock_aws(), FakeBedrock() as bedrock:
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        aws = create_resources()
        for name, value in aws.env(**{r.ENV_BEDROCK_MAX_ATTEMPTS: "2"}).items():
            patch.setenv(name, value)
        patch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", bedrock.endpoint_url)
        api_module.configure(None)
        shared = Api(aws=aws, bedrock=bedrock, catalog=DynamoDBCatalog(aws.table))
        from fakes import bedrock as fake

        shared.seed("shoes/red.jpg", text_vector(fake, "red shoe"))
        yield shared
        api_module.configure(None)


@pytest.fixture(name="shared_api")
def shared_api_fixture(_module_api: Api) -> Api:
    """``_module_api`` with the fake Bedrock's counters and faults cleared."""
    _module_api.bedrock.reset()
    return _module_api
