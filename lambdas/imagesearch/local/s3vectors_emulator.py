"""An Amazon S3 Vectors emulator for local mode, tests and benchmarks (moto has no
``QueryVectors``).

It speaks the service's REST-JSON protocol on 127.0.0.1 (``POST /<Operation>``), so
boto3's ``s3vectors`` client reaches it through ``AWS_ENDPOINT_URL_S3VECTORS`` and
the adapter under test is the deployed code. Every request is checked against
botocore's service model (required members, types, lengths, ranges, enums) and the
documented limits (dimension 1-4,096, ``topK`` 1-100, <= 500 vectors per put and
delete, <= 100 keys per get, metadata <= 40 KB and <= 50 keys per vector, filterable
metadata <= 2 KB, <= 10 non-filterable keys per index, 20 MiB per request, filter
operators), and names as the service documents them (vector bucket: 3-63 of ``a-z0-9-``;
index: 3-63 of ``a-z0-9-.``; both start and end with a letter or digit; ARNs against
the model's patterns), answered as ``ValidationException`` with a ``message`` and the
``fieldList`` the model declares. The vector data of a put is checked in bulk (numpy: a flat list of
numbers, finite, of the index's dimension) and botocore's validator walks the rest of
the request with a one-value stand-in for each list, so a put of 500 x 1,024 floats is
not validated one Python call per float. Errors are
answered in the service's wire format (``x-amzn-ErrorType`` header and a JSON
``message``), so botocore raises ``ClientError`` with the service's error code.
Every vector is scored exactly (cosine distance ``1 - cos``, or euclidean), equal
distances ordered by key; the service itself searches approximately (AWS states average
recall above 90 %), which no emulator reproduces.

Index modes: an ``ENHANCED`` index (and a query with ``queryMode=ENHANCED``) filters
first, then ranks what matches. A ``CLASSIC`` one filters during the search: modelled as
a search among the ``classic_candidates`` nearest vectors (at least ``topK``) that
keeps those matching the filter, so a narrow filter returns fewer than ``topK`` (or
none) although more vectors match. New indexes take their bucket's default mode:
``CLASSIC`` for a bucket created before 2026-09-30, ``ENHANCED`` after (the service's
rule; the service's ``clock`` decides, so tests make older buckets).
``UpdateIndexMode`` and ``PutVectorBucketDefaultIndexMode`` change them; ``CLASSIC`` is
refused for a bucket created after that day (documented for UpdateIndexMode, taken for
the bucket default too) and ``queryMode=CLASSIC`` on an ``ENHANCED`` index.

Filters follow the documented operators; where the documentation is silent the
emulator takes MongoDB's reading (``$ne``/``$nin`` also match a vector without the
key; comparisons and ``$in`` against a list match when any element does).

``ListVectors`` pages end at ``maxResults`` (<= 1,000) or when the response would pass
1 MiB (each vector's JSON: key, and data and metadata when asked for), whichever comes
first; a page always holds at least one vector. The token is the last key listed, so a
listing stays correct while the listed vectors are deleted.

Throttling, off unless asked for (``limit_writes``): the service's per-index write
limits (2,500 vectors/s and 1,000 PutVectors/DeleteVectors requests/s, token buckets of
one second on an injectable clock) answered with ``TooManyRequestsException`` (429).
``fail_next`` injects faults: the next N calls of an operation answer an error of the
model (``TooManyRequestsException`` 429, ``ServiceUnavailableException`` 503, ...).

State lives in memory; ``save``/``load`` keep it across local-mode restarts.
"""

from __future__ import annotations

import base64
import json
import logging
import pickle
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

REGION = "us-east-1"
ACCOUNT = "123456789012"

MAX_DIMENSION = 4096
MAX_TOP_K = 100
MAX_PUT = 500
MAX_DELETE = 500
MAX_GET = 100
MAX_LIST = 1000
MAX_SEGMENTS = 16
MAX_PAYLOAD_BYTES = 20 * 1024 * 1024
MAX_METADATA_BYTES = 40 * 1024
MAX_FILTERABLE_METADATA_BYTES = 2 * 1024
MAX_METADATA_KEYS = 50
MAX_NON_FILTERABLE_KEYS = 10
MAX_LIST_RESPONSE_BYTES = 1024 * 1024  # a ListVectors response (the service's 1 MB)
_TOKEN_ROOM = 4096  # the nextToken member (<= 2,048 characters) and its name
# The service's per-index write limits (PutVectors and DeleteVectors together).
SERVICE_VECTORS_PER_SECOND = 2500.0
SERVICE_WRITE_REQUESTS_PER_SECOND = 1000.0
WRITE_OPERATIONS = ("PutVectors", "DeleteVectors")

