"""The scale tier's ``VectorIndex``: Amazon S3 Vectors (boto3 ``s3vectors`` client).

One vector per indexed image, keyed by image id, with this metadata:

- ``key`` (declared non-filterable at index creation): the object key, returned with
  each hit, so a result needs no per-hit lookup;
- ``content_type`` (filterable), left out when unknown;
- ``folders`` (filterable): ids of the key's ancestor folders, shallowest first. S3
  Vectors has no prefix operator, but ``$eq`` against a list matches any element, so
  "under ``uploads/shoes/``" is ``{"folders": {"$eq": folder_id("uploads/shoes/")}}``.
  The ids are short hashes and only the first ``MAX_FOLDER_DEPTH`` levels are stored,
  so the filterable metadata stays far below S3 Vectors' 2 KB for any key (keys are
  at most 1,024 bytes).

Search is approximate nearest neighbour (AWS states average recall above 90 %), not
exact. Every query asks for ``queryMode=ENHANCED``: the service applies the filter
first and searches the matching vectors. An index in a vector bucket created before
2026-09-30 is ``CLASSIC`` unless moved, and its default would filter *during* the
search, so a narrow filter (a small folder) could return fewer than ``top_k`` or none
(decision 37). ``index_mode``/``use_enhanced_mode`` read and move the index itself
(``imagesearch status`` and ``reindex``, with the operator's credentials).

Prefix semantics (SPEC section 6: keys starting with the prefix):

- a prefix ending in ``/`` at most ``MAX_FOLDER_DEPTH`` levels deep is one exact
  ``$eq`` filter: the service searches only matching vectors and ``top_k`` are
  returned whenever that many match;
- any other prefix (ending mid-name, ``uploads/sho``, or deeper than the stored
  levels) filters on its last complete stored folder (``uploads/``), asks for the
  service's maximum of 100 hits and keeps the keys that start with the prefix. This
  may return fewer than ``top_k`` (even none) although more images match; the
  embedded tier returns all of them.

``exclude_ids`` and ``min_score`` are applied to the hits (over-fetching by the number
of excluded ids, within the 100 cap). Scores are ``1 - cosine distance``; equal scores
are ordered by id, as in the embedded tier.

Writes: botocore serialises a float list one Python call per value (with
``json.dumps`` after it, ~2 ms per 1,024-d vector: a reindex of 1M vectors would spend
half an hour there). ``PutVectors`` therefore sends the vector data as JSON text
written by numpy (``encode_float32_rows``: 9 significant digits, which round-trip every
float32 exactly) and spliced into the body botocore built for the rest of the request
(keys and metadata still validated and serialised by botocore; signing, endpoint,
retries and errors unchanged). Requests hold at most 500 vectors and at most the
service's 20 MiB payload.

Throttling: an index takes 2,500 vectors/s and 1,000 write requests/s; over that the
service answers ``TooManyRequestsException`` (429), and ``ServiceUnavailableException``
(503) when busy. botocore already retries both in every retry mode (boto3's default
client: standard mode, 3 attempts; the reindex client: adaptive, 10). Writes and
listings (``upsert``, ``delete``, ``keys``, ``erase``) retry on top of that
(``Backoff``: exponential with jitter, bounded), since a reindex or an erase writes at
the service's rate for minutes and one exhausted SDK retry would end the whole run.
When those retries are spent too, the error is raised: ingest fails the message (SQS
delivers it again), reindex is run again and resumes, an erase is repeated by the next
maintenance run. Queries and ``get_vectors`` keep the SDK's retries only (a search
answers within its API timeout).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from imagesearch.embedders.base import Vector
from imagesearch.errors import ImageSearchError, IndexUnavailable
from imagesearch.ports import MAX_TOP_K, QueryFilters, ScoredId, VectorEntry
from imagesearch.resources import S3VECTORS_NON_FILTERABLE_KEYS

META_KEY = S3VECTORS_NON_FILTERABLE_KEYS[0]
META_CONTENT_TYPE = "content_type"
META_FOLDERS = "folders"
# Declared non-filterable on the index (stack, local mode, tests create it alike).
NON_FILTERABLE_METADATA_KEYS = S3VECTORS_NON_FILTERABLE_KEYS

MAX_PUT = 500  # vectors per PutVectors
MAX_PAYLOAD_BYTES = 20 * 1024 * 1024  # per request (the service's limit)
# What a PutVectors request may use for its vectors: the envelope (names, brackets)
# stays far below this margin.
PUT_BUDGET_BYTES = MAX_PAYLOAD_BYTES - 64 * 1024
MAX_DELETE = 500  # keys per DeleteVectors
MAX_GET = 100  # keys per GetVectors
MAX_LIST = 1000  # vectors per ListVectors page
LIST_SEGMENTS = 8  # parallel ListVectors segments (the service allows 16)
MAX_FOLDER_DEPTH = 64  # ancestor folders stored per vector (64 x 12 chars < 1 KB)
# Filters applied before the search, whatever the index's own mode (decision 37).
QUERY_MODE = "ENHANCED"
MAX_QUERY_PAGES = MAX_TOP_K  # a page holds at least one hit
INDEX_MODE_CLASSIC = "CLASSIC"

# An erase lists again until a listing finds nothing. Each pass removes all it lists;
# another is needed only when vectors were written meanwhile or the service's tokens
# skipped vectors as the listed ones went (log2 of the pages at worst).
MAX_ERASE_PASSES = 32
# The model's retryable errors are also InternalServerException and
# RequestTimeoutException; these two are what the per-index limits answer.
RETRIED_ERRORS = frozenset({"TooManyRequestsException", "ServiceUnavailableException"})

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


class EraseIncomplete(ImageSearchError):
    """Listings kept finding vectors in an index being erased (something writes to
    it): the maintenance run fails and the next one erases again."""


@dataclass(frozen=True)
class Backoff:
    """Retries of throttled writes and listings, after botocore's own: ``attempts``
    calls in all, waiting ``base * 2**n`` (at most ``cap``) between them, the second
    half of each wait random (callers in step would be throttled again together).
    The defaults wait at most 0.5 + 1 + 2 + 4 + 8 = 15.5 s per call."""

    attempts: int = 6
    base_seconds: float = 0.5
    cap_seconds: float = 8.0
    sleep: Callable[[float], None] = time.sleep
    random: Callable[[], float] = random.random

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("Backoff.attempts must be at least 1")

    def delay(self, retry: int) -> float:
        ceiling = min(self.cap_seconds, self.base_seconds * 2**retry)
        return ceiling / 2 + self.random() * ceiling / 2


def folder_id(folder: str) -> str:
    """Short stable id of a folder path ending in ``/`` (72 bits of SHA-256)."""
    digest = hashlib.sha256(folder.encode("utf-8")).digest()[:9]
    return base64.urlsafe_b64encode(digest).decode("ascii")


def ancestor_folders(key: str) -> list[str]:
    """``uploads/a/b.jpg`` -> ``["uploads/", "uploads/a/"]`` (at most MAX_FOLDER_DEPTH)."""
    folders: list[str] = []
    position = key.find("/")
    while position != -1 and len(folders) < MAX_FOLDER_DEPTH:
        folders.append(key[: position + 1])
        position = key.find("/", position + 1)
    return folders


def prefix_filter(prefix: str | None) -> tuple[dict[str, Any] | None, bool]:
    """The metadata filter for a key prefix and whether hits must still be checked
    against the prefix (see the module docstring)."""
    if not prefix:
        return None, False
    folders = ancestor_folders(prefix)
    if not folders:
        return None, True
    deepest = folders[-1]
    exact = deepest == prefix
    return {META_FOLDERS: {"$eq": folder_id(deepest)}}, not exact


def metadata_for(entry: VectorEntry) -> dict[str, Any]:
    metadata: dict[str, Any] = {META_KEY: entry.key}
    if entry.content_type is not None:
        metadata[META_CONTENT_TYPE] = entry.content_type
    folders = ancestor_folders(entry.key)
    if folders:
        metadata[META_FOLDERS] = [folder_id(folder) for folder in folders]
    return metadata


# -- fast PutVectors bodies ----------------------------------------------------------

FLOAT_TEXT_BYTES = 16  # "-1.23456789e-05," sign, 9 significant digits, exponent, separator
_POWERS_OF_TEN = 10.0 ** np.arange(-60, 61)  # 10**k at index k + 60
# Our own request parameter: taken out of the call before botocore validates it.
ENCODED_DATA_PARAM = "imagesearchEncodedFloat32"
_STAND_IN = {"float32": [1.0]}  # what botocore validates and serialises instead of the data


def encode_float32_rows(matrix: Any) -> list[bytes]:
    """Each row of ``matrix`` as a JSON array of its float32 values, in fixed width
    (``FLOAT_TEXT_BYTES`` a value): ``d.dddddddde±xx`` after a ``-`` or a space (JSON
    whitespace). Nine significant digits identify every float32, so the service parses
    back exactly the values given. Vectorised (~0.06 s per 500 x 1,024 where botocore
    and ``json.dumps`` take ~1 s)."""
    values = np.asarray(matrix, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError("expected one vector per row")
    if not bool(np.isfinite(values).all()):
        raise ValueError("vector values must be finite")
    rows, columns = values.shape
    flat = values.ravel()
    magnitude32 = np.abs(flat)
    nonzero = magnitude32 > 0
    exponent = np.floor(np.log10(np.where(nonzero, magnitude32, np.float32(1)))).astype(np.int32)
    magnitude = magnitude32.astype(np.float64)
    digits = np.rint(magnitude * _POWERS_OF_TEN[68 - exponent])  # 9 digits: 10**(8 - e)
    # A float32 log10 may land one decade off near powers of ten, and rounding may carry
    # into a tenth digit (9.999999996 -> 10.0000000): fix the exponent, round again.
    low, high = nonzero & (digits < 1e8), digits >= 1e9
    if low.any() or high.any():
        exponent[low] -= 1
        exponent[high] += 1
        redo = low | high
        digits[redo] = np.rint(magnitude[redo] * _POWERS_OF_TEN[68 - exponent[redo]])
        carry = digits >= 1e9
        digits[carry] = 1e8
        exponent[carry] += 1
    text = np.empty((flat.size, FLOAT_TEXT_BYTES), dtype=np.uint8)
    text[:, 0] = np.where(np.signbit(flat), ord("-"), ord(" "))
    text[:, 2] = ord(".")
    rest = digits.astype(np.int32)
    for column in range(10, 2, -1):  # the last eight digits, right to left
        shifted = rest // 10
        text[:, column] = rest - shifted * 10 + ord("0")
        rest = shifted
    text[:, 1] = rest + ord("0")
    text[:, 11] = ord("e")
    text[:, 12] = np.where(exponent < 0, ord("-"), ord("+"))
    decades = np.abs(exponent)  # float32: at most 46
    tens = decades // 10
    text[:, 13] = tens + ord("0")
    text[:, 14] = decades - tens * 10 + ord("0")
    text[:, 15] = ord(",")
    arrays = np.empty((rows, columns * FLOAT_TEXT_BYTES + 1), dtype=np.uint8)
    arrays[:, 0] = ord("[")
    arrays[:, 1:] = text.reshape(rows, columns * FLOAT_TEXT_BYTES)
    arrays[:, -1] = ord("]")  # replaces the last separator
    return [row.tobytes() for row in arrays]


def _take_encoded_data(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """before-parameter-build: move our encoded rows out of the call; botocore validates
    and serialises a one-value stand-in for each vector's data instead."""
    rows = params.pop(ENCODED_DATA_PARAM, None)
    if rows is None:
        return
    vectors = params.get("vectors")
    if not isinstance(vectors, list) or len(vectors) != len(rows):
        raise ValueError("one encoded row per vector")
    params["vectors"] = [{**vector, "data": _STAND_IN} for vector in vectors]
    context[ENCODED_DATA_PARAM] = rows


