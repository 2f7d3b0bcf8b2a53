"""Full reads of the catalog's vectors in local mode: moto's table read in the process.

At start the embedded index loads every vector (and again only when a refresh cannot
catch up), and on ``--vector-store s3vectors`` the emulator is rebuilt from every vector
(``imagesearch reindex``). Through moto's HTTP API that is a Scan that moto answers item
by item in Python, with every vector base64-encoded into JSON and parsed back: 1.8 s for
1,000 images, most of a restart. moto runs in this process, so ``MotoTableCatalog``
reads the table's items directly instead (milliseconds), while the moto server admits
no request (``WriteGate``'s exclusive side: never half a write). It answers exactly what
``DynamoDBCatalog.scan_vector_items`` answers (raw items of the indexed records of one
model and dimension, split into segments by a hash of the image id), so the index
builds, checks and normalises its matrix as after a Scan and a reindex copies the same
entries. The change log, the vectors fetched by a refresh and everything else go
through moto's HTTP API as usual.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

from imagesearch.catalog.dynamodb import DynamoDBCatalog, Item, select_slot
from imagesearch.local.state import ACCOUNT_ID, WriteGate
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
    """The catalog on moto's table, whose full reads of the vectors (the embedded index's
    load, a reindex) take the table from moto's memory (see the module docstring); every
    other call goes to moto over HTTP as usual."""

    def __init__(self, table_name: str, *, gate: WriteGate, region: str, **options: Any) -> None:
        super().__init__(table_name, **options)
        self._gate = gate
        self._region = region

    @classmethod
    def over(cls, catalog: DynamoDBCatalog, *, gate: WriteGate, region: str) -> MotoTableCatalog:
        """The same table and client as ``catalog``."""
        return cls(catalog.table_name, client=catalog.client, gate=gate, region=region)

    def scan_vector_items(
        self, *, model_id: str, dimension: int, segment: int = 0, total_segments: int = 1
    ) -> Iterator[Item]:
        from moto.backends import get_backend

        found: list[Item] = []
        with self._gate.lock.exclusive():
            table = get_backend("dynamodb")[ACCOUNT_ID][self._region].get_table(self.table_name)
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
                chosen = select_slot(_raw(attrs), model_id, dimension)
                if chosen is not None:
                    chosen.pop(ATTR_ALT_VECTOR, None)
                    found.append(chosen)
        return iter(found)


def _segment(image_id: str, total_segments: int) -> int:
    return zlib.crc32(image_id.encode("utf-8")) % total_segments


def _raw(attrs: Mapping[str, Any]) -> Item:
    """The projected attributes as the low-level client returns them (binary as bytes;
    moto keeps what the wire carried, base64 text)."""
    raw: Item = {}
    for name in _PROJECTED:
        attribute = attrs.get(name)
        if attribute is None:
            continue
        value = attribute.value
        if attribute.type == "B" and isinstance(value, str):
            value = base64.b64decode(value)
        raw[name] = {attribute.type: value}
    return raw
