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

Prefix semantics (SPEC section 6: keys starting with the prefix):

- a prefix ending in ``/`` at most ``MAX_FOLDER_DEPTH`` levels deep is one exact
  ``$eq`` filter: the service ranks only matching vectors and ``top_k`` are returned
  whenever that many match;
- any other prefix (ending mid-name, ``uploads/sho``, or deeper than the stored
  levels) filters on its last complete stored folder (``uploads/``), asks for the
  service's maximum of 100 hits and keeps the keys that start with the prefix. This
  may return fewer than ``top_k`` (even none) although more images match; the
  embedded tier returns all of them.

``exclude_ids`` and ``min_score`` are applied to the hits (over-fetching by the number
of excluded ids, within the 100 cap). Scores are ``1 - cosine distance``; equal scores
are ordered by id, as in the embedded tier.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from imagesearch.embedders.base import Vector
from imagesearch.errors import IndexUnavailable
from imagesearch.ports import MAX_TOP_K, QueryFilters, ScoredId, VectorEntry
from imagesearch.resources import S3VECTORS_NON_FILTERABLE_KEYS

META_KEY = S3VECTORS_NON_FILTERABLE_KEYS[0]
META_CONTENT_TYPE = "content_type"
META_FOLDERS = "folders"
# Declared non-filterable on the index (stack, local mode, tests create it alike).
NON_FILTERABLE_METADATA_KEYS = S3VECTORS_NON_FILTERABLE_KEYS

MAX_PUT = 500  # vectors per PutVectors
MAX_DELETE = 500  # keys per DeleteVectors
MAX_GET = 100  # keys per GetVectors
MAX_LIST = 1000  # vectors per ListVectors page
MAX_FOLDER_DEPTH = 64  # ancestor folders stored per vector (64 x 12 chars < 1 KB)


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


class S3VectorsIndex:
    """``VectorIndex`` on one S3 Vectors index (float32, cosine)."""

    def __init__(self, client: Any, *, bucket: str, index: str, dimension: int) -> None:
        if not 1 <= dimension <= 4096:
            raise ValueError("dimension must be between 1 and 4096")
        self._client = client
        self._bucket = bucket
        self._index = index
        self._dimension = dimension

    @property
    def dimension(self) -> int:
        return self._dimension

    def _target(self) -> dict[str, str]:
        return {"vectorBucketName": self._bucket, "indexName": self._index}

    # -- writes ----------------------------------------------------------------------

    def upsert(self, entries: Sequence[VectorEntry]) -> None:
        vectors = [
            {
                "key": entry.image_id,
                "data": {"float32": self._unit(entry.vector).tolist()},
                "metadata": metadata_for(entry),
            }
            for entry in entries
        ]
        for start in range(0, len(vectors), MAX_PUT):
            self._client.put_vectors(**self._target(), vectors=vectors[start : start + MAX_PUT])

    def delete(self, image_ids: Sequence[str]) -> None:
        ids = list(image_ids)
        for start in range(0, len(ids), MAX_DELETE):
            self._client.delete_vectors(**self._target(), keys=ids[start : start + MAX_DELETE])

    # -- reads -----------------------------------------------------------------------

    def query(self, vector: Vector, top_k: int, filters: QueryFilters) -> list[ScoredId]:
        if not 1 <= top_k <= MAX_TOP_K:
            raise ValueError(f"top_k must be between 1 and {MAX_TOP_K}")
        request = self.query_request(vector, top_k, filters)
        if filters.content_types == ():
            return []  # no type allowed ($in takes a non-empty array)
        try:
            response = self._client.query_vectors(**request)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ValidationException":
                raise  # our request is wrong: a bug, not an outage
            raise IndexUnavailable(f"vector index query failed: {_code(error)}") from error
        except BotoCoreError as error:
            raise IndexUnavailable(f"vector index query failed: {type(error).__name__}") from error
        return self.hits(response, top_k, filters)

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

    def keys(self) -> Iterator[str]:
        """Every vector key (image id) held, page by page (status and reindex only)."""
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {**self._target(), "maxResults": MAX_LIST}
            if token:
                kwargs["nextToken"] = token
            response = self._client.list_vectors(**kwargs)
            for vector in response.get("vectors", []):
                yield vector["key"]
            token = response.get("nextToken")
            if not token:
                return

    def count(self) -> int:
        """Vectors held: a full listing (ListVectors), for status and reindex only."""
        return sum(1 for _ in self.keys())

    # -- internals ------------------------------------------------------------------

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