# Naming rules of the S3 Vectors documentation (the model gives lengths only).
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_INDEX_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_NAME_RULES = {
    "vectorBucketName": (
        _BUCKET_NAME,
        "3-63 characters: lowercase letters, numbers and hyphens, starting and ending"
        " with a letter or number",
    ),
    "indexName": (
        _INDEX_NAME,
        "3-63 characters: lowercase letters, numbers, hyphens and dots, starting and"
        " ending with a letter or number",
    ),
}

CLASSIC = "CLASSIC"
ENHANCED = "ENHANCED"
# Vector buckets created from this day on default to ENHANCED indexes (2026-09-30 UTC).
ENHANCED_DEFAULT_FROM = 1_790_726_400.0
# CLASSIC filters during the search: how many nearest vectors it considers (>= topK).
CLASSIC_CANDIDATES = 100

_COMPARISONS = ("$gt", "$gte", "$lt", "$lte")
_OPERATORS = ("$eq", "$ne", "$in", "$nin", "$exists", *_COMPARISONS)


class ServiceError(Exception):
    """An error answered to the client in the service's wire format."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int = 400,
        fields: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.fields = fields  # ValidationException's fieldList (path, message)

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message}
        if self.fields:
            body["fieldList"] = self.fields
        return body


def _invalid(message: str) -> ServiceError:
    return ServiceError("ValidationException", message)


def _invalid_field(path: str, value: Any, constraint: str) -> ServiceError:
    """The smithy shape of a constraint failure: one message, one fieldList entry."""
    problem = f"Value '{value}' at '{path}' failed to satisfy constraint: {constraint}"
    return ServiceError(
        "ValidationException",
        f"1 validation error detected: {problem}",
        fields=[{"path": path, "message": problem}],
    )


class _TokenBucket:
    """``rate`` a second, holding at most one second's worth. A request larger than
    the bucket is let through when it is full (it then owes the difference), so no
    request is refused forever."""

    def __init__(self, rate: float, now: float) -> None:
        if rate <= 0:
            raise ValueError("a rate must be positive")
        self.rate = rate
        self.tokens = rate
        self.updated = now

    def available(self, amount: float, now: float) -> bool:
        self.tokens = min(self.rate, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return self.tokens >= min(amount, self.rate)

    def take(self, amount: float) -> None:
        self.tokens -= amount


@dataclass
class _WriteLimiter:
    vectors: _TokenBucket | None
    requests: _TokenBucket | None

    def admit(self, vectors: int, now: float) -> bool:
        buckets = [(b, n) for b, n in ((self.vectors, vectors), (self.requests, 1)) if b]
        if not all(bucket.available(amount, now) for bucket, amount in buckets):
            return False
        for bucket, amount in buckets:
            bucket.take(amount)
        return True


# -- the filter language ------------------------------------------------------------


def _is_primitive(value: Any) -> bool:
    return isinstance(value, str | bool | int | float)


def _same(a: Any, b: Any) -> bool:
    # JSON true is not 1: booleans only equal booleans.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return bool(a == b)


def _elements(stored: Any) -> list[Any]:
    return list(stored) if isinstance(stored, list) else [stored]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_filter(expression: Any, filterable: Callable[[str], bool]) -> None:
    """Raise ServiceError (ValidationException) for a malformed filter."""
    if not isinstance(expression, dict) or not expression:
        raise _invalid("Invalid filter: a filter is a non-empty JSON object")
    for name, value in expression.items():
        if name in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise _invalid(f"Invalid filter: {name} takes a non-empty array of filters")
            for part in value:
                validate_filter(part, filterable)
        elif name.startswith("$"):
            raise _invalid(f"Invalid filter: unsupported operator {name}")
        else:
            if not filterable(name):
                raise _invalid(f"Invalid filter: metadata key {name} is not filterable")
            _validate_condition(name, value)


def _validate_condition(name: str, condition: Any) -> None:
    if _is_primitive(condition):
        return
    if not isinstance(condition, dict) or len(condition) != 1:
        raise _invalid(f"Invalid filter on {name}: one operator per key")
    ((operator, operand),) = condition.items()
    if operator not in _OPERATORS:
        raise _invalid(f"Invalid filter on {name}: unsupported operator {operator}")
    if operator in ("$eq", "$ne") and not _is_primitive(operand):
        raise _invalid(f"Invalid filter on {name}: {operator} takes a string, number or boolean")
    if operator in _COMPARISONS and not _is_number(operand):
        raise _invalid(f"Invalid filter on {name}: {operator} takes a number")
    if operator in ("$in", "$nin") and (
        not isinstance(operand, list) or not operand or not all(map(_is_primitive, operand))
    ):
        raise _invalid(f"Invalid filter on {name}: {operator} takes a non-empty array")
    if operator == "$exists" and not isinstance(operand, bool):
        raise _invalid(f"Invalid filter on {name}: $exists takes a boolean")


def matches(expression: dict[str, Any], metadata: dict[str, Any]) -> bool:
    """Whether a vector's metadata satisfies a (validated) filter."""
    for name, value in expression.items():
        if name == "$and":
            if not all(matches(part, metadata) for part in value):
                return False
        elif name == "$or":
            if not any(matches(part, metadata) for part in value):
                return False
        elif not _condition(metadata, name, value):
            return False
    return True


