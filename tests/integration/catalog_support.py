"""Shared by the catalog and embedded-index tests: the table, a settable clock and a
spy around the moto DynamoDB client (records calls, injects throttling)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

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
