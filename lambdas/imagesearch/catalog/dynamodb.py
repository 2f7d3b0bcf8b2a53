"""The ``Catalog`` adapter: the DynamoDB images table.

One item per object key: the record (status, reason, metadata, ordering token) and, for
indexed images, the vector as raw little-endian float32 bytes (the source of truth from
which any vector index is rebuilt without model calls).

Writes are conditional PutItems ordered by the S3 sequencer token (deletes write a
tombstone with a TTL, so an older create cannot resurrect the image and warm search
instances see the removal in the change log). Besides the record reads and the
listing, the embedded index reads its cold load (parallel Scan, when no snapshot
serves) and its incremental refresh through this adapter: the change log (the
``changes_by_shard`` GSI, without vectors) says what changed, and ``vector_items``
fetches the vectors of only the rows a reader does not hold at that revision.

Only the low-level client is used (GetItem, PutItem, Scan, Query, BatchGetItem, and
UpdateItem for the switch and the reconciliation: the IAM policies grant exactly
these); the boto3 resource layer is slow on binary attributes and turns numbers into
Decimals.
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
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np
from botocore.exceptions import ClientError

from imagesearch.health import ImageCount
from imagesearch.ports import Page, VectorEntry
from imagesearch.records import (
    VECTOR_DTYPE,
    ImageRecord,
    api_delete_token,
    decode_vector,
    encode_vector,
    is_valid_image_id,
)
from imagesearch.resources import (
    ATTR_ALT_DIMENSION,
    ATTR_ALT_MODEL_ID,
    ATTR_ALT_VECTOR,
    ATTR_CHANGE_DAY,
    ATTR_CHANGE_SHARD,
    ATTR_CHANGED_AT,
    ATTR_EXPIRES_AT,
    ATTR_IMAGE_ID,
    ATTR_KEY,
    ATTR_REVISION,
    ATTR_SEQUENCER,
    ATTR_STATUS,
    ATTR_VECTOR,
    CATALOG_CONNECT_TIMEOUT_SECONDS,
    CATALOG_MAX_ATTEMPTS,
    CATALOG_READ_TIMEOUT_SECONDS,
    CHANGE_SHARDS,
    IMAGE_COUNT_ID,
    INDEX_BY_STATUS,
    INDEX_CHANGES,
    MAX_KEY_BYTES,
    MODEL_STATE_ID,
    RECORD_FIELDS,
    REINDEX_RUN_PREFIX,
    STATUS_DELETED,
    STATUS_FAILED,
    STATUS_INDEXED,
    STATUS_REJECTED,
    TOMBSTONE_TTL_SECONDS,
    change_shard,
)
from imagesearch.switch import ModelState, Space, given_up_prefixes, settled_status

DynamoDBClient = Any  # the low-level boto3 client (no stubs at runtime)

logger = logging.getLogger(__name__)

Item = dict[str, dict[str, Any]]

ATTR_REEMBED_FAILURES = "reembed_failures"
_NUMBER_FIELDS = frozenset(
    {"size", "width", "height", "dimension", ATTR_ALT_DIMENSION, ATTR_REEMBED_FAILURES}
)
_LISTABLE_STATUSES = (STATUS_INDEXED, STATUS_REJECTED, STATUS_FAILED)
_MAX_LIST_LIMIT = 1000
_BATCH_GET_SIZE = 100
_BATCH_GET_ATTEMPTS = 8
_MAX_CURSOR_CHARS = 8192
_CURSOR_VERSION = 1
_WRITABLE_STATUSES = (STATUS_INDEXED, STATUS_REJECTED, STATUS_FAILED)
# A newer ordering token wins; under the same token (the same event handled again) the
# later stamp wins, so an attempt whose outcome was unknown (timed out) and that lands
# after its retry cannot put the older stamp back (a stamp the change log has passed).
_CONDITION_NEWER_OR_SAME = (
    "attribute_not_exists(#id) OR #seq < :seq"
    " OR (#seq = :seq AND (attribute_not_exists(#changed) OR #changed <= :changed))"
)
# What a record read returns: the public fields plus the ordering bookkeeping and the
# model of a second vector (during a model switch).
_RECORD_ATTRIBUTES = (
    *RECORD_FIELDS,
    ATTR_SEQUENCER,
    ATTR_REVISION,
    ATTR_ALT_MODEL_ID,
    ATTR_ALT_DIMENSION,
    ATTR_REEMBED_FAILURES,
)
_VECTOR_ATTRIBUTES = (ATTR_VECTOR, ATTR_ALT_VECTOR)


class CatalogThrottled(RuntimeError):
    """DynamoDB kept answering part of a batch read as unprocessed (throttling)."""


# --- item <-> record ---------------------------------------------------------


def _day_of(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def _record_item(record: ImageRecord) -> Item:
    item: Item = {}
    for name in (*RECORD_FIELDS, ATTR_SEQUENCER, ATTR_REEMBED_FAILURES):
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
        if record.alt_vector is not None and record.alt_model_id and record.alt_dimension:
            item[ATTR_ALT_VECTOR] = {"B": encode_vector(record.alt_vector)}
            item[ATTR_ALT_MODEL_ID] = {"S": record.alt_model_id}
            item[ATTR_ALT_DIMENSION] = {"N": str(int(record.alt_dimension))}
    return item


def _item_record(item: Mapping[str, Mapping[str, Any]], *, with_vector: bool) -> ImageRecord:
    values: dict[str, Any] = {}
    for name in _RECORD_ATTRIBUTES:
        attribute = item.get(name)
        if attribute is None:
            continue
        values[name] = int(attribute["N"]) if name in _NUMBER_FIELDS else attribute["S"]
    if with_vector and ATTR_VECTOR in item:
        values["vector"] = decode_vector(bytes(item[ATTR_VECTOR]["B"])).copy()
    if with_vector and ATTR_ALT_VECTOR in item:
        values["alt_vector"] = decode_vector(bytes(item[ATTR_ALT_VECTOR]["B"])).copy()
    return ImageRecord(**values)


def select_slot(
    item: Mapping[str, Mapping[str, Any]], model_id: str, dimension: int
) -> Item | None:
    """``item`` with the vector of ``model_id`` at ``dimension`` as its ``vector`` (and
    that model in ``model_id``/``dimension``), whichever slot holds it; None when
    neither does. Readers of one model space use this on raw items."""
    dim = str(dimension)
    if (
        item.get("model_id", {}).get("S") == model_id
        and item.get("dimension", {}).get("N") == dim
        and ATTR_VECTOR in item
    ):
        return cast(Item, dict(item))
    if (
        item.get(ATTR_ALT_MODEL_ID, {}).get("S") == model_id
        and item.get(ATTR_ALT_DIMENSION, {}).get("N") == dim
        and ATTR_ALT_VECTOR in item
    ):
        chosen = cast(Item, dict(item))
        chosen[ATTR_VECTOR] = dict(item[ATTR_ALT_VECTOR])
        chosen["model_id"] = {"S": model_id}
        chosen["dimension"] = {"N": dim}
        return chosen
    return None


def _state_item(state: ModelState) -> Item:
    item: Item = {
        ATTR_IMAGE_ID: {"S": MODEL_STATE_ID},
        "phase": {"S": state.phase},
        "version": {"N": str(state.version)},
        "enqueued": {"N": str(state.enqueued)},
        "removed": {"N": str(state.removed)},
        "given_up": {"N": str(state.given_up)},
        "settled": {"N": str(state.settled)},
        "healing": {"BOOL": state.healing},
    }
    for name in ("serving", "target", "previous"):
        space: Space | None = getattr(state, name)
        if space is not None:
            item[f"{name}_model_id"] = {"S": space.model_id}
            item[f"{name}_dimension"] = {"N": str(space.dimension)}
    for name in ("covered", "total", "lacking"):
        if getattr(state, name) is not None:
            item[name] = {"N": str(getattr(state, name))}
    for name in ("cursor", "started_at", "flipped_at", "finished_at", "updated_at"):
        if getattr(state, name) is not None:
            item[name] = {"S": str(getattr(state, name))}
    return item


def _item_state(item: Mapping[str, Mapping[str, Any]]) -> ModelState:
    def space(name: str) -> Space | None:
        model = item.get(f"{name}_model_id", {}).get("S")
        dimension = item.get(f"{name}_dimension", {}).get("N")
        return None if model is None or dimension is None else Space(model, int(dimension))

    def number(name: str) -> int | None:
        value = item.get(name, {}).get("N")
        return None if value is None else int(value)

    def text(name: str) -> str | None:
        value = item.get(name, {}).get("S")
        return None if value is None else str(value)

    serving = space("serving")
    phase = text("phase")
    if serving is None or phase not in ("serving", "switching", "removing"):
        raise ValueError("the model switch state item is malformed")
    return ModelState(
        phase=phase,  # type: ignore[arg-type]
        serving=serving,
        target=space("target"),
        previous=space("previous"),
        covered=number("covered"),
        total=number("total"),
        enqueued=number("enqueued") or 0,
        removed=number("removed") or 0,
        given_up=number("given_up") or 0,
        settled=number("settled") or 0,
        lacking=number("lacking"),
        healing=bool(item.get("healing", {}).get("BOOL", False)),
        cursor=text("cursor"),
        started_at=text("started_at"),
        flipped_at=text("flipped_at"),
        finished_at=text("finished_at"),
        updated_at=text("updated_at"),
        version=number("version") or 0,
    )


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


class DynamoDBCatalog:
    """``Catalog`` on the DynamoDB images table.

    (``builtins.list`` in annotations below: the ``list`` method shadows the type.)
    """

    def __init__(
        self,
        table_name: str,
        *,
        client: DynamoDBClient | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._table = table_name
        self._client = client
        self._clock = clock
        self._sleep = sleep
        self._client_lock = threading.Lock()

    @property
    def table_name(self) -> str:
        return self._table

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    import boto3  # deferred: keeps the handler's cold import fast

                    self._client = boto3.client("dynamodb", config=catalog_client_config())
        return self._client

    # -- writes -----------------------------------------------------------------

    def put(self, record: ImageRecord, *, if_revision: str | None = None) -> bool:
        """PutItem of the whole record unless a newer state is stored (False then).
        Equal ordering tokens are allowed, so a retried event can finish its write.
        ``if_revision``: only over the stored record of that revision (read before)."""
        if record.status not in _WRITABLE_STATUSES:
            raise ValueError(f"cannot put a record with status {record.status!r}")
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
            if record.alt_vector is not None:
                alt = int(np.asarray(record.alt_vector).size)
                if not record.alt_model_id or alt != record.alt_dimension:
                    raise ValueError("the second vector needs its model and dimension")
        item = _record_item(record)
        item.update(self._change_attributes(record.image_id))
        return self._conditional_put(item, record.sequencer, if_revision=if_revision)

    def delete(self, image_id: str, *, key: str, sequencer: str) -> bool:
        """Write a tombstone (PutItem, TTL) unless a newer state is stored (False then)."""
        if not image_id or not key or not sequencer:
            raise ValueError("image_id, key and sequencer are required")
        return self._conditional_put(self._tombstone_item(image_id, key, sequencer), sequencer)

    def tombstone(self, record: ImageRecord) -> bool:
        """The API's DELETE: the tombstone ingest writes for an ObjectRemoved, written
        only if ``record`` (as read) is still the stored revision (False otherwise),
        under a token just newer than the record's (``records.api_delete_token``)."""
        if not record.image_id or not record.key:
            raise ValueError("record needs an image_id and a key")
        item = self._tombstone_item(record.image_id, record.key, api_delete_token(record.sequencer))
        condition = "#rev = :rev" if record.revision else "attribute_not_exists(#rev)"
        values = {":rev": {"S": record.revision}} if record.revision else None
        try:
            self.client.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression=f"attribute_exists(#id) AND {condition}",
                ExpressionAttributeNames={"#id": ATTR_IMAGE_ID, "#rev": ATTR_REVISION},
                **({"ExpressionAttributeValues": values} if values else {}),
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _tombstone_item(self, image_id: str, key: str, sequencer: str) -> Item:
        return {
            ATTR_IMAGE_ID: {"S": image_id},
            ATTR_KEY: {"S": key},
            ATTR_STATUS: {"S": STATUS_DELETED},
            ATTR_SEQUENCER: {"S": sequencer},
            **self._change_attributes(image_id),
            ATTR_EXPIRES_AT: {"N": str(int(self._clock()) + TOMBSTONE_TTL_SECONDS)},
        }

    def _change_attributes(self, image_id: str) -> Item:
        changed_ms = int(self._clock() * 1000)
        return {
            ATTR_CHANGED_AT: {"N": str(changed_ms)},
            ATTR_CHANGE_SHARD: {"S": change_shard(image_id, changed_ms)},
            # Still written: the legacy by_change index needs it while a stack upgrades.
            ATTR_CHANGE_DAY: {"S": _day_of(changed_ms)},
            # Unique per write: tells a reader whether the record changed since it last
            # looked, even when a retry or backfill rewrote it under the same token.
            ATTR_REVISION: {"S": uuid.uuid4().hex},
        }

    def _conditional_put(
        self, item: Item, sequencer: str, *, if_revision: str | None = None
    ) -> bool:
        condition = _CONDITION_NEWER_OR_SAME
        names = {"#id": ATTR_IMAGE_ID, "#seq": ATTR_SEQUENCER, "#changed": ATTR_CHANGED_AT}
        values = {":seq": {"S": sequencer}, ":changed": item[ATTR_CHANGED_AT]}
        if if_revision is not None:
            condition = f"({condition}) AND #rev = :rev"
            names["#rev"] = ATTR_REVISION
            values[":rev"] = {"S": if_revision}
        try:
            self.client.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # -- record reads -----------------------------------------------------------

    def get(
        self, image_id: str, *, with_vector: bool = False, include_deleted: bool = False
    ) -> ImageRecord | None:
        """The record, read consistently (tombstones are None unless ``include_deleted``)."""
        names = [*_RECORD_ATTRIBUTES, *(_VECTOR_ATTRIBUTES if with_vector else ())]
        projection, attribute_names = _projection(names)
        response = self.client.get_item(
            TableName=self._table,
            Key={ATTR_IMAGE_ID: {"S": image_id}},
            ConsistentRead=True,
            ProjectionExpression=projection,
            ExpressionAttributeNames=attribute_names,
        )
        item = response.get("Item")
        if not item:
            return None
        if item.get(ATTR_STATUS, {}).get("S") == STATUS_DELETED and not include_deleted:
            return None
        return _item_record(item, with_vector=with_vector)

    def get_many(
        self,
        image_ids: Iterable[str],
        *,
        with_vector: bool = False,
        include_deleted: bool = False,
        consistent: bool = False,
    ) -> dict[str, ImageRecord]:
        """Records by id via BatchGetItem (100 keys a call); missing ids are left out,
        tombstones too unless ``include_deleted``. ``consistent``: strongly consistent
        reads (the vector sync's reads must see every earlier write)."""
        wanted = list(dict.fromkeys(image_ids))
        names = [*_RECORD_ATTRIBUTES, *(_VECTOR_ATTRIBUTES if with_vector else ())]
        projection, attribute_names = _projection(names)
        found: dict[str, ImageRecord] = {}
        for start in range(0, len(wanted), _BATCH_GET_SIZE):
            keys = [{ATTR_IMAGE_ID: {"S": i}} for i in wanted[start : start + _BATCH_GET_SIZE]]
            for item in self._batch_get(keys, projection, attribute_names, consistent=consistent):
                if include_deleted or item.get(ATTR_STATUS, {}).get("S") != STATUS_DELETED:
                    record = _item_record(item, with_vector=with_vector)
                    found[record.image_id] = record
        return found

    def _batch_get(
        self,
        keys: builtins.list[Item],
        projection: str,
        attribute_names: dict[str, str],
        *,
        consistent: bool = False,
    ) -> Iterator[Item]:
        # Every read of items by key comes here (local mode reads moto's memory instead:
        # local/moto_catalog.py).
        request: dict[str, Any] = {
            self._table: {
                "Keys": keys,
                "ProjectionExpression": projection,
                "ExpressionAttributeNames": attribute_names,
                **({"ConsistentRead": True} if consistent else {}),
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
        raise CatalogThrottled(
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

    # -- counts and reads for index loading -----------------------------------

    def counts(self) -> dict[str, int]:
        """Records per listable status (COUNT queries on ``by_status``: no item data)."""
        return {status: self._count(status) for status in _LISTABLE_STATUSES}

    def count_other_model(self, model_id: str, dimension: int) -> int:
        """Indexed records embedded with another model or dimension."""
        return self._count(
            STATUS_INDEXED,
            FilterExpression="#m <> :m OR #d <> :d",
            names={"#m": "model_id", "#d": "dimension"},
            values={":m": {"S": model_id}, ":d": {"N": str(dimension)}},
        )

    def count_model(self, model_id: str, dimension: int) -> int:
        """Indexed records whose primary vector is of this model and dimension."""
        return self._count(
            STATUS_INDEXED,
            FilterExpression="#m = :m AND #d = :d",
            names={"#m": "model_id", "#d": "dimension"},
            values={":m": {"S": model_id}, ":d": {"N": str(dimension)}},
        )

    def lacking(
        self, model_id: str, dimension: int, *, limit: int, cursor: str | None
    ) -> tuple[builtins.list[str], str | None]:
        """Keys of indexed records whose primary vector is not of this model and
        dimension (``by_status`` GSI, no vectors read), from ``cursor`` on, at most
        ``limit``, and the cursor to continue from (None: the end was reached); records
        this space gave up (``switch.given_up_prefixes``) are left out."""
        failed, refused = given_up_prefixes(Space(model_id, dimension))
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": INDEX_BY_STATUS,
            "KeyConditionExpression": "#s = :s",
            # Records this space gave up are left out: they no longer hold the flip.
            "FilterExpression": "(#m <> :m OR #d <> :d OR attribute_not_exists(#m))"
            " AND NOT (begins_with(#r, :failed) OR begins_with(#r, :refused))",
            "ProjectionExpression": "#s, #k, #id",
            "ExpressionAttributeNames": {
                "#s": ATTR_STATUS,
                "#k": ATTR_KEY,
                "#id": ATTR_IMAGE_ID,
                "#m": "model_id",
                "#d": "dimension",
                "#r": "reason",
            },
            "ExpressionAttributeValues": {
                ":s": {"S": STATUS_INDEXED},
                ":m": {"S": model_id},
                ":d": {"N": str(dimension)},
                ":failed": {"S": failed},
                ":refused": {"S": refused},
            },
        }
        if cursor:
            try:
                request["ExclusiveStartKey"] = json.loads(cursor)
            except ValueError:
                logger.warning("ignoring a malformed switch cursor")
        keys: builtins.list[str] = []
        while len(keys) < limit:
            request["Limit"] = max(limit - len(keys), 100)
            response = self.client.query(**request)
            items = response.get("Items", [])
            for n, item in enumerate(items):
                keys.append(item[ATTR_KEY]["S"])
                if len(keys) == limit and n + 1 < len(items):
                    return keys, json.dumps(_status_key(item))
            last = response.get("LastEvaluatedKey")
            if last is None:
                return keys, None
            request["ExclusiveStartKey"] = last
        return keys, json.dumps(request["ExclusiveStartKey"])

    def _given_up_request(self, space: Space) -> dict[str, Any]:
        failed, refused = given_up_prefixes(space)
        return {
            "TableName": self._table,
            "IndexName": INDEX_BY_STATUS,
            "KeyConditionExpression": "#s = :s",
            "FilterExpression": "begins_with(#r, :failed) OR begins_with(#r, :refused)",
            "ExpressionAttributeNames": {"#s": ATTR_STATUS, "#r": "reason"},
            "ExpressionAttributeValues": {
                ":s": {"S": STATUS_INDEXED},
                ":failed": {"S": failed},
                ":refused": {"S": refused},
            },
        }

    def given_up(self, space: Space, *, limit: int) -> builtins.list[str]:
        """Ids of indexed records ``space`` gave up during a switch, at most ``limit``."""
        request = {**self._given_up_request(space), "ProjectionExpression": "#s, #k, #id"}
        request["ExpressionAttributeNames"] = {
            **request["ExpressionAttributeNames"],
            "#k": ATTR_KEY,
            "#id": ATTR_IMAGE_ID,
        }
        found: builtins.list[str] = []
        while len(found) < limit:
            response = self.client.query(**request)
            found.extend(item[ATTR_IMAGE_ID]["S"] for item in response.get("Items", []))
            last = response.get("LastEvaluatedKey")
            if last is None:
                break
            request["ExclusiveStartKey"] = last
        return found[:limit]

    def count_given_up(self, space: Space) -> int:
        """Indexed records ``space`` gave up during a switch."""
        request = self._given_up_request(space)
        return self._count(
            STATUS_INDEXED,
            FilterExpression=request["FilterExpression"],
            names={"#r": "reason"},
            values={k: v for k, v in request["ExpressionAttributeValues"].items() if k != ":s"},
        )

    def settle_given_up(self, image_id: str, space: Space) -> bool:
        """After the flip: a record ``space`` gave up becomes ``failed`` or ``rejected``
        with the model's cause (ordered like every write; False if it changed since)."""
        from dataclasses import replace

        record = self.get(image_id)
        if record is None or record.status != STATUS_INDEXED or record.reason is None:
            return False
        if not record.reason.startswith(given_up_prefixes(space)):
            return False
        status, reason = settled_status(record.reason, space)
        settled = replace(
            record,
            status=status,
            reason=reason,
            model_id=space.model_id,
            dimension=space.dimension,
            vector=None,
            alt_model_id=None,
            alt_dimension=None,
            alt_vector=None,
            reembed_failures=None,
        )
        return self.put(settled, if_revision=record.revision)

    def alt_ids(self, model_id: str, dimension: int) -> Iterator[str]:
        """Ids of records holding a second vector of this model and dimension (a Scan:
        the alt slot is in no index; run once per switch, after the flip)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "#am = :m AND #ad = :d",
            "ProjectionExpression": "#id",
            "ExpressionAttributeNames": {
                "#id": ATTR_IMAGE_ID,
                "#am": ATTR_ALT_MODEL_ID,
                "#ad": ATTR_ALT_DIMENSION,
            },
            "ExpressionAttributeValues": {":m": {"S": model_id}, ":d": {"N": str(dimension)}},
        }
        for item in _every_item(self.client.scan, request):
            yield item[ATTR_IMAGE_ID]["S"]

    def remove_alt(self, image_id: str, model_id: str, dimension: int) -> bool:
        """Remove the record's second vector if it is of this model and dimension. Not
        a new revision: no reader of the record's primary model needs to know."""
        try:
            self.client.update_item(
                TableName=self._table,
                Key={ATTR_IMAGE_ID: {"S": image_id}},
                UpdateExpression="REMOVE #av, #am, #ad",
                ConditionExpression="#am = :m AND #ad = :d",
                ExpressionAttributeNames={
                    "#av": ATTR_ALT_VECTOR,
                    "#am": ATTR_ALT_MODEL_ID,
                    "#ad": ATTR_ALT_DIMENSION,
                },
                ExpressionAttributeValues={":m": {"S": model_id}, ":d": {"N": str(dimension)}},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # -- the model switch's state item ----------------------------------------------

    def model_state(self) -> ModelState | None:
        """The model switch's state (None: no switch ever ran)."""
        response = self.client.get_item(
            TableName=self._table, Key={ATTR_IMAGE_ID: {"S": MODEL_STATE_ID}}, ConsistentRead=True
        )
        item = response.get("Item")
        return None if not item else _item_state(item)

    def put_model_state(self, state: ModelState, *, expected_version: int | None) -> bool:
        """Write the state if the stored one has ``expected_version`` (None: if there is
        none). False when another writer came first."""
        if expected_version is None:
            condition = "attribute_not_exists(#id)"
            values: dict[str, Any] = {}
        else:
            condition = "#v = :v"
            values = {":v": {"N": str(expected_version)}}
        names = {"#id": ATTR_IMAGE_ID} if expected_version is None else {"#v": "version"}
        try:
            self.client.put_item(
                TableName=self._table,
                Item=_state_item(state),
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                **({"ExpressionAttributeValues": values} if values else {}),
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    # -- GET /health's published image count (imagesearch.health) -----------------

    def indexed_count(self) -> int:
        """Indexed records, whatever their model (a COUNT query over the ``indexed``
        partition of ``by_status``: it reads every entry there, so only the maintenance
        function calls it, never a request)."""
        return self._count(STATUS_INDEXED)

    def publish_count(self, count: ImageCount) -> None:
        """Write the count /health answers (one PutItem; the last writer wins)."""
        item: Item = {
            ATTR_IMAGE_ID: {"S": IMAGE_COUNT_ID},
            "images": {"N": str(count.images)},
            "as_of_ms": {"N": str(count.as_of_ms)},
        }
        if count.model_id is not None and count.dimension is not None:
            item["model_id"] = {"S": count.model_id}
            item["dimension"] = {"N": str(count.dimension)}
        self.client.put_item(TableName=self._table, Item=item)

    def published_count(self) -> ImageCount | None:
        """The count last published (one eventually consistent GetItem; None: none yet).
        ValueError when the item is malformed."""
        item = self.client.get_item(
            TableName=self._table, Key={ATTR_IMAGE_ID: {"S": IMAGE_COUNT_ID}}
        ).get("Item")
        if not item:
            return None
        try:
            return ImageCount(
                images=int(item["images"]["N"]),
                as_of_ms=int(item["as_of_ms"]["N"]),
                model_id=item["model_id"]["S"] if "model_id" in item else None,
                dimension=int(item["dimension"]["N"]) if "dimension" in item else None,
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"the published image count item is malformed: {error}") from error

    # -- unfinished reindex runs -------------------------------------------------------

    def reindex_began(self, index_name: str, started_ms: int) -> int:
        """Record that a reindex of ``index_name`` began at ``started_ms``, unless an
        unfinished run's start is recorded already; returns the recorded start (the
        earliest unfinished run's), from which the change log must be re-synced."""
        response = self.client.update_item(
            TableName=self._table,
            Key={ATTR_IMAGE_ID: {"S": REINDEX_RUN_PREFIX + index_name}},
            UpdateExpression="SET started_ms = if_not_exists(started_ms, :s)",
            ExpressionAttributeValues={":s": {"N": str(started_ms)}},
            ReturnValues="ALL_NEW",
        )
        return int(response["Attributes"]["started_ms"]["N"])

    def reindex_finished(self, index_name: str, started_ms: int) -> bool:
        """Forget the run that began at ``started_ms`` (its change-log pass is done).
        False when the recorded start is another (a later run's, begun after this run's
        record was removed): that record stays."""
        try:
            self.client.delete_item(
                TableName=self._table,
                Key={ATTR_IMAGE_ID: {"S": REINDEX_RUN_PREFIX + index_name}},
                ConditionExpression="started_ms = :s",
                ExpressionAttributeValues={":s": {"N": str(started_ms)}},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _count(self, status: str, **extra: Any) -> int:
        names = {"#s": ATTR_STATUS, **extra.pop("names", {})}
        values = {":s": {"S": status}, **extra.pop("values", {})}
        total = 0
        for page in self.client.get_paginator("query").paginate(
            TableName=self._table,
            IndexName=INDEX_BY_STATUS,
            KeyConditionExpression="#s = :s",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            Select="COUNT",
            **extra,
        ):
            total += int(page["Count"])
        return total

    def recent(self, status: str, limit: int) -> builtins.list[ImageRecord]:
        """The ``limit`` records of ``status`` written last (by ``indexed_at``)."""
        if status not in _LISTABLE_STATUSES:
            raise ValueError(f"status must be one of {', '.join(_LISTABLE_STATUSES)}")
        latest: builtins.list[tuple[str, ImageRecord]] = []
        for page in self.client.get_paginator("query").paginate(
            TableName=self._table,
            IndexName=INDEX_BY_STATUS,
            KeyConditionExpression="#s = :s",
            ExpressionAttributeNames={"#s": ATTR_STATUS},
            ExpressionAttributeValues={":s": {"S": status}},
        ):
            for item in page.get("Items") or []:
                record = _item_record(item, with_vector=False)
                latest.append((record.indexed_at or "", record))
            latest = heapq.nlargest(limit, latest, key=lambda pair: pair[0])
        return [record for _, record in latest]

    def indexed_vectors(
        self, *, model_id: str, dimension: int, segment: int = 0, total_segments: int = 1
    ) -> Iterator[VectorEntry]:
        """Every indexed vector of ``model_id`` at ``dimension``, either slot (reindex,
        rebuilds), or those of one parallel Scan segment."""
        expected = dimension * VECTOR_DTYPE.itemsize
        for item in self.scan_vector_items(
            model_id=model_id, dimension=dimension, segment=segment, total_segments=total_segments
        ):
            blob = item.get(ATTR_VECTOR, {}).get("B")
            if blob is None or len(blob) != expected:
                continue
            content_type = item.get("content_type")
            yield VectorEntry(
                image_id=item[ATTR_IMAGE_ID]["S"],
                key=item[ATTR_KEY]["S"],
                content_type=None if content_type is None else content_type["S"],
                vector=decode_vector(bytes(blob)),
            )

    def scan_vector_items(
        self, *, model_id: str, dimension: int, segment: int = 0, total_segments: int = 1
    ) -> Iterator[Item]:
        """Raw items (id, key, content type, vector bytes) of the indexed records of one
        model and dimension, one Scan segment of ``total_segments``. Raw, so that a bulk
        loader copies vector bytes straight into its matrix. During a model switch the
        vector may be in the second slot: each item comes with it as ``vector``."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "#status = :indexed AND ((#model = :model AND #dim = :dim)"
            " OR (#amodel = :model AND #adim = :dim))",
            "ProjectionExpression": "#id, #key, #ct, #vec, #rev, #model, #dim, #avec, #amodel,"
            " #adim",
            "ExpressionAttributeNames": {
                "#avec": ATTR_ALT_VECTOR,
                "#amodel": ATTR_ALT_MODEL_ID,
                "#adim": ATTR_ALT_DIMENSION,
                "#rev": ATTR_REVISION,
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
                ":model": {"S": model_id},
                ":dim": {"N": str(dimension)},
            },
        }
        if total_segments > 1:
            request["Segment"] = segment
            request["TotalSegments"] = total_segments
        for item in _every_item(self.client.scan, request):
            chosen = select_slot(item, model_id, dimension)
            if chosen is not None:
                chosen.pop(ATTR_ALT_VECTOR, None)
                yield chosen

    def changes(self, since_ms: int, until_ms: int, *, brief: bool = False) -> Iterator[Item]:
        """Raw change-log items written from ``since_ms`` on, WITHOUT vectors (id, key,
        status, revision, content type, model, dimension, changed_at; with ``brief``
        only id, status, revision and changed_at: what an index refresh decides on, and
        half the parsing), oldest first (``changed_at`` ascending over every day and
        shard), so that when an item changes while this is read, its newest state comes
        last."""
        found: builtins.list[Item] = []
        for day in _days(since_ms, until_ms):
            for shard in range(CHANGE_SHARDS):
                found.extend(self._change_partition(f"{day}#{shard}", since_ms, brief))
        found.sort(key=lambda item: int(item[ATTR_CHANGED_AT]["N"]))
        return iter(found)

    def count_changes(self, since_ms: int, until_ms: int) -> int:
        """How many change-log entries were written from ``since_ms`` on (COUNT
        queries: no item comes back; the snapshot writer's cheap check)."""
        total = 0
        for day in _days(since_ms, until_ms):
            for shard in range(CHANGE_SHARDS):
                request: dict[str, Any] = {
                    **self._change_query(f"{day}#{shard}", since_ms),
                    "Select": "COUNT",
                }
                while True:
                    response = self.client.query(**request)
                    total += int(response.get("Count", 0))
                    last = response.get("LastEvaluatedKey")
                    if last is None:
                        break
                    request["ExclusiveStartKey"] = last
        return total

    def change_states(self) -> Iterator[Item]:
        """Every record in the change log as it is now (a Scan of the ``changes_by_shard``
        GSI, eventually consistent: id, status, revision, model, dimension and
        changed_at; no vector, ~200 bytes an item): what the reconciliation compares
        with a snapshot. Records written before that GSI existed are not in it."""
        names = {
            "#id": ATTR_IMAGE_ID,
            "#status": ATTR_STATUS,
            "#rev": ATTR_REVISION,
            "#model": "model_id",
            "#dim": "dimension",
            "#changed": ATTR_CHANGED_AT,
        }
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": INDEX_CHANGES,
            "ProjectionExpression": ", ".join(names),
            "ExpressionAttributeNames": names,
        }
        yield from _every_item(self.client.scan, request)

    def record_states(self, image_ids: Iterable[str]) -> dict[str, Item]:
        """The same attributes as ``change_states`` (and the second slot's model and
        dimension), read consistently by BatchGetItem, of the ids that exist (tombstones
        included): the reconciliation's check of rows the change log did not show."""
        names = [
            ATTR_IMAGE_ID,
            ATTR_STATUS,
            ATTR_REVISION,
            "model_id",
            "dimension",
            ATTR_CHANGED_AT,
            ATTR_ALT_MODEL_ID,
            ATTR_ALT_DIMENSION,
        ]
        return self._consistent_items(image_ids, names)

    def reannounce(self, image_id: str, revision: str | None) -> bool:
        """Write the record into the change log again, as it is (new ``changed_at`` and
        shard; same revision, so a reader holding it fetches nothing): the
        reconciliation's repair of a write the change log's readers missed. False when
        the record is no longer at ``revision`` (its newer write is in the log anyway)."""
        changed_ms = int(self._clock() * 1000)
        names = {
            "#changed": ATTR_CHANGED_AT,
            "#shard": ATTR_CHANGE_SHARD,
            "#day": ATTR_CHANGE_DAY,
            "#rev": ATTR_REVISION,
        }
        values: dict[str, Any] = {
            ":changed": {"N": str(changed_ms)},
            ":shard": {"S": change_shard(image_id, changed_ms)},
            ":day": {"S": _day_of(changed_ms)},
        }
        if revision is None:
            names["#id"] = ATTR_IMAGE_ID
            condition = "attribute_exists(#id) AND attribute_not_exists(#rev)"
        else:
            condition = "#rev = :rev"
            values[":rev"] = {"S": revision}
        try:
            self.client.update_item(
                TableName=self._table,
                Key={ATTR_IMAGE_ID: {"S": image_id}},
                UpdateExpression="SET #changed = :changed, #shard = :shard, #day = :day",
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _change_query(self, partition: str, since_ms: int) -> dict[str, Any]:
        return {
            "TableName": self._table,
            "IndexName": INDEX_CHANGES,
            "KeyConditionExpression": "#shard = :shard AND #changed >= :since",
            "ExpressionAttributeNames": {"#shard": ATTR_CHANGE_SHARD, "#changed": ATTR_CHANGED_AT},
            "ExpressionAttributeValues": {
                ":shard": {"S": partition},
                ":since": {"N": str(since_ms)},
            },
        }

    def _change_partition(self, partition: str, since_ms: int, brief: bool) -> Iterator[Item]:
        request = self._change_query(partition, since_ms)
        if brief:
            request["ProjectionExpression"] = "#id, #status, #rev, #changed"
            request["ExpressionAttributeNames"].update(
                {"#id": ATTR_IMAGE_ID, "#status": ATTR_STATUS, "#rev": ATTR_REVISION}
            )
        yield from _every_item(self.client.query, request)

    def vector_items(self, image_ids: Iterable[str]) -> dict[str, Item]:
        """Raw items WITH vectors (id, key, status, revision, content type, model,
        dimension, vector, and a second vector's model, dimension and bytes) of the ids
        that exist, read consistently by BatchGetItem: the state at least as new as the
        change that named them (``select_slot`` picks one model's vector)."""
        names = [
            ATTR_IMAGE_ID,
            ATTR_KEY,
            ATTR_STATUS,
            ATTR_REVISION,
            "content_type",
            "model_id",
            "dimension",
            ATTR_VECTOR,
            ATTR_ALT_MODEL_ID,
            ATTR_ALT_DIMENSION,
            ATTR_ALT_VECTOR,
        ]
        return self._consistent_items(image_ids, names)

    def _consistent_items(self, image_ids: Iterable[str], names: Sequence[str]) -> dict[str, Item]:
        """``names`` of each id's item that exists, by consistent BatchGetItem pages."""
        wanted = builtins.list(dict.fromkeys(image_ids))
        projection, attribute_names = _projection(names)
        found: dict[str, Item] = {}
        for start in range(0, len(wanted), _BATCH_GET_SIZE):
            keys = [{ATTR_IMAGE_ID: {"S": i}} for i in wanted[start : start + _BATCH_GET_SIZE]]
            for item in self._batch_get(keys, projection, attribute_names, consistent=True):
                found[item[ATTR_IMAGE_ID]["S"]] = item
        return found


def _every_item(call: Callable[..., Any], request: dict[str, Any]) -> Iterator[Item]:
    """Every item of a Query or Scan (``call``), page after page (``request`` is
    updated with each page's start key)."""
    while True:
        response = call(**request)
        yield from response.get("Items", [])
        last = response.get("LastEvaluatedKey")
        if last is None:
            return
        request["ExclusiveStartKey"] = last


def catalog_client_config() -> Any:
    """The catalog client's timeouts and retries: bounded so that a write's stamp
    precedes its commit by at most ``catalog_write_lead_seconds()`` (resources)."""
    from botocore.config import Config

    return Config(
        connect_timeout=CATALOG_CONNECT_TIMEOUT_SECONDS,
        read_timeout=CATALOG_READ_TIMEOUT_SECONDS,
        retries={"mode": "standard", "total_max_attempts": CATALOG_MAX_ATTEMPTS},
    )


def _projection(names: Iterable[str]) -> tuple[str, dict[str, str]]:
    """A ProjectionExpression with every name aliased (``key``, ``status``, ``size``
    are reserved words)."""
    aliases = {f"#p{n}": name for n, name in enumerate(names)}
    return ", ".join(aliases), aliases


def _days(since_ms: int, until_ms: int) -> Iterator[str]:
    day = datetime.fromtimestamp(since_ms / 1000, tz=UTC).date()
    last = datetime.fromtimestamp(until_ms / 1000, tz=UTC).date()
    while day <= last:
        yield day.isoformat()
        day += timedelta(days=1)
