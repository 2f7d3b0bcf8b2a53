"""Search API Lambda: API Gateway REST proxy events in, JSON out (SPEC section 6).

Thin: Powertools routes validate the request against ``imagesearch.api_models``,
call ``SearchService`` and return its models. Every error becomes
``{"message": ...}`` in one place (the exception handlers below). Local mode serves
this same ``handler`` over plain HTTP.

Dependencies are built on first use and cached for the life of the container;
tests and local mode swap them with ``configure(service)``.
"""

from __future__ import annotations

import binascii
import functools
import json
import logging
import os
import re
import threading
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Depends, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
    ResponseValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit

from imagesearch import __version__
from imagesearch import resources as r
from imagesearch.api_models import (
    DEFAULT_LIST_LIMIT,
    MAX_LIST_LIMIT,
    MAX_PREFIX_CHARS,
    DeleteAccepted,
    ErrorResponse,
    HealthResponse,
    ImageOut,
    ImagePage,
    KeyPrefix,
    ListStatus,
    SearchRequest,
    SearchResponse,
    UploadRequest,
    UploadResponse,
    error_summary,
)
from imagesearch.errors import (
    DYNAMODB_THROTTLING_CODES,
    BadRequest,
    CatalogThrottled,
    HttpStatusError,
    ImageSearchError,
    InternalError,
    InvalidRequest,
    MalformedBody,
    MethodNotAllowed,
    PayloadTooLarge,
    RouteNotFound,
    UnsupportedMediaType,
)
from imagesearch.search import SearchService
from imagesearch.settings import SearchSettings, load_settings

# Lambda refuses synchronous payloads over 6 MB (the event envelope included), and
# base64 in JSON grows an image by a third: anything near the limit is refused
# here with advice, before it becomes an opaque gateway error.
MAX_BODY_BYTES = 5 * 1024 * 1024
# The index hands out cursors of up to ~4.4 KB (two 1,024-byte keys and a prefix).
MAX_CURSOR_CHARS = 8192
# No field takes an integer of more than a few digits; Python refuses to convert
# more than 4,300 (CVE-2020-10735) with a ValueError that is not a JSON error.
MAX_INT_DIGITS = 100

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or r.METRICS_NAMESPACE)


