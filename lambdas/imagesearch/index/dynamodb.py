"""The default ``VectorIndex``: records and float32 vectors in the DynamoDB images
table, exact search over an in-memory ``MatrixIndex``.

Writes are conditional PutItems ordered by the S3 sequencer token (deletes write a
tombstone with a TTL, so an older create cannot resurrect the image and warm search
instances see the removal). A search instance loads every indexed vector with a
parallel Scan on cold start, then applies what changed since its watermark from the
``by_change`` GSI before answering, at most every ``refresh_interval`` seconds.

Only the low-level client is used (GetItem, PutItem, Scan, Query, BatchGetItem: the
IAM policies grant exactly these); the boto3 resource layer is slow on binary
attributes and turns numbers into Decimals.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import heapq
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from imagesearch.embedders.base import Vector
from imagesearch.errors import IndexUnavailable
from imagesearch.index.matrix import MatrixIndex
from imagesearch.ports import Page, QueryFilters, ScoredId
from imagesearch.records import (
    VECTOR_DTYPE,
    ImageRecord,
    decode_vector,
    encode_vector,
    is_valid_image_id,
)
from imagesearch.resources import (
    ATTR_CHANGE_DAY,
    ATTR_CHANGED_AT,
    ATTR_EXPIRES_AT,
    ATTR_IMAGE_ID,
    ATTR_KEY,
    ATTR_SEQUENCER,
    ATTR_STATUS,
    ATTR_VECTOR,
    INDEX_BY_CHANGE,
    INDEX_BY_STATUS,
    MAX_KEY_BYTES,
    RECORD_FIELDS,
    STATUS_DELETED,
    STATUS_INDEXED,
    STATUS_REJECTED,
    TOMBSTONE_TTL_SECONDS,
)

DynamoDBClient = Any  # the low-level boto3 client (no stubs at runtime)

logger = logging.getLogger(__name__)

Item = dict[str, dict[str, Any]]

_NUMBER_FIELDS = frozenset({"size", "width", "height", "dimension"})
_LISTABLE_STATUSES = (STATUS_INDEXED, STATUS_REJECTED)
_MAX_LIST_LIMIT = 1000
_BATCH_GET_SIZE = 100
_BATCH_GET_ATTEMPTS = 8
_MAX_CURSOR_CHARS = 8192
_CURSOR_VERSION = 1
_CONDITION_NEWER_OR_SAME = "attribute_not_exists(#id) OR #seq <= :seq"


class StaleIndexError(IndexUnavailable):
    """The in-memory index could not be refreshed for longer than allowed."""


# --- item <-> record ---------------------------------------------------------


def _day_of(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def _record_item(record: ImageRecord) -> Item:
    item: Item = {}
    for name in (*RECORD_FIELDS, ATTR_SEQUENCER):
        value = getattr(record, name)
        if value is None:
            continue
        if name in _NUMBER_FIELDS:
            item[name] = {"N": str(int(value))}
        else:
            item[name] = {"S": str(value)}
    if record.status == STATUS_INDEXED:
        assert record.vector is not None
        item[ATTR_VECTOR] = {"B": encode_vector(record.vector)}
    return item


def _item_record(item: Mapping[str, Mapping[str, Any]], *, with_vector: bool) -> ImageRecord:
    values: dict[str, Any] = {}
    for name in (*RECORD_FIELDS, ATTR_SEQUENCER):
        attribute = item.get(name)
        if attribute is None:
            continue
        values[name] = int(attribute["N"]) if name in _NUMBER_FIELDS else attribute["S"]
    if with_vector and ATTR_VECTOR in item:
        values["vector"] = decode_vector(bytes(item[ATTR_VECTOR]["B"])).copy()
    return ImageRecord(**values)


def build_matrix_from_items(items: Iterable[Mapping[str, Any]], dimension: int) -> MatrixIndex:
    """A ``MatrixIndex`` from low-level DynamoDB items (``image_id``, ``key``,
    ``content_type``, ``vector`` as ``{"B": bytes}``).

    Vector bytes are copied whole into the matrix (no per-float Python); items whose
    vector is missing, of another length, or of zero norm are skipped (and counted
    in the log, never printed).
    """
    expected = dimension * VECTOR_DTYPE.itemsize
    ids: list[str] = []
    keys: list[str] = []
    content_types: list[str | None] = []
    blobs: list[bytes] = []
    skipped = 0
    for item in items:
        blob = item.get(ATTR_VECTOR, {}).get("B")
        if blob is None or len(blob) != expected:
            skipped += 1
            continue
        content_type = item.get("content_type")
        ids.append(item[ATTR_IMAGE_ID]["S"])
        keys.append(item[ATTR_KEY]["S"])
        content_types.append(None if content_type is None else content_type["S"])
        blobs.append(blob)
    count = len(blobs)
    buffer = np.empty((MatrixIndex.capacity_for(count), dimension), dtype=np.float32)
    # One memcpy per vector straight into the matrix: unlike b"".join + np.frombuffer,
    # no 400 MB transient at 100k x 1024, and fresh memory is touched once, not twice
    # (page faults dominate a cold start).
    target = buffer.data.cast("B")
    for row, blob in enumerate(blobs):
        target[row * expected : (row + 1) * expected] = blob
    target.release()
    blobs.clear()
    if np.dtype(np.float32) != VECTOR_DTYPE:  # big-endian host: stored bytes are little-endian
        buffer[:count].byteswap(inplace=True)
    index, dropped = MatrixIndex.from_buffer(
        ids, keys, content_types, buffer, count, drop_invalid=True
    )
    skipped += len(dropped)
    if skipped:
        logger.warning("skipped %d records with a missing or unusable vector", skipped)
    return index


# --- cursors -------------------------------------------------------------------


def _encode_cursor(payload: dict[str, Any]) -> str:
    # Not ASCII-escaped: "\ud83d\ude00" is 12 characters for an emoji's 4 bytes, and a
    # cursor of two 1,024-byte keys and a prefix must stay under _MAX_CURSOR_CHARS.
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode(
        "utf-8"
    )
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> dict[str, Any]:
    if len(cursor) > _MAX_CURSOR_CHARS:
        raise ValueError("malformed cursor: too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
        # RecursionError: a forged cursor of nested brackets ('[[[[...').
        raise ValueError("malformed cursor: not a cursor returned by this API") from None
    if not isinstance(payload, dict):
        raise ValueError("malformed cursor: not a cursor returned by this API")
    return payload


def _status_key(item: Mapping[str, Mapping[str, Any]]) -> Item:
    """The position of ``item`` in the ``by_status`` index (an ExclusiveStartKey)."""
    return {name: {"S": item[name]["S"]} for name in (ATTR_STATUS, ATTR_KEY, ATTR_IMAGE_ID)}


def _fits_a_key(text: str) -> bool:
    try:  # lone surrogates ('\ud800' in JSON) cannot be sent at all
        return len(text.encode("utf-8")) <= MAX_KEY_BYTES
    except UnicodeEncodeError:
        return False


def _valid_start_key(value: Any, status: str, prefix: str) -> bool:
    if value is None:
        return True
    if not isinstance(value, dict) or set(value) != {ATTR_STATUS, ATTR_KEY, ATTR_IMAGE_ID}:
        return False
    for attribute in value.values():
        if not (
            isinstance(attribute, dict)
            and set(attribute) == {"S"}
            and isinstance(attribute["S"], str)
            and attribute["S"]
        ):
            return False
    # Checked here, not by DynamoDB: a key over its size limits is a ValidationException
    # there (a 500), and no key this API hands out is longer than an S3 key.
    return (
        value[ATTR_STATUS]["S"] == status
        and value[ATTR_KEY]["S"].startswith(prefix)
        and _fits_a_key(value[ATTR_KEY]["S"])
        and is_valid_image_id(value[ATTR_IMAGE_ID]["S"])
    )


# --- the adapter ---------------------------------------------------------------


class DynamoDBVectorIndex:
    """``VectorIndex`` on the DynamoDB images table plus an in-memory exact index.

    (``builtins.list`` in annotations below: the ``list`` method shadows the type.)

    Thread-safe: one lock guards loading, refreshing and reading the in-memory index
    (local mode serves requests from several threads).
    """

    def __init__(
        self,
        table_name: str,
        dimension: int,
        model_id: str,
        *,
        client: DynamoDBClient | None = None,
        refresh_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        scan_segments: int = 4,
        refresh_overlap: float = 30.0,
        max_staleness: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if dimension < 1:
            raise ValueError("dimension must be positive")
        if scan_segments < 1:
            raise ValueError("scan_segments must be at least 1")
        self._table = table_name
        self._dimension = dimension
        self._model_id = model_id
        self._client = client
        self._refresh_interval = refresh_interval
        self._clock = clock
        self._scan_segments = scan_segments
        # GSIs are eventually consistent and writers' clocks differ: each refresh
        # re-reads this much before the watermark (re-applying a change is harmless).
        self._overlap = refresh_overlap
        # A failed refresh serves the previous state for at most this long, then raises.
        self._max_staleness = max_staleness
        self._sleep = sleep
        self._lock = threading.RLock()
        self._matrix: MatrixIndex | None = None
        self._watermark = 0.0  # start time (epoch s) of the last successful load/refresh
        self._attempted = 0.0  # start time of the last load/refresh attempt

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3  # deferred: keeps the handler's cold import fast

                    self._client = boto3.client("dynamodb")
        return self._client

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dimension(self) -> int:
        return self._dimension

    # -- writes -----------------------------------------------------------------

    def upsert(self, record: ImageRecord) -> bool:
        """PutItem of the whole record unless a newer state is stored (False then).
        Equal ordering tokens are allowed, so a retried event can finish its write."""
        if record.status not in _LISTABLE_STATUSES:
            raise ValueError(f"cannot upsert a record with status {record.status!r}")
        if not record.sequencer:
            raise ValueError("record.sequencer is required to order writes")
        if not record.image_id or not record.key:
            raise ValueError("record needs an image_id and a key")
        if record.status == STATUS_INDEXED:
            if record.vector is None:
                raise ValueError("an indexed record needs its vector")
            length = int(np.asarray(record.vector).size)
            if record.dimension is not None and length != record.dimension:
                raise ValueError(
                    f"vector has {length} dimensions; the record says {record.dimension}"
                )
        item = _record_item(record)
        item.update(self._change_attributes())
        return self._conditional_put(item, record.sequencer)

    def delete(self, image_id: str, *, key: str, sequencer: str) -> bool:
        """Write a tombstone (PutItem, TTL) unless a newer state is stored (False then)."""
        if not image_id or not key or not sequencer:
            raise ValueError("image_id, key and sequencer are required")
        item: Item = {
            ATTR_IMAGE_ID: {"S": image_id},
            ATTR_KEY: {"S": key},
            ATTR_STATUS: {"S": STATUS_DELETED},
            ATTR_SEQUENCER: {"S": sequencer},
            **self._change_attributes(),
        }
        item[ATTR_EXPIRES_AT] = {"N": str(int(self._clock()) + TOMBSTONE_TTL_SECONDS)}
        return self._conditional_put(item, sequencer)

    def _change_attributes(self) -> Item:
        changed_ms = int(self._clock() * 1000)
        return {
            ATTR_CHANGED_AT: {"N": str(changed_ms)},
            ATTR_CHANGE_DAY: {"S": _day_of(changed_ms)},
        }

    def _conditional_put(self, item: Item, sequencer: str) -> bool:
        try:
            self.client.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression=_CONDITION_NEWER_OR_SAME,
                ExpressionAttributeNames={"#id": ATTR_IMAGE_ID, "#seq": ATTR_SEQUENCER},
                ExpressionAttributeValues={":seq": {"S": sequencer}},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # -- record reads -----------------------------------------------------------

    def get(self, image_id: str, *, with_vector: bool = False) -> ImageRecord | None:
        """The record (tombstones are None), read consistently."""
        names = [*RECORD_FIELDS, ATTR_SEQUENCER, *([ATTR_VECTOR] if with_vector else [])]
        projection, attribute_names = _projection(names)
        response = self.client.get_item(
            TableName=self._table,
            Key={ATTR_IMAGE_ID: {"S": image_id}},
            ConsistentRead=True,
            ProjectionExpression=projection,
            ExpressionAttributeNames=attribute_names,
        )
        item = response.get("Item")
        if not item or item.get(ATTR_STATUS, {}).get("S") == STATUS_DELETED:
            return None
        return _item_record(item, with_vector=with_vector)

    def get_many(self, image_ids: Iterable[str]) -> dict[str, ImageRecord]:
        """Records (without vectors) by id via BatchGetItem; missing ids and tombstones
        are left out."""
        wanted = list(dict.fromkeys(image_ids))
        projection, attribute_names = _projection([*RECORD_FIELDS, ATTR_SEQUENCER])
        found: dict[str, ImageRecord] = {}
        for start in range(0, len(wanted), _BATCH_GET_SIZE):
            keys = [{ATTR_IMAGE_ID: {"S": i}} for i in wanted[start : start + _BATCH_GET_SIZE]]
            for item in self._batch_get(keys, projection, attribute_names):
                if item.get(ATTR_STATUS, {}).get("S") != STATUS_DELETED:
                    record = _item_record(item, with_vector=False)
                    found[record.image_id] = record
        return found

    def _batch_get(
        self, keys: builtins.list[Item], projection: str, attribute_names: dict[str, str]
    ) -> Iterator[Item]:
        request: dict[str, Any] = {
            self._table: {
                "Keys": keys,
                "ProjectionExpression": projection,
                "ExpressionAttributeNames": attribute_names,
            }
        }
        for attempt in range(_BATCH_GET_ATTEMPTS):
            response = self.client.batch_get_item(RequestItems=request)
            yield from response.get("Responses", {}).get(self._table, [])
            unprocessed = response.get("UnprocessedKeys", {}).get(self._table)
            if not unprocessed or not unprocessed.get("Keys"):
                return
            request = {self._table: unprocessed}
            # UnprocessedKeys means throttling: back off before asking again.
            self._sleep(min(1.0, 0.05 * 2**attempt))
        raise RuntimeError(
            f"BatchGetItem left keys unprocessed after {_BATCH_GET_ATTEMPTS} attempts"
        )

    def list(
        self, *, prefix: str | None, status: str | None, limit: int, cursor: str | None
    ) -> Page:
        """Records ordered by key, from the ``by_status`` GSI.

        Without ``status``, the indexed and the rejected partitions are read side by
        side and merged by key, so every listing is ordered and a prefix is a key
        condition (a Scan with a filter would read the whole table, vectors included).
        """
        if not 1 <= limit <= _MAX_LIST_LIMIT:
            raise ValueError(f"limit must be between 1 and {_MAX_LIST_LIMIT}")
        if status is not None and status not in _LISTABLE_STATUSES:
            raise ValueError(f"status must be one of {', '.join(_LISTABLE_STATUSES)}")
        prefix = prefix or ""
        statuses = (status,) if status else _LISTABLE_STATUSES
        positions = self._cursor_positions(cursor, prefix, statuses)

        fetched: dict[str, tuple[builtins.list[Item], bool]] = {}
        for name, start in positions.items():
            fetched[name] = self._read_status(name, prefix, start, limit)
        merged = heapq.merge(
            *(
                [(item[ATTR_KEY]["S"], name, n) for n, item in enumerate(items)]
                for name, (items, _) in fetched.items()
            )
        )
        page: builtins.list[ImageRecord] = []
        emitted = dict.fromkeys(fetched, 0)
        for _, name, n in merged:
            if len(page) == limit:
                break
            page.append(_item_record(fetched[name][0][n], with_vector=False))
            emitted[name] = n + 1

        next_positions: dict[str, Item | None] = {}
        for name, (items, more) in fetched.items():
            used = emitted[name]
            if used == len(items) and not more:
                continue  # this partition is exhausted
            next_positions[name] = _status_key(items[used - 1]) if used else positions[name]
        next_cursor = (
            _encode_cursor(
                {"v": _CURSOR_VERSION, "prefix": prefix, "status": status, "at": next_positions}
            )
            if next_positions
            else None
        )
        return Page(items=page, cursor=next_cursor)

    def _cursor_positions(
        self, cursor: str | None, prefix: str, statuses: tuple[str, ...]
    ) -> dict[str, Item | None]:
        if cursor is None:
            return dict.fromkeys(statuses)
        payload = _decode_cursor(cursor)
        if payload.get("v") != _CURSOR_VERSION or set(payload) != {"v", "prefix", "status", "at"}:
            raise ValueError("malformed cursor: not a cursor returned by this API")
        status = statuses[0] if len(statuses) == 1 else None
        if payload["prefix"] != prefix or payload["status"] != status:
            raise ValueError("cursor belongs to a listing with another prefix or status")
        at = payload["at"]
        if (
            not isinstance(at, dict)
            or not at
            or not set(at) <= set(statuses)
            or not all(_valid_start_key(at[name], name, prefix) for name in at)
        ):
            raise ValueError("malformed cursor: not a cursor returned by this API")
        return {name: at[name] for name in statuses if name in at}

    def _read_status(
        self, status: str, prefix: str, start: Item | None, limit: int
    ) -> tuple[builtins.list[Item], bool]:
        """Up to ``limit`` items of one status partition from ``start``; the flag says
        whether more may follow."""
        condition = "#status = :status"
        values: dict[str, Any] = {":status": {"S": status}}
        names = {"#status": ATTR_STATUS}
        if prefix:
            condition += " AND begins_with(#key, :prefix)"
            values[":prefix"] = {"S": prefix}
            names["#key"] = ATTR_KEY
        items: builtins.list[Item] = []
        while len(items) < limit:
            request: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": INDEX_BY_STATUS,
                "KeyConditionExpression": condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
                "Limit": limit - len(items),
            }
            if start is not None:
                request["ExclusiveStartKey"] = start
            response = self.client.query(**request)
            items.extend(response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if start is None:
                return items, False
        return items, True

    # -- vector search ----------------------------------------------------------

    def query(self, vector: Vector, top_k: int, filters: QueryFilters) -> builtins.list[ScoredId]:
        """Exact cosine top-k over the in-memory index, refreshed first when due."""
        with self._lock:
            return self._fresh_matrix().query(vector, top_k, filters)

    def count(self) -> int:
        """Indexed vectors in memory (after a refresh when one is due)."""
        with self._lock:
            return len(self._fresh_matrix())

    def vector_of(self, image_id: str) -> Vector | None:
        """The stored unit vector of an indexed image ("more like this"): from memory,
        else read from the table (it may be newer than the last refresh)."""
        with self._lock:
            vector = self._fresh_matrix().vector(image_id)
        if vector is not None:
            return vector
        record = self.get(image_id, with_vector=True)
        if (
            record is None
            or record.status != STATUS_INDEXED
            or record.vector is None
            or record.model_id != self._model_id
            or record.vector.size != self._dimension
        ):
            return None
        norm = float(np.linalg.norm(record.vector))
        if not np.isfinite(norm) or norm == 0.0:
            return None
        return record.vector / np.float32(norm)

    def refresh(self) -> None:
        """Load (first call) or refresh the in-memory index now."""
        with self._lock:
            if self._matrix is None:
                self._load()
            else:
                self._refresh(self._clock())

    def _fresh_matrix(self) -> MatrixIndex:
        if self._matrix is None:
            self._load()
        else:
            now = self._clock()
            if now - self._attempted >= self._refresh_interval:
                try:
                    self._refresh(now)
                except (ClientError, BotoCoreError) as error:
                    staleness = now - self._watermark
                    if staleness > self._max_staleness:
                        raise StaleIndexError(
                            f"search index not refreshed for {staleness:.0f} s: {error}"
                        ) from error
                    logger.warning(
                        "index refresh failed; serving the state of %.1f s ago",
                        staleness,
                        exc_info=True,
                    )
        assert self._matrix is not None
        return self._matrix

    def _load(self) -> None:
        started = self._clock()
        self._attempted = started
        client = self.client  # resolved here: the scan threads must not take the lock
        segments = self._scan_segments
        if segments == 1:
            parts = [list(self._scan_segment(client, 0, 1))]
        else:
            with ThreadPoolExecutor(max_workers=segments) as pool:
                parts = list(
                    pool.map(
                        lambda s: list(self._scan_segment(client, s, segments)), range(segments)
                    )
                )
        self._matrix = build_matrix_from_items(_drain(parts), self._dimension)
        self._watermark = started
        logger.info(
            "loaded %d vectors in %.0f ms", len(self._matrix), (self._clock() - started) * 1000
        )

    def _scan_segment(self, client: DynamoDBClient, segment: int, total: int) -> Iterator[Item]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "#status = :indexed AND #model = :model AND #dim = :dim",
            "ProjectionExpression": "#id, #key, #ct, #vec",
            "ExpressionAttributeNames": {
                "#status": ATTR_STATUS,
                "#model": "model_id",
                "#dim": "dimension",
                "#id": ATTR_IMAGE_ID,
                "#key": ATTR_KEY,
                "#ct": "content_type",
                "#vec": ATTR_VECTOR,
            },
            "ExpressionAttributeValues": {
                ":indexed": {"S": STATUS_INDEXED},
                ":model": {"S": self._model_id},
                ":dim": {"N": str(self._dimension)},
            },
        }
        if total > 1:
            request["Segment"] = segment
            request["TotalSegments"] = total
        while True:
            response = client.scan(**request)
            yield from response.get("Items", [])
            last = response.get("LastEvaluatedKey")
            if last is None:
                return
            request["ExclusiveStartKey"] = last

    def _refresh(self, now: float) -> None:
        self._attempted = now
        assert self._matrix is not None
        if now - self._watermark > TOMBSTONE_TTL_SECONDS / 2:
            # Tombstones may have expired since: only a full load is correct.
            self._load()
            return
        since_ms = int((self._watermark - self._overlap) * 1000)
        until_ms = int((now + self._overlap) * 1000)
        # Days ascending, changed_at ascending within a day: oldest first, so when an
        # item changes while we read, its newest state is applied last.
        changes = [
            item for day in _days(since_ms, until_ms) for item in self._changes_on(day, since_ms)
        ]
        for item in changes:
            self._apply(self._matrix, item)
        self._watermark = now

    def _changes_on(self, day: str, since_ms: int) -> Iterator[Item]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": INDEX_BY_CHANGE,
            "KeyConditionExpression": "#day = :day AND #changed >= :since",
            "ExpressionAttributeNames": {"#day": ATTR_CHANGE_DAY, "#changed": ATTR_CHANGED_AT},
            "ExpressionAttributeValues": {":day": {"S": day}, ":since": {"N": str(since_ms)}},
        }
        while True:
            response = self.client.query(**request)
            yield from response.get("Items", [])
            last = response.get("LastEvaluatedKey")
            if last is None:
                return
            request["ExclusiveStartKey"] = last

    def _apply(self, matrix: MatrixIndex, item: Item) -> None:
        image_id = item[ATTR_IMAGE_ID]["S"]
        blob = item.get(ATTR_VECTOR, {}).get("B")
        searchable = (
            item.get(ATTR_STATUS, {}).get("S") == STATUS_INDEXED
            and item.get("model_id", {}).get("S") == self._model_id
            and item.get("dimension", {}).get("N") == str(self._dimension)
            and blob is not None
            and len(blob) == self._dimension * VECTOR_DTYPE.itemsize
        )
        if searchable:
            assert blob is not None
            content_type = item.get("content_type", {}).get("S")
            try:
                matrix.upsert(image_id, item[ATTR_KEY]["S"], content_type, decode_vector(blob))
                return
            except ValueError:
                logger.warning("skipped a record with an unusable vector")
        matrix.remove(image_id)


def _projection(names: Iterable[str]) -> tuple[str, dict[str, str]]:
    """A ProjectionExpression with every name aliased (``key``, ``status``, ``size``
    are reserved words)."""
    aliases = {f"#p{n}": name for n, name in enumerate(names)}
    return ", ".join(aliases), aliases


def _drain(parts: list[list[Item]]) -> Iterator[Item]:
    """Yield every item, letting go of each one as it is consumed (a 100k x 1024
    cold load holds 400 MB of vector bytes in these items)."""
    while parts:
        part = parts.pop()
        part.reverse()
        while part:
            yield part.pop()


def _days(since_ms: int, until_ms: int) -> Iterator[str]:
    day = datetime.fromtimestamp(since_ms / 1000, tz=UTC).date()
    last = datetime.fromtimestamp(until_ms / 1000, tz=UTC).date()
    while day <= last:
        yield day.isoformat()
        day += timedelta(days=1)