def _condition(metadata: dict[str, Any], name: str, condition: Any) -> bool:
    present = name in metadata
    stored = metadata.get(name)
    if not isinstance(condition, dict):
        condition = {"$eq": condition}
    ((operator, operand),) = condition.items()
    if operator == "$exists":
        return present is operand
    if operator == "$ne":
        return not present or not any(_same(e, operand) for e in _elements(stored))
    if operator == "$nin":
        return not present or not any(_same(e, o) for e in _elements(stored) for o in operand)
    if not present:
        return False
    elements = _elements(stored)
    if operator == "$eq":
        return any(_same(e, operand) for e in elements)
    if operator == "$in":
        return any(_same(e, o) for e in elements for o in operand)
    numbers = [e for e in elements if _is_number(e)]
    if operator == "$gt":
        return any(e > operand for e in numbers)
    if operator == "$gte":
        return any(e >= operand for e in numbers)
    if operator == "$lt":
        return any(e < operand for e in numbers)
    return any(e <= operand for e in numbers)  # $lte


# -- state --------------------------------------------------------------------------


@dataclass
class Index:
    bucket: str
    name: str
    dimension: int
    metric: str
    non_filterable: tuple[str, ...]
    created: float
    rows: dict[str, int] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    metadata: list[dict[str, Any]] = field(default_factory=list)
    matrix: npt.NDArray[np.float32] = field(
        default_factory=lambda: np.zeros((0, 1), dtype=np.float32)
    )
    # A default, so that an index saved before modes were emulated loads as CLASSIC.
    mode: str = CLASSIC

    # Keys in order for ListVectors, sorted again only after new keys arrive (a
    # deleted key is skipped while listing), so a listing is not a sort per page.
    _ordered: list[str] | None = field(default=None, repr=False, compare=False)

    def keys_after(self, after: str) -> Iterator[str]:
        """Held keys greater than ``after``, in order."""
        import bisect

        ordered = getattr(self, "_ordered", None)  # absent from states saved before it
        if ordered is None:
            ordered = self._ordered = sorted(self.rows)
        for position in range(bisect.bisect_right(ordered, after), len(ordered)):
            key = ordered[position]
            if key in self.rows:
                yield key

    @property
    def arn(self) -> str:
        return f"arn:aws:s3vectors:{REGION}:{ACCOUNT}:bucket/{self.bucket}/index/{self.name}"

    def put(self, key: str, vector: npt.NDArray[np.float32], metadata: dict[str, Any]) -> None:
        row = self.rows.get(key)
        if row is None:
            row = len(self.keys)
            if row == self.matrix.shape[0]:
                grown = np.zeros((max(64, row * 2), self.dimension), dtype=np.float32)
                grown[:row] = self.matrix[:row]
                self.matrix = grown
            self.rows[key] = row
            self.keys.append(key)
            self.metadata.append(metadata)
            self._ordered = None
        else:
            self.metadata[row] = metadata
        self.matrix[row] = vector

    def remove(self, key: str) -> None:
        row = self.rows.pop(key, None)
        if row is None:
            return
        last = len(self.keys) - 1
        if row != last:
            moved = self.keys[last]
            self.matrix[row] = self.matrix[last]
            self.keys[row] = moved
            self.metadata[row] = self.metadata[last]
            self.rows[moved] = row
        self.keys.pop()
        self.metadata.pop()

    def distances(self, query: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        live = self.matrix[: len(self.keys)].astype(np.float64)
        if self.metric == "cosine":
            norms = np.sqrt(np.einsum("ij,ij->i", live, live)) * float(np.linalg.norm(query))
            return np.asarray(1.0 - (live @ query) / norms)
        return np.asarray(np.sqrt(np.einsum("ij,ij->i", live - query, live - query)))


@dataclass
class Bucket:
    name: str
    created: float
    encryption: dict[str, Any]
    indexes: dict[str, Index] = field(default_factory=dict)
    default_index_mode: str = CLASSIC

    @property
    def allows_classic(self) -> bool:
        return self.created < ENHANCED_DEFAULT_FROM

    @property
    def arn(self) -> str:
        return f"arn:aws:s3vectors:{REGION}:{ACCOUNT}:bucket/{self.name}"


# -- the service --------------------------------------------------------------------


class S3VectorsService:
    """The operations, on plain request dicts (validated first)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] | None = None,
        classic_candidates: int = CLASSIC_CANDIDATES,
    ) -> None:
        import botocore.session
        from botocore.validate import ParamValidator

        self._model = botocore.session.get_session().get_service_model("s3vectors")
        self._validator = ParamValidator()
        self._lock = threading.RLock()
        self.buckets: dict[str, Bucket] = {}
        self.calls: list[str] = []  # operations carried out
        self._clock = clock or _now
        self.classic_candidates = classic_candidates
        self.query_page_size: int | None = None  # QueryVectors results per page (None: all)
        self.refused: list[tuple[str, str]] = []  # (operation, error code): throttled, faults
        self._write_rates: tuple[float | None, float | None] = (None, None)
        self._limiters: dict[tuple[str, str], _WriteLimiter] = {}
        self._faults: dict[str, list[str]] = {}

    # test and benchmark controls

    def limit_writes(
        self,
        vectors_per_second: float | None = SERVICE_VECTORS_PER_SECOND,
        requests_per_second: float | None = SERVICE_WRITE_REQUESTS_PER_SECOND,
    ) -> None:
        """Throttle PutVectors and DeleteVectors per index as the service does (None:
        that limit off; both None: no throttling, the default)."""
        with self._lock:
            self._write_rates = (vectors_per_second, requests_per_second)
            self._limiters.clear()

    def fail_next(
        self, operation: str, count: int = 1, code: str = "TooManyRequestsException"
    ) -> None:
        """The next ``count`` calls of ``operation`` answer ``code`` (an error of the
        model, with its HTTP status) before doing anything."""
        if operation not in self._model.operation_names:
            raise ValueError(f"unknown operation {operation}")
        if code not in {shape.name for shape in self._model.error_shapes}:
            raise ValueError(f"{code} is not an error of the s3vectors model")
        with self._lock:
            self._faults.setdefault(operation, []).extend([code] * count)

    def handle(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        if operation not in self._model.operation_names:
            raise ServiceError("UnknownOperationException", f"unknown operation {operation}", 404)
        self._injected_fault(operation)
        shape = self._model.operation_model(operation).input_shape
        checked = _vector_lists(params) if operation == "PutVectors" else {}
        shaped = _with_stand_ins(params, checked) if checked else params
        report = self._validator.validate(shaped, shape)
        if report.has_errors():
            raise _invalid(report.generate_report())
        _check_constraints(shaped, shape, "")
        _check_names(params)
        if checked:  # the operation reads the arrays already made
            params = _with_arrays(params, checked)
        method = getattr(self, "_" + _snake(operation), None)
        if method is None:
            raise ServiceError(
                "UnknownOperationException", f"{operation} is not emulated", status=501
            )
        with self._lock:
            if operation in WRITE_OPERATIONS:
                self._throttle(operation, params)
            self.calls.append(operation)
            result: dict[str, Any] = method(params)
            return result

    def _injected_fault(self, operation: str) -> None:
        with self._lock:
            waiting = self._faults.get(operation)
            if not waiting:
                return
            code = waiting.pop(0)
            self.refused.append((operation, code))
        error = self._model.shape_for(code).metadata.get("error", {})
        raise ServiceError(code, f"injected fault: {code}", error.get("httpStatusCode", 400))

    def _throttle(self, operation: str, params: dict[str, Any]) -> None:
        vectors_rate, requests_rate = self._write_rates
        if vectors_rate is None and requests_rate is None:
            return
        index = self._index(params)  # a missing index is NotFound, not throttled
        now = self._clock()
        limiter = self._limiters.get((index.bucket, index.name))
        if limiter is None:
            limiter = _WriteLimiter(
                _TokenBucket(vectors_rate, now) if vectors_rate else None,
                _TokenBucket(requests_rate, now) if requests_rate else None,
            )
            self._limiters[(index.bucket, index.name)] = limiter
        amount = len(params["vectors"] if operation == "PutVectors" else params["keys"])
        if not limiter.admit(amount, now):
            self.refused.append((operation, "TooManyRequestsException"))
            raise ServiceError(
                "TooManyRequestsException",
                f"Too many requests: the write rate of index {index.name} is over its limit",
                status=429,
            )

    # buckets and indexes

    def _create_vector_bucket(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params["vectorBucketName"]
        if name in self.buckets:
            raise ServiceError("ConflictException", f"vector bucket {name} exists", 409)
        bucket = Bucket(
            name, self._clock(), params.get("encryptionConfiguration", {"sseType": "AES256"})
        )
        bucket.default_index_mode = CLASSIC if bucket.allows_classic else ENHANCED
        self.buckets[name] = bucket
        return {"vectorBucketArn": bucket.arn}

    def _get_vector_bucket(self, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self._bucket(params)
        return {
            "vectorBucket": {
                "vectorBucketName": bucket.name,
                "vectorBucketArn": bucket.arn,
                "creationTime": bucket.created,
                "encryptionConfiguration": bucket.encryption,
                "defaultIndexMode": bucket.default_index_mode,
            }
        }

    def _put_vector_bucket_default_index_mode(self, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self._bucket(params)
        mode = params.get("defaultIndexMode")
        if mode is None:
            raise _invalid("defaultIndexMode is required")
        _check_mode_allowed(bucket, mode)
        bucket.default_index_mode = mode
        return {}

    def _list_vector_buckets(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "vectorBuckets": [
                {"vectorBucketName": b.name, "vectorBucketArn": b.arn, "creationTime": b.created}
                for b in self.buckets.values()
            ]
        }

    def _delete_vector_bucket(self, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self._bucket(params)
        if bucket.indexes:
            raise ServiceError("ConflictException", "the vector bucket is not empty", 409)
        del self.buckets[bucket.name]
        return {}

    def _create_index(self, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self._bucket(params)
        name = params["indexName"]
        if name in bucket.indexes:
            raise ServiceError("ConflictException", f"index {name} exists", 409)
        keys = params.get("metadataConfiguration", {}).get("nonFilterableMetadataKeys", [])
        if len(keys) > MAX_NON_FILTERABLE_KEYS:
            raise _invalid(f"at most {MAX_NON_FILTERABLE_KEYS} non-filterable metadata keys")
        dimension = params["dimension"]
        index = Index(
            bucket.name, name, dimension, params["distanceMetric"], tuple(keys), self._clock()
        )
        index.matrix = np.zeros((0, dimension), dtype=np.float32)
        index.mode = bucket.default_index_mode
        bucket.indexes[name] = index
        return {"indexArn": index.arn}

    def _get_index(self, params: dict[str, Any]) -> dict[str, Any]:
        index = self._index(params)
        described: dict[str, Any] = {
            "vectorBucketName": index.bucket,
            "indexName": index.name,
            "indexArn": index.arn,
            "creationTime": index.created,
            "dataType": "float32",
            "dimension": index.dimension,
            "distanceMetric": index.metric,
            "indexMode": index.mode,
        }
        if index.non_filterable:
            described["metadataConfiguration"] = {
                "nonFilterableMetadataKeys": list(index.non_filterable)
            }
        return {"index": described}

    def _update_index_mode(self, params: dict[str, Any]) -> dict[str, Any]:
        index = self._index(params)
        _check_mode_allowed(self.buckets[index.bucket], params["indexMode"])
        index.mode = params["indexMode"]
        return {}

    def _list_indexes(self, params: dict[str, Any]) -> dict[str, Any]:
        bucket = self._bucket(params)
        prefix = params.get("prefix", "")
        return {
            "indexes": [
                {
                    "vectorBucketName": bucket.name,
                    "indexName": i.name,
                    "indexArn": i.arn,
                    "creationTime": i.created,
                }
                for i in bucket.indexes.values()
                if i.name.startswith(prefix)
            ]
        }

    def _delete_index(self, params: dict[str, Any]) -> dict[str, Any]:
        index = self._index(params)
        del self.buckets[index.bucket].indexes[index.name]
        return {}

    # vectors

    def _put_vectors(self, params: dict[str, Any]) -> dict[str, Any]:
        index = self._index(params)
        vectors = params["vectors"]
        if len(vectors) > MAX_PUT:
            raise _invalid(f"at most {MAX_PUT} vectors per PutVectors request")
        checked = []
        for position, vector in enumerate(vectors):
            data = self._vector(index, vector["data"], f"vectors[{position}].data")
            metadata = vector.get("metadata", {})
            _check_metadata(metadata, index.non_filterable, position)
            checked.append((vector["key"], data, metadata))
        for key, data, metadata in checked:
            index.put(key, data, metadata)
        return {}

    def _get_vectors(self, params: dict[str, Any]) -> dict[str, Any]:
        index = self._index(params)
        keys = params["keys"]
        if len(keys) > MAX_GET:
            raise _invalid(f"at most {MAX_GET} keys per GetVectors request")
        found = []
        for key in keys:
            row = index.rows.get(key)
            if row is None:
                continue
            found.append(
                self._described(index, row, params.get("returnData"), params.get("returnMetadata"))
            )
        return {"vectors": found}

    def _delete_vectors(self, params: dict[str, Any]) -> dict[str, Any]:
        index = self._index(params)
        keys = params["keys"]
        if len(keys) > MAX_DELETE:
            raise _invalid(f"at most {MAX_DELETE} keys per DeleteVectors request")
        for key in keys:
            index.remove(key)
        return {}

    def _list_vectors(self, params: dict[str, Any]) -> dict[str, Any]:
        index = self._index(params)
        limit = params.get("maxResults", MAX_LIST)
        if limit > MAX_LIST:
            raise _invalid(f"maxResults must be at most {MAX_LIST}")
        segments = params.get("segmentCount")
        segment = params.get("segmentIndex")
        if (segments is None) != (segment is None):
            raise _invalid("segmentCount and segmentIndex go together")
        if segments is not None and not (
            1 <= segments <= MAX_SEGMENTS and 0 <= (segment or 0) < segments
        ):
            raise _invalid(f"segmentCount 1-{MAX_SEGMENTS}, segmentIndex below it")
        after = ""
        if "nextToken" in params:
            try:
                after = base64.urlsafe_b64decode(params["nextToken"].encode()).decode()
            except ValueError as error:
                raise _invalid("invalid nextToken") from error
        data, metadata = params.get("returnData"), params.get("returnMetadata")
        listed: list[dict[str, Any]] = []
        size = len('{"vectors":[]}')
        last = None
        for key in index.keys_after(after):
            if segments is not None and _segment(key, segments) != segment:
                continue
            if len(listed) == limit:
                break
            described = self._described(index, index.rows[key], data, metadata)
            cost = len(json.dumps(described, separators=(",", ":")).encode("utf-8")) + 1
            if listed and size + cost > MAX_LIST_RESPONSE_BYTES - _TOKEN_ROOM:
                break
            listed.append(described)
            size += cost
            last = key
        else:
            return {"vectors": listed}
        assert last is not None
        return {"vectors": listed, "nextToken": base64.urlsafe_b64encode(last.encode()).decode()}

    def _query_vectors(self, params: dict[str, Any]) -> dict[str, Any]:
        index = self._index(params)
        top_k = params["topK"]
        if top_k > MAX_TOP_K:
            raise _invalid(f"topK must be between 1 and {MAX_TOP_K}")
        if "queryTexts" in params:
            raise ServiceError("UnknownOperationException", "full-text query is not emulated", 501)
        offset = _query_offset(params.get("nextToken"))
        if "queryVector" not in params:
            raise _invalid("queryVector is required")
        query = self._vector(index, params["queryVector"], "queryVector").astype(np.float64)
        expression = params.get("filter")
        if expression is not None:
            validate_filter(expression, lambda key: key not in index.non_filterable)
        mode = params.get("queryMode") or index.mode
        _check_mode(mode)
        if mode == CLASSIC and index.mode == ENHANCED:
            raise _invalid("queryMode CLASSIC is not allowed for an ENHANCED index")
        found: list[dict[str, Any]] = []
        count = len(index.keys)
        if count:
            distances = index.distances(query)
            order = sorted(range(count), key=lambda row: (float(distances[row]), index.keys[row]))
            if mode == CLASSIC and expression is not None:
                # Filters apply during the search: only the candidates it visits count.
                order = order[: max(top_k, self.classic_candidates)]
            for row in order:
                if expression is not None and not matches(expression, index.metadata[row]):
                    continue
                hit: dict[str, Any] = {"key": index.keys[row]}
                if params.get("returnDistance"):
                    hit["distance"] = float(distances[row])
                if params.get("returnMetadata"):
                    hit["metadata"] = index.metadata[row]
                found.append(hit)
                if len(found) == top_k:
                    break
        # The service may answer in pages (its page size is not documented): with
        # query_page_size set, so does the emulator.
        page_size = self.query_page_size or len(found) or 1
        answer: dict[str, Any] = {
            "vectors": found[offset : offset + page_size],
            "distanceMetric": index.metric,
        }
        if offset + page_size < len(found):
            answer["nextToken"] = _query_token(offset + page_size)
        return answer

    # helpers

    def _bucket(self, params: dict[str, Any]) -> Bucket:
        name = params.get("vectorBucketName")
        arn = params.get("vectorBucketArn") or params.get("indexArn")
        if arn and not name:
            name = arn.split(":bucket/", 1)[1].split("/", 1)[0]
        if not name:
            raise _invalid("vectorBucketName or an ARN is required")
        bucket = self.buckets.get(name)
        if bucket is None:
            raise ServiceError("NotFoundException", f"vector bucket {name} not found", 404)
        return bucket

    def _index(self, params: dict[str, Any]) -> Index:
        bucket = self._bucket(params)
        name = params.get("indexName")
        if not name and params.get("indexArn"):
            name = params["indexArn"].rsplit("/index/", 1)[1]
        if not name:
            raise _invalid("indexName or indexArn is required")
        index = bucket.indexes.get(name)
        if index is None:
            raise ServiceError("NotFoundException", f"index {name} not found", 404)
        return index

    @staticmethod
    def _vector(index: Index, data: dict[str, Any], where: str) -> npt.NDArray[np.float32]:
        values = data.get("float32")
        if values is None:
            raise _invalid(f"{where}: only float32 vectors are supported")
        if len(values) != index.dimension:
            raise _invalid(
                f"{where}: dimension {len(values)} does not match the index ({index.dimension})"
            )
        array = np.asarray(values, dtype=np.float32)
        if not bool(np.isfinite(array).all()):
            raise _invalid(f"{where}: values must be finite")
        if index.metric == "cosine" and not float(np.abs(array).max()) > 0:
            raise _invalid(f"{where}: a zero vector has no cosine distance")
        return array

    @staticmethod
    def _described(
        index: Index, row: int, data: bool | None, metadata: bool | None
    ) -> dict[str, Any]:
        described: dict[str, Any] = {"key": index.keys[row]}
        if data:
            described["data"] = {"float32": index.matrix[row].tolist()}
        if metadata:
            described["metadata"] = index.metadata[row]
        return described

    # persistence (local mode)

    def save(self, path: Path) -> None:
        with self._lock:
            temporary = path.with_suffix(".tmp")
            temporary.write_bytes(pickle.dumps(self.buckets))
            temporary.replace(path)

    def load(self, path: Path) -> None:
        if path.exists():
            with self._lock:
                # Our own file in the user's state directory, written by ``save``.
                self.buckets = pickle.loads(path.read_bytes())  # noqa: S301


def _check_mode(mode: Any) -> None:
    # botocore's validator leaves enums unchecked.
    if mode not in (CLASSIC, ENHANCED):
        raise _invalid(f"the mode must be {CLASSIC} or {ENHANCED}")


def _check_mode_allowed(bucket: Bucket, mode: str) -> None:
    _check_mode(mode)
    if mode == CLASSIC and not bucket.allows_classic:
        raise _invalid(
            "CLASSIC is only available for vector buckets created before September 30, 2026"
        )


def _check_metadata(metadata: Any, non_filterable: tuple[str, ...], position: int) -> None:
    if not isinstance(metadata, dict):
        raise _invalid(f"vectors[{position}].metadata must be a JSON object")
    if len(metadata) > MAX_METADATA_KEYS:
        raise _invalid(f"vectors[{position}].metadata has more than {MAX_METADATA_KEYS} keys")
    for name, value in metadata.items():
        if not (_is_primitive(value) or _is_primitive_list(value)):
            raise _invalid(
                f"vectors[{position}].metadata.{name}: a string, number, boolean or list of them"
            )
    if _size(metadata) > MAX_METADATA_BYTES:
        raise _invalid(f"vectors[{position}].metadata is over {MAX_METADATA_BYTES} bytes")
    filterable = {k: v for k, v in metadata.items() if k not in non_filterable}
    if _size(filterable) > MAX_FILTERABLE_METADATA_BYTES:
        raise _invalid(
            f"vectors[{position}]: filterable metadata is over"
            f" {MAX_FILTERABLE_METADATA_BYTES} bytes"
        )


def _vector_lists(params: dict[str, Any]) -> dict[int, Any]:
    """PutVectors: the positions of vectors whose ``data.float32`` is a flat list of
    numbers (what botocore's validator would accept value by value, booleans included),
    checked in bulk. Anything else is left to the validator, which reports it."""
    vectors = params.get("vectors")
    if not isinstance(vectors, list):
        return {}
    found: dict[int, Any] = {}
    for position, vector in enumerate(vectors):
        data = vector.get("data") if isinstance(vector, dict) else None
        values = data.get("float32") if isinstance(data, dict) else None
        if type(values) is not list or not values:
            continue
        try:
            array = np.array(values)
        except (ValueError, OverflowError):  # ragged or huge: the validator explains
            continue
        if array.ndim == 1 and array.dtype.kind in "biuf":
            found[position] = array
    return found


def _with_stand_ins(params: dict[str, Any], checked: dict[int, Any]) -> dict[str, Any]:
    """A copy of a PutVectors request for the validator: each bulk-checked list is one
    value (the lists themselves are not copied)."""
    vectors = list(params["vectors"])
    for position in checked:
        vector = vectors[position]
        vectors[position] = {**vector, "data": {**vector["data"], "float32": [1.0]}}
    return {**params, "vectors": vectors}


def _with_arrays(params: dict[str, Any], checked: dict[int, Any]) -> dict[str, Any]:
    vectors = list(params["vectors"])
    for position, array in checked.items():
        vector = vectors[position]
        vectors[position] = {**vector, "data": {**vector["data"], "float32": array}}
    return {**params, "vectors": vectors}


def _is_primitive_list(value: Any) -> bool:
    return isinstance(value, list) and all(_is_primitive(v) for v in value)


def _size(metadata: dict[str, Any]) -> int:
    return len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _check_constraints(value: Any, shape: Any, path: str) -> None:
    """What botocore's validator leaves out: maxima (it checks minima only) and
    patterns (the ARNs'; a pattern Python's ``re`` cannot read is skipped)."""
    limit = shape.metadata.get("max")
    if limit is not None:
        size = value if isinstance(value, int) and not isinstance(value, bool) else None
        if isinstance(value, str | list | dict):
            size = len(value)
        if size is not None and size > limit:
            raise _invalid(f"{path or 'input'} is over its maximum of {limit}")
    pattern = _pattern(shape.metadata.get("pattern"))
    if pattern is not None and isinstance(value, str) and not pattern.search(value):
        raise _invalid_field(
            path,
            value,
            f"Member must satisfy regular expression pattern: {pattern.pattern}",
        )
    if shape.metadata.get("document"):
        return
    if shape.type_name == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value:
                _check_constraints(value[name], member, f"{path}.{name}" if path else name)
    elif shape.type_name == "list" and isinstance(value, list):
        for position, item in enumerate(value):
            _check_constraints(item, shape.member, f"{path}[{position}]")


_PATTERNS: dict[str, re.Pattern[str] | None] = {}


def _pattern(text: str | None) -> re.Pattern[str] | None:
    if text is None:
        return None
    if text not in _PATTERNS:
        try:
            _PATTERNS[text] = re.compile(text)
        except re.error:  # e.g. the tags' \p{L}: not checked here
            _PATTERNS[text] = None
    return _PATTERNS[text]


def _check_names(params: dict[str, Any]) -> None:
    for member, (rule, constraint) in _NAME_RULES.items():
        name = params.get(member)
        if isinstance(name, str) and not rule.fullmatch(name):
            raise _invalid_field(member, name, f"Member must be {constraint}")


def _segment(key: str, segments: int) -> int:
    import zlib

    return zlib.crc32(key.encode("utf-8")) % segments


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def _query_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"query_offset": offset}).encode()).decode()


def _query_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["query_offset"]
    except (ValueError, KeyError, TypeError) as error:
        raise _invalid("nextToken is not a token of this query") from error
    if not isinstance(offset, int) or offset < 0:
        raise _invalid("nextToken is not a token of this query")
    return offset


def _now() -> float:
    return time.time()


# -- HTTP ---------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body leave as two writes: with Nagle's algorithm the body waits for
    # the client's delayed ACK, ~40 ms on every answer.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        operation = self.path.split("?", 1)[0].strip("/")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            if length > MAX_PAYLOAD_BYTES:
                raise _invalid(f"the request payload is over {MAX_PAYLOAD_BYTES} bytes")
            try:
                params = json.loads(body) if body else {}
            except ValueError as error:
                raise _invalid("the request body is not JSON") from error
            if not isinstance(params, dict):
                raise _invalid("the request body is not a JSON object")
            result = self.server.service.handle(operation, params)
            self._answer(200, result, {})
        except ServiceError as error:
            self._answer(error.status, error.payload(), {"x-amzn-ErrorType": error.code})

    def _answer(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(payload, allow_nan=False, separators=(",", ":")).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("s3vectors emulator: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    service: S3VectorsService


class S3VectorsEmulator:
    """The service on an HTTP port of 127.0.0.1 (0: any free port), in a thread."""

    def __init__(self, port: int = 0, service: S3VectorsService | None = None) -> None:
        self.service = service or S3VectorsService()
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.service = self.service
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> S3VectorsEmulator:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="s3vectors-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> S3VectorsEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ensure_index(
    client: Any,
    *,
    bucket: str,
    index: str,
    dimension: int,
    non_filterable_keys: tuple[str, ...],
) -> None:
    """Create the vector bucket and index as the stack does (idempotent)."""
    from botocore.exceptions import ClientError

    for create in (
        lambda: client.create_vector_bucket(
            vectorBucketName=bucket, encryptionConfiguration={"sseType": "AES256"}
        ),
        lambda: client.create_index(
            vectorBucketName=bucket,
            indexName=index,
            dataType="float32",
            dimension=dimension,
            distanceMetric="cosine",
            metadataConfiguration={"nonFilterableMetadataKeys": list(non_filterable_keys)},
        ),
    ):
        try:
            create()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConflictException":
                raise


__all__ = [
    "CLASSIC",
    "ENHANCED",
    "ENHANCED_DEFAULT_FROM",
    "S3VectorsEmulator",
    "S3VectorsService",
    "ServiceError",
    "ensure_index",
    "matches",
    "validate_filter",
]