def _splice_encoded_data(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """before-call: the request body with each stand-in replaced by its encoded row."""
    rows = context.pop(ENCODED_DATA_PARAM, None)
    if rows is None:
        return
    body = json.loads(params["body"])
    vectors = body.pop("vectors")
    envelope = json.dumps(body, separators=(",", ":")).encode("utf-8")
    pieces = [envelope[:-1], b"," if body else b"", b'"vectors":[']
    for position, (vector, row) in enumerate(zip(vectors, rows, strict=True)):
        del vector["data"]
        rest = json.dumps(vector, separators=(",", ":")).encode("utf-8")  # {"key":...}
        pieces += [b"," if position else b"", b'{"data":{"float32":', row, b"},", rest[1:]]
    pieces.append(b"]}")
    params["body"] = b"".join(pieces)


class S3VectorsIndex:
    """``VectorIndex`` on one S3 Vectors index (float32, cosine)."""

    def __init__(
        self,
        client: Any,
        *,
        bucket: str,
        index: str,
        dimension: int,
        backoff: Backoff | None = None,
    ) -> None:
        if not 1 <= dimension <= 4096:
            raise ValueError("dimension must be between 1 and 4096")
        self._client = client
        self._bucket = bucket
        self._index = index
        self._dimension = dimension
        self._backoff = backoff if backoff is not None else Backoff()

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def name(self) -> str:
        return self._index

    # -- the index's query mode ------------------------------------------------------

    def index_mode(self) -> str:
        """The index's mode (GetIndex ``indexMode``). An answer without one comes from
        before modes existed, when every index filtered during the search: CLASSIC."""
        described = self._client.get_index(**self._target())["index"]
        return str(described.get("indexMode") or INDEX_MODE_CLASSIC)

    def use_enhanced_mode(self) -> bool:
        """Move a CLASSIC index to ENHANCED (in place: no re-ingestion, no charge, as AWS
        documents it); True if it was moved."""
        if self.index_mode() == QUERY_MODE:
            return False
        self._client.update_index_mode(**self._target(), indexMode=QUERY_MODE)
        return True

    def _target(self) -> dict[str, str]:
        return {"vectorBucketName": self._bucket, "indexName": self._index}

    # -- writes ----------------------------------------------------------------------

    def upsert(self, entries: Sequence[VectorEntry]) -> None:
        """Write ``entries`` in requests of at most 500 vectors and 20 MiB."""
        if not entries:
            return
        rows = encode_float32_rows(self._units([entry.vector for entry in entries]))
        batch: list[dict[str, Any]] = []
        encoded: list[bytes] = []
        size = 0
        for entry, row in zip(entries, rows, strict=True):
            vector = {"key": entry.image_id, "metadata": metadata_for(entry)}
            cost = len(row) + len(json.dumps(vector, separators=(",", ":"))) + 32
            if batch and (len(batch) == MAX_PUT or size + cost > PUT_BUDGET_BYTES):
                self._put(batch, encoded)
                batch, encoded, size = [], [], 0
            batch.append(vector)
            encoded.append(row)
            size += cost
        self._put(batch, encoded)

    def _put(self, vectors: list[dict[str, Any]], rows: list[bytes]) -> None:
        # On the client's own event hooks (once per client: unique ids), at the first write.
        events = self._client.meta.events
        events.register(
            "before-parameter-build.s3vectors.PutVectors",
            _take_encoded_data,
            unique_id="imagesearch-take-encoded-data",
        )
        events.register(
            "before-call.s3vectors.PutVectors",
            _splice_encoded_data,
            unique_id="imagesearch-splice-encoded-data",
        )
        self._retrying(
            "PutVectors",
            lambda: self._client.put_vectors(
                **self._target(), vectors=vectors, **{ENCODED_DATA_PARAM: rows}
            ),
        )

    def delete(self, image_ids: Sequence[str]) -> None:
        ids = list(image_ids)
        for start in range(0, len(ids), MAX_DELETE):
            self._delete_batch(ids[start : start + MAX_DELETE])

    def _delete_batch(self, keys: list[str]) -> None:
        self._retrying(
            "DeleteVectors", lambda: self._client.delete_vectors(**self._target(), keys=keys)
        )

    def _retrying(self, operation: str, call: Callable[[], _T]) -> _T:
        """``call``, again after a wait while the service answers a throttling or
        unavailable error and ``Backoff.attempts`` allow; then that error is raised."""
        backoff = self._backoff
        retry = 0
        while True:
            try:
                return call()
            except ClientError as error:
                if _code(error) not in RETRIED_ERRORS or retry + 1 >= backoff.attempts:
                    raise
                wait = backoff.delay(retry)
                logger.warning(
                    "s3vectors %s answered %s; retrying in %.1f s (retry %d of %d)",
                    operation,
                    _code(error),
                    wait,
                    retry + 1,
                    backoff.attempts - 1,
                )
                backoff.sleep(wait)
                retry += 1

    # -- reads -----------------------------------------------------------------------

    def query(self, vector: Vector, top_k: int, filters: QueryFilters) -> list[ScoredId]:
        if not 1 <= top_k <= MAX_TOP_K:
            raise ValueError(f"top_k must be between 1 and {MAX_TOP_K}")
        request = self.query_request(vector, top_k, filters)
        if filters.content_types == ():
            return []  # no type allowed ($in takes a non-empty array)
        try:
            response = self._client.query_vectors(**request)
            # The service may answer in pages (QueryVectors' nextToken): read on until
            # topK hits are in, within a bound so a looping token cannot hold a search.
            hits = list(response.get("vectors", []))
            pages = 1
            while response.get("nextToken") and len(hits) < request["topK"]:
                if pages == MAX_QUERY_PAGES:
                    raise IndexUnavailable(f"vector index query still paging after {pages} pages")
                response = self._client.query_vectors(**request, nextToken=response["nextToken"])
                hits.extend(response.get("vectors", []))
                pages += 1
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ValidationException":
                raise  # our request is wrong: a bug, not an outage
            raise IndexUnavailable(f"vector index query failed: {_code(error)}") from error
        except BotoCoreError as error:
            raise IndexUnavailable(f"vector index query failed: {type(error).__name__}") from error
        return self.hits({"vectors": hits}, top_k, filters)

    def query_request(self, vector: Vector, top_k: int, filters: QueryFilters) -> dict[str, Any]:
        """The QueryVectors arguments for a query (public for the overhead benchmark)."""
        unit = self._unit(vector)
        conditions: list[dict[str, Any]] = []
        folder, post_filter = prefix_filter(filters.prefix)
        if folder is not None:
            conditions.append(folder)
        if filters.content_types:
            conditions.append({META_CONTENT_TYPE: {"$in": list(filters.content_types)}})
        fetch = top_k + len(set(filters.exclude_ids))
        if post_filter:
            fetch = MAX_TOP_K
        request: dict[str, Any] = {
            **self._target(),
            "topK": min(MAX_TOP_K, fetch),
            "queryVector": {"float32": unit.tolist()},
            "returnMetadata": True,
            "returnDistance": True,
            "queryMode": QUERY_MODE,
        }
        if len(conditions) == 1:
            request["filter"] = conditions[0]
        elif conditions:
            request["filter"] = {"$and": conditions}
        return request

    def hits(self, response: dict[str, Any], top_k: int, filters: QueryFilters) -> list[ScoredId]:
        """Scored ids from a QueryVectors response: what the filter could not express is
        applied here, then ties are ordered by id and the list cut to ``top_k``."""
        excluded = set(filters.exclude_ids)
        prefix = filters.prefix or ""
        found: list[tuple[float, str]] = []
        for hit in response.get("vectors", []):
            image_id = hit["key"]
            if image_id in excluded:
                continue
            if prefix and not str(hit.get("metadata", {}).get(META_KEY, "")).startswith(prefix):
                continue
            score = min(1.0, max(-1.0, 1.0 - float(hit["distance"])))
            if filters.min_score is not None and score < filters.min_score:
                continue
            found.append((score, image_id))
        found.sort(key=lambda pair: (-pair[0], pair[1]))
        return [ScoredId(image_id, score) for score, image_id in found[:top_k]]

    def get_vectors(self, image_ids: Sequence[str]) -> dict[str, Vector]:
        ids = list(dict.fromkeys(image_ids))
        found: dict[str, Vector] = {}
        try:
            for start in range(0, len(ids), MAX_GET):
                response = self._client.get_vectors(
                    **self._target(),
                    keys=ids[start : start + MAX_GET],
                    returnData=True,
                    returnMetadata=False,
                )
                for vector in response.get("vectors", []):
                    found[vector["key"]] = np.asarray(vector["data"]["float32"], dtype=np.float32)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ValidationException":
                raise
            raise IndexUnavailable(f"vector index read failed: {_code(error)}") from error
        except BotoCoreError as error:
            raise IndexUnavailable(f"vector index read failed: {type(error).__name__}") from error
        return found

    def keys(self, segments: int = LIST_SEGMENTS) -> Iterator[str]:
        """Every vector key (image id) held (status and reindex only): ListVectors pages
        of 1,000, ``segments`` parallel listings (the service takes up to 16), since a
        million vectors are a thousand pages."""
        if segments == 1:
            yield from self._list(None, None)
            return
        with ThreadPoolExecutor(max_workers=segments, thread_name_prefix="list-vectors") as pool:
            parts = pool.map(lambda n: list(self._list(n, segments)), range(segments))
            for part in parts:
                yield from part

    def _list(self, segment: int | None, segments: int | None) -> Iterator[str]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {**self._target(), "maxResults": MAX_LIST}
            if segments is not None:
                kwargs["segmentCount"] = segments
                kwargs["segmentIndex"] = segment
            if token:
                kwargs["nextToken"] = token
            response: dict[str, Any] = self._retrying(
                "ListVectors", functools.partial(self._client.list_vectors, **kwargs)
            )
            for vector in response.get("vectors", []):
                yield vector["key"]
            token = response.get("nextToken")
            if not token:
                return

    def count(self) -> int:
        """Vectors held: a full listing (ListVectors), for status and reindex only."""
        return sum(1 for _ in self.keys())

    def erase(self) -> int:
        """Delete every vector (the previous model's index after a switch); returns how
        many keys were deleted. One listing: each full batch of 500 listed keys is
        deleted as it fills, then the listing goes on with its token, so the calls grow
        linearly (1M vectors: ~1,000 ListVectors and 2,000 DeleteVectors). The service
        does not document whether a token survives deletes of the listed vectors, so
        the listing is repeated until one finds nothing: on an index nobody writes, a
        single extra ListVectors."""
        removed = 0
        for _ in range(MAX_ERASE_PASSES):
            batch: list[str] = []
            listed = 0
            for key in self._list(None, None):
                listed += 1
                batch.append(key)
                if len(batch) == MAX_DELETE:
                    self._delete_batch(batch)
                    removed += len(batch)
                    batch = []
            if batch:
                self._delete_batch(batch)
                removed += len(batch)
            if not listed:
                return removed
        raise EraseIncomplete(
            f"vector index {self._index} still held vectors after {MAX_ERASE_PASSES} erase"
            " passes: something keeps writing to it"
        )

    # -- internals ------------------------------------------------------------------

    def _units(self, vectors: Sequence[Vector]) -> Any:
        """The vectors as unit rows of one float32 matrix (checked as ``_unit`` does)."""
        matrix = np.empty((len(vectors), self._dimension), dtype=np.float32)
        for row, vector in enumerate(vectors):
            array = np.asarray(vector, dtype=np.float32).reshape(-1)
            if array.size != self._dimension:
                raise ValueError(
                    f"vector has {array.size} dimensions; the index has {self._dimension}"
                )
            matrix[row] = array
        norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
        if not bool(np.all(np.isfinite(norms) & (norms > 0))):
            raise ValueError("vector has zero or non-finite norm")
        matrix /= norms[:, None]
        return matrix

    def _unit(self, vector: Vector) -> Any:
        array = np.asarray(vector, dtype=np.float32).reshape(-1)
        if array.size != self._dimension:
            raise ValueError(f"vector has {array.size} dimensions; the index has {self._dimension}")
        norm = float(np.sqrt(np.dot(array, array)))
        if not math.isfinite(norm) or norm == 0.0:
            raise ValueError("vector has zero or non-finite norm")
        return array / np.float32(norm)


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "error"))
