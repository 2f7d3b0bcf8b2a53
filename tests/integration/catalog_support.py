"""Shared by the catalog and embedded-index tests: the table, a settable clock and a
spy around the moto DynamoDB client (records calls, injects throttling)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from botocore.exceptions import ClientError

from imagesearch.catalog.dynamodb import DynamoDBCatalog
from imagesearch.records import ImageRecord, image_id_for_key

TABLE = "images-index-test"
MODEL = "amazon.titan-embed-image-v1"
DIM = 8
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SpyClient:
    """The moto client, with a record of calls and optional injected behaviour."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail_queries = False
        # BatchGetItem under throttling: keys answered as unprocessed per call (at least
        # one key still goes through), or every key when withhold_all is set.
        self.withhold_batch_keys = 0
        self.withhold_all = False

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(**kwargs: Any) -> Any:
            self.calls.append((name, kwargs))
            return method(**kwargs)

        return call

    def query(self, **kwargs: Any) -> Any:
        self.calls.append(("query", kwargs))
        if self.fail_queries:
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                "Query",
            )
        return self._client.query(**kwargs)

    def batch_get_item(self, RequestItems: dict[str, Any]) -> Any:
        self.calls.append(("batch_get_item", {"RequestItems": RequestItems}))
        ((table, request),) = RequestItems.items()
        keys = request["Keys"]
        if self.withhold_all:
            return {"Responses": {table: []}, "UnprocessedKeys": RequestItems}
        count = min(self.withhold_batch_keys, len(keys) - 1)
        held, sent = keys[:count], keys[count:]
        response = self._client.batch_get_item(RequestItems={table: {**request, "Keys": sent}})
        if held:
            response["UnprocessedKeys"] = {table: {**request, "Keys": held}}
        return response


def axis(n: int, tilt: float = 0.0) -> np.ndarray:
    """Unit vector along axis ``n``, tilted towards the next axis by ``tilt``."""
    vector = np.zeros(DIM, dtype=np.float32)
    vector[n % DIM] = 1.0
    vector[(n + 1) % DIM] = tilt
    return vector / np.linalg.norm(vector)


def record(
    key: str,
    vector: np.ndarray | None = None,
    *,
    sequencer: str = "S0001",
    status: str = "indexed",
    content_type: str | None = "image/jpeg",
    model_id: str = MODEL,
    **fields: Any,
) -> ImageRecord:
    if status == "indexed" and vector is None:
        vector = axis(0)
    return ImageRecord(
        image_id=image_id_for_key(key),
        key=key,
        status=status,
        content_type=content_type,
        model_id=model_id,
        dimension=None if vector is None else int(vector.size),
        sequencer=sequencer,
        vector=vector if status == "indexed" else None,
        **fields,
    )


def raw_item(client: Any, key: str) -> dict[str, Any] | None:
    response = client.get_item(TableName=TABLE, Key={"image_id": {"S": image_id_for_key(key)}})
    return response.get("Item")


def keys_of(catalog: DynamoDBCatalog, results: list) -> list[str]:
    by_id = catalog.get_many([r.image_id for r in results])
    return [by_id[r.image_id].key for r in results]