_JSON_TYPES = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def parse_json_body(text: str) -> dict[str, Any]:
    """Body deserializer: size check first, then JSON that must be an object."""
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    if size > MAX_BODY_BYTES:
        raise PayloadTooLarge(
            f"request body is {size} bytes; the limit is {MAX_BODY_BYTES} bytes because Lambda's"
            " synchronous invocation payload limit is 6 MB. Upload the image instead"
            " (POST /uploads, then PUT it to the returned URL) and search by its image_id."
        )
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_int=_bounded_int)
    except json.JSONDecodeError as error:
        raise MalformedBody(
            f"malformed JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        ) from None
    except RecursionError:
        raise MalformedBody("malformed JSON: nested too deeply") from None
    if not isinstance(value, dict):
        kind = _JSON_TYPES.get(type(value), type(value).__name__)
        raise MalformedBody(f"request body must be a JSON object, not {kind}")
    return value


def _reject_constant(name: str) -> Any:
    raise MalformedBody(f"malformed JSON: {name} is not valid JSON")


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise MalformedBody(
            f"request body has an integer of {len(digits.lstrip('-'))} digits;"
            f" at most {MAX_INT_DIGITS} are accepted"
        )
    return int(digits)


_JSON_MEDIA_TYPE = "application/json"
# Any value Powertools does not parse itself: it answers RequestUnsupportedContentType.
_REFUSED_MEDIA_TYPE = "application/x-refused-not-json"


def json_media_type_only(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` with its Content-Type made JSON-or-refused for the body parser.

    Media types are case-insensitive (RFC 9110), so ``APPLICATION/JSON; charset=UTF-8``
    is JSON. Everything else is refused on a route with a body, forms and multipart
    included: Powertools would parse those (a cross-site form needs no CORS preflight)
    and fail with a 500 on a multipart type without a boundary.
    """
    changed: dict[str, Any] = {}
    for field_name in ("headers", "multiValueHeaders"):
        headers = event.get(field_name)
        if not headers:
            continue
        for name, value in headers.items():
            if name.lower() != "content-type":
                continue
            values = value if isinstance(value, list) else [value]
            media_types = {str(v).split(";", 1)[0].strip().lower() for v in values} - {""}
            if not media_types:
                continue  # no media type: read as JSON (a form always names its type)
            canonical = (
                _JSON_MEDIA_TYPE if media_types == {_JSON_MEDIA_TYPE} else _REFUSED_MEDIA_TYPE
            )
            rewritten = [canonical] if isinstance(value, list) else canonical
            changed.setdefault(field_name, dict(headers))[name] = rewritten
    return {**event, **changed} if changed else event


class JsonApiResolver(APIGatewayRestResolver):
    """Powertools' REST resolver, with Content-Type checked the way JSON routes need."""

    def resolve(self, event: Any, context: Any) -> dict[str, Any]:
        if isinstance(event, dict):
            event = json_media_type_only(event)
        return super().resolve(event, context)


app = JsonApiResolver(
    enable_validation=True,
    json_body_deserializer=parse_json_body,
    # A response that fails its own model is our bug, not the caller's: 500.
    response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR,
)

# --- Dependencies -----------------------------------------------------------------


_service_lock = threading.Lock()


@functools.cache
def _default_service() -> SearchService:
    from imagesearch.composition import build_search_service

    return build_search_service(load_settings(SearchSettings))


def get_service() -> SearchService:
    """One service per container, built from the function's environment at first use
    (locked: local mode serves requests from several threads)."""
    with _service_lock:
        return _default_service()


def configure(service: SearchService | None) -> None:
    """Serve ``service`` from now on (tests, local mode); None returns to the default."""
    with _service_lock:
        _default_service.cache_clear()
    if service is None:
        app.dependency_overrides.pop(get_service, None)
    else:
        app.dependency_overrides[get_service] = lambda: service


Service = Annotated[SearchService, Depends(get_service)]

# --- Routes -----------------------------------------------------------------------

SIGV4 = "sigv4"
_AUTH: list[dict[str, list[str]]] = [{SIGV4: []}]
_ROUTES: list[tuple[str, str]] = []  # (method, rule): for 405 versus 404
_ERROR_TEXT = {
    400: "Bad input (malformed JSON, invalid image, bad cursor)",
    403: "Missing or invalid SigV4 signature (answered by API Gateway)",
    404: "Unknown image id",
    413: "Request body or declared upload too large",
    422: "Request does not match the schema",
    429: "The embedding model is throttling: retry after Retry-After seconds",
    503: (
        "The embedding model or the search index is unavailable, or the image table is"
        " throttling: retry after Retry-After"
    ),
    500: "Internal error",
}


def _responses(status: int, model: type, description: str, *errors: int) -> dict[int, Any]:
    documented: dict[int, Any] = {
        status: {"description": description, "content": {"application/json": {"model": model}}}
    }
    for code in errors:
        entry: dict[str, Any] = {
            "description": _ERROR_TEXT[code],
            "content": {"application/json": {"model": ErrorResponse}},
        }
        if code in (429, 503):
            entry["headers"] = {
                "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}
            }
        documented[code] = entry
    return documented


def _route(method: str, rule: str, **kwargs: Any) -> Any:
    _ROUTES.append((method, rule))
    return app.route(rule, method, **kwargs)


# Not validated against the id pattern: SPEC section 6 says any id that names no image,
# well-formed or not, is 404 (the service answers that).
PATH_IMAGE_ID = Path(
    description="32 hex characters, derived from the object key", examples=["0" * 32]
)

PATH_SEARCH = "/search"
PATH_IMAGES = "/images"
PATH_IMAGE = "/images/<image_id>"
PATH_UPLOADS = "/uploads"
PATH_HEALTH = "/health"
PATH_OPENAPI = "/openapi.json"


@_route(
    "POST",
    PATH_SEARCH,
    summary="Search images by text, image, image id, or a weighted mix",
    tags=["search"],
    security=_AUTH,
    responses=_responses(
        200, SearchResponse, "Results, best first", 400, 403, 404, 413, 422, 429, 503
    ),
)
def search(request: Annotated[SearchRequest, Body()], service: Service) -> SearchResponse:
    result = service.search(request)
    metrics.add_metric(name="Searches", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="SearchLatency", unit=MetricUnit.Milliseconds, value=result.took_ms)
    logger.info(
        "search",
        extra={
            "inputs": _input_kinds(request),
            "top_k": request.top_k,
            "filtered": bool(request.prefix or request.content_type)
            or request.min_score is not None,
            "results": result.count,
            "took_ms": result.took_ms,
        },
    )
    return result


@_route(
    "GET",
    PATH_IMAGES,
    summary="List images (indexed and rejected)",
    tags=["images"],
    security=_AUTH,
    responses=_responses(200, ImagePage, "One page of images", 400, 403, 422, 503),
)
def list_images(
    service: Service,
    prefix: Annotated[KeyPrefix | None, Query(max_length=MAX_PREFIX_CHARS)] = None,
    status: Annotated[ListStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = DEFAULT_LIST_LIMIT,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS)] = None,
) -> ImagePage:
    return service.list_images(prefix=prefix, status=status, limit=limit, cursor=cursor)


@_route(
    "GET",
    PATH_IMAGE,
    summary="One image record (no vector) with presigned URLs",
    tags=["images"],
    security=_AUTH,
    responses=_responses(200, ImageOut, "The image", 403, 404, 503),
)
def get_image(image_id: Annotated[str, PATH_IMAGE_ID], service: Service) -> ImageOut:
    return service.get_image(image_id)


@_route(
    "DELETE",
    PATH_IMAGE,
    status_code=202,
    summary="Delete the image: original, record, thumbnail and vector, before answering",
    tags=["images"],
    security=_AUTH,
    responses=_responses(202, DeleteAccepted, "Deletion accepted", 403, 404, 503),
)
def delete_image(image_id: Annotated[str, PATH_IMAGE_ID], service: Service) -> DeleteAccepted:
    result = service.delete_image(image_id)
    logger.info("delete requested", extra={"image_id": image_id})
    return result


@_route(
    "POST",
    PATH_UPLOADS,
    summary="Presigned PUT into the upload prefix",
    tags=["uploads"],
    security=_AUTH,
    responses=_responses(200, UploadResponse, "URL and headers for the PUT", 400, 403, 413, 422),
)
def create_upload(request: Annotated[UploadRequest, Body()], service: Service) -> UploadResponse:
    return service.create_upload(request)


@_route(
    "GET",
    PATH_HEALTH,
    summary="Liveness and the number of indexed images (no auth)",
    tags=["health"],
    responses=_responses(200, HealthResponse, "Healthy", 503),
)
def health(service: Service) -> HealthResponse:
    return service.health()


@_route(
    "GET",
    PATH_OPENAPI,
    summary="This OpenAPI document",
    tags=["health"],
    security=_AUTH,
    responses={
        200: {
            "description": "OpenAPI 3.1 document",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
def openapi():  # no return model: the body is the document itself
    return Response(
        status_code=200,
        content_type="application/json",
        body=openapi_document(_server_url(app.current_event.raw_event)),
    )


@functools.lru_cache(maxsize=4)
def openapi_document(server_url: str | None = None) -> str:
    """The OpenAPI 3.1 document of every route, generated from the request models."""
    # Imported here: the OpenAPI object models cost ~100 ms of cold start otherwise.
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, Server

    schema = app.get_openapi_schema(
        title="Image search API",
        version=__version__,
        description=(
            "Multimodal image search (Amazon Bedrock embeddings). Every route but GET /health"
            " needs an AWS SigV4 signature (service execute-api). Errors are"
            ' {"message": "..."}.'
        ),
        servers=[Server(url=server_url or "/")],
        security_schemes={
            SIGV4: APIKey.model_validate(
                {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "AWS Signature Version 4 (service execute-api)",
                    "openapi_extensions": {"x-amazon-apigateway-authtype": "awsSigv4"},
                }
            )
        },
    )
    document = schema.model_dump(mode="json", by_alias=True, exclude_none=True)
    return json.dumps(_errors_as_documented(document), indent=2)


_POWERTOOLS_ERROR_SCHEMAS = ("HTTPValidationError", "ValidationError", "ResponseValidationError")


def _errors_as_documented(document: dict[str, Any]) -> dict[str, Any]:
    """Powertools documents its own 422/500 bodies; ours are always ErrorResponse."""
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            parameters = operation.get("parameters", [])
            if "requestBody" not in operation and all(p.get("in") == "path" for p in parameters):
                responses.pop("422", None)  # nothing to validate: path ids are never 422
            for code, response in responses.items():
                media = response.get("content", {}).get("application/json", {})
                ref = media.get("schema", {}).get("$ref", "")
                if ref.rsplit("/", 1)[-1] in _POWERTOOLS_ERROR_SCHEMAS:
                    media["schema"] = dict(error_ref)
                    response["description"] = _ERROR_TEXT.get(int(code), response["description"])
                elif not media.get("schema") and "content" in response:
                    media["schema"] = {"type": "object"}
    schemas = document.get("components", {}).get("schemas", {})
    for name in _POWERTOOLS_ERROR_SCHEMAS:
        schemas.pop(name, None)
    return document


def _server_url(event: dict[str, Any]) -> str | None:
    context = event.get("requestContext") or {}
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    host = context.get("domainName") or headers.get("host")
    if not host:
        return None
    local = host.startswith(("127.0.0.1", "localhost", "[::1]"))
    scheme = headers.get("x-forwarded-proto") or ("http" if local else "https")
    stage = context.get("stage")
    stage_in_path = stage and str(context.get("path", "")).startswith(f"/{stage}/")
    return f"{scheme}://{host}/{stage}" if stage_in_path else f"{scheme}://{host}"


def _input_kinds(request: SearchRequest) -> list[str]:
    # Which inputs were used, never their content (no query text or image in logs).
    parts: list[Any] = list(request.queries) if request.queries else [request]
    return sorted(
        {kind for p in parts for kind in ("text", "image", "image_id") if getattr(p, kind)}
    )


# --- Errors: the one place where exceptions become HTTP -------------------------------


def _route_regex(rule: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"<\w+>", "[^/]+", rule) + "/*$")


def _no_route() -> ImageSearchError:
    event = app.current_event
    path, method = event.path, event.http_method.upper()[:16]
    shown = path if len(path) <= 200 else path[:200] + "..."
    allowed = sorted({m for m, rule in _ROUTES if _route_regex(rule).match(path)})
    if allowed:
        return MethodNotAllowed(f"method {method} not allowed on {shown}", allowed)
    return RouteNotFound(f"no route for {method} {shown}")


def _invalid_request(error: RequestValidationError) -> ImageSearchError:
    errors = list(error.errors())
    if any(tuple(e.get("loc", ())) == ("body",) and e.get("type") == "missing" for e in errors):
        return MalformedBody("request body must be a JSON object")
    return InvalidRequest(error_summary(errors))


def as_domain_error(error: Exception) -> ImageSearchError:
    """Any exception as the domain error it stands for: ours as they are, Powertools'
    own (no route, validation, content type) and body decoding translated, anything
    else an InternalError."""
    if isinstance(error, ImageSearchError):
        return error
    if isinstance(error, NotFoundError):
        return _no_route()
    if isinstance(error, RequestValidationError):
        return _invalid_request(error)
    if isinstance(error, RequestUnsupportedContentType):
        return UnsupportedMediaType()
    if isinstance(error, (binascii.Error, UnicodeDecodeError)):
        # Raised while Powertools decodes a body flagged isBase64Encoded.
        return BadRequest("request body is not valid base64-encoded UTF-8 JSON")
    if _dynamodb_throttled(error):
        return CatalogThrottled(str(error))
    if isinstance(error, ServiceError):
        return HttpStatusError(int(error.status_code), str(error.msg))
    if isinstance(error, ResponseValidationError):
        logger.error("response failed its model", extra={"errors": error_summary(error.errors())})
        return InternalError()
    logger.exception("unhandled error")
    return InternalError()


def _dynamodb_throttled(error: Exception) -> bool:
    """A DynamoDB throttling answer, or the catalog's BatchGetItem giving up on keys it
    kept leaving unprocessed (throttling too)."""
    from botocore.exceptions import ClientError

    from imagesearch.catalog.dynamodb import CatalogThrottled as BatchReadThrottled

    if isinstance(error, BatchReadThrottled):
        return True
    if not isinstance(error, ClientError) or error.operation_name not in _CATALOG_OPERATIONS:
        return False
    code = error.response.get("Error", {}).get("Code")
    return code in DYNAMODB_THROTTLING_CODES


# What the API calls on the table (S3 Vectors' own ThrottlingException is not the catalog's).
_CATALOG_OPERATIONS = frozenset(
    {"GetItem", "BatchGetItem", "Query", "Scan", "PutItem", "DescribeTable"}
)


@app.exception_handler(Exception)
def _error_response(exception: Exception) -> Response[Any]:
    """The one exception handler: every error becomes ``{"message": ...}`` with the
    status (and headers) its domain error carries."""
    error = as_domain_error(exception)
    if error.metric:
        metrics.add_metric(name=error.metric, unit=MetricUnit.Count, value=1)
    if error.log_level is not None and not isinstance(error, InternalError):
        # An operator may have to act (model access, region, IAM, a failing index):
        # the details go to the log, the caller gets the public message only.
        log = logger.error if error.log_level >= logging.ERROR else logger.warning
        log(error.log_message, extra={"error": str(error), "status": error.status})
    return Response(
        status_code=error.status,
        content_type="application/json",
        body={"message": error.public_message},
        headers=error.headers,
    )


# --- Entry point ------------------------------------------------------------------------


@dataclass
class LocalContext:
    """Stands in for the Lambda context when local mode calls ``handler`` directly."""

    function_name: str = "imagesearch-local"
    memory_limit_in_mb: int = 0
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:imagesearch-local"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def _handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    metrics.add_metric(name="ApiRequests", unit=MetricUnit.Count, value=1)
    return app.resolve(event, context)


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point (``imagesearch.handlers.api.handler``)."""
    return _handle(event, context if context is not None else LocalContext())
