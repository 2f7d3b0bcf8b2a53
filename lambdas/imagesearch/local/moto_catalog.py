"""The catalog in local mode: reads of moto's table in the process, writes over HTTP.

moto runs in local mode's own process, so a read through its HTTP API is a request
that botocore signs and serialises, a socket, a moto server thread that parses it and
answers JSON, and botocore parsing that JSON back, all contending for one interpreter
with the ingest worker and moto's other requests. ``MotoTableCatalog`` reads moto's
table in memory instead, and answers exactly the items the low-level client would:

- Records by key (``get``, ``get_many``, the vector fetches of a refresh and of the
  vector sync): moto's own GetItem and BatchGetItem read its items without a lock,
  and so does this. During ingest this took a search's record reads from ~4 ms per
  result (through moto's HTTP API) to microseconds (docs/decisions.md, decision 32).
- Full reads of the vectors (the embedded index's load at start, a reindex): through
  moto's HTTP API a Scan that moto answers item by item in Python, every vector base64
  in JSON: 1.8 s for 1,000 images, most of a restart. In memory, while the moto server
  admits no request (``WriteGate``'s exclusive side: never half a write), it is
  milliseconds. It answers what ``DynamoDBCatalog.scan_vector_items`` answers (raw
  items of the indexed records of one model and dimension, split into segments by a
  hash of the image id), so the index checks and normalises its matrix as after a
  Scan and a reindex copies the same entries.

Writes, queries (the change log, listings, counts) and everything else go through
moto's HTTP API as usual: the ``WriteGate`` sees every change there, and moto's
conditions and indexes apply.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import nullcontext
from typing import Any

from imagesearch.catalog.dynamodb import DynamoDBCatalog, Item, select_slot
from imagesearch.local.state import ACCOUNT_ID, WriteGate
from imagesearch.records import ImageRecord
from imagesearch.resources import (
    ATTR_ALT_DIMENSION,
    ATTR_ALT_MODEL_ID,
    ATTR_ALT_VECTOR,
    ATTR_IMAGE_ID,
    ATTR_KEY,
    ATTR_REVISION,
    ATTR_STATUS,
    ATTR_VECTOR,
    STATUS_INDEXED,
)

# What DynamoDBCatalog.scan_vector_items projects.
_PROJECTED = (
    ATTR_IMAGE_ID,
    ATTR_KEY,
    "content_type",
    ATTR_VECTOR,
    ATTR_REVISION,
    "model_id",
    "dimension",
    ATTR_ALT_VECTOR,
    ATTR_ALT_MODEL_ID,
    ATTR_ALT_DIMENSION,
)


class MotoTableCatalog(DynamoDBCatalog):
    """The catalog on moto's table, whose reads by key and full reads of the vectors
    take the table from moto's memory (see the module docstring); writes and queries go
    to moto over HTTP as usual. ``gate``: the moto server's ``WriteGate`` that a full
    read waits on (None without a state folder: no gate to wait on, as moto's own Scan
    does not wait either)."""

    def __init__(
        self, table_name: str, *, gate: WriteGate | None, region: str, **options: Any
    ) -> None:
        super().__init__(table_name, **options)
        self._gate = gate
        self._region = region

    @classmethod
    def over(
        cls, catalog: DynamoDBCatalog, *, gate: WriteGate | None, region: str
    ) -> MotoTableCatalog:
        """The same table and client as ``catalog``."""
        return cls(catalog.table_name, client=catalog.client, gate=gate, region=region)

    def _moto_table(self) -> Any:
        from moto.backends import get_backend

        return get_backend("dynamodb")[ACCOUNT_ID][self._region].get_table(self.table_name)

    def get(
        self, image_id: str, *, with_vector: bool = False, include_deleted: bool = False
    ) -> ImageRecord | None:
        found = self.get_many(
            [image_id], with_vector=with_vector, include_deleted=include_deleted, consistent=True
        )
        return found.get(image_id)

    def _batch_get(
        self,
        keys: list[Item],
        projection: str,
        attribute_names: dict[str, str],
        *,
        consistent: bool = False,
    ) -> Iterator[Item]:
        from moto.dynamodb.models.dynamo_type import DynamoType

        names = tuple(attribute_names.values())
        table = self._moto_table()
        for key in keys:
            item = table.get_item(DynamoType(key[ATTR_IMAGE_ID]))
            if item is not None:
                # One copy of the attribute map: a put replaces the item whole.
                yield _raw(dict(item.attrs), names)

    def scan_vector_items(
        self, *, model_id: str, dimension: int, segment: int = 0, total_segments: int = 1
    ) -> Iterator[Item]:
        found: list[Item] = []
        with self._gate.lock.exclusive() if self._gate is not None else nullcontext():
            table = self._moto_table()
            # No range key: one moto Item per hash key.
            stored: list[Any] = list(table.items.values())
            for item in stored:
                attrs = item.attrs
                status = attrs.get(ATTR_STATUS)
                if status is None or status.value != STATUS_INDEXED:
                    continue
                image_id = attrs[ATTR_IMAGE_ID].value
                if total_segments > 1 and _segment(image_id, total_segments) != segment:
                    continue
                # Either slot may hold this model's vector during a model switch.
                chosen = select_slot(_raw(attrs, _PROJECTED), model_id, dimension)
                if chosen is not None:
                    chosen.pop(ATTR_ALT_VECTOR, None)
                    found.append(chosen)
        return iter(found)


def _segment(image_id: str, total_segments: int) -> int:
    return zlib.crc32(image_id.encode("utf-8")) % total_segments


def _raw(attrs: Mapping[str, Any], names: Iterable[str]) -> Item:
    """The attributes ``names`` (all of type S, N or B: a record's) as the low-level
    client returns them (binary as bytes; moto keeps what the wire carried, base64
    text)."""
    raw: Item = {}
    for name in names:
        attribute = attrs.get(name)
        if attribute is None:
            continue
        value = attribute.value
        if attribute.type == "B" and isinstance(value, str):
            value = base64.b64decode(value)
        raw[name] = {attribute.type: value}
    return raw
