"""Issue 9 findings 8 to 12 that need a fresh environment per test: long keys paging,
bounded uploads, upload key rules, and how stored objects are served."""

from __future__ import annotations

from typing import Any

from imagesearch import resources as r
from tests.fakes import bedrock as fake
from tests.integration.api_fixtures import (
    Api,
    api_fixture,  # noqa: F401  (the `api` fixture)
    text_vector,
)


def test_cursors_of_the_longest_non_ascii_keys_page_through(api: Api) -> None:
    # Given keys of exactly 1,024 bytes made of 4-byte emoji, indexed and rejected
    def name(n: int) -> str:
        stem = f"{n}-" + "\U0001f600" * 253  # 2 + 1012 bytes
        return stem + "." * (1024 - len(api.aws.upload_prefix) - len(stem.encode()))

    names = [name(n) for n in range(5)]
    for n, each in enumerate(names):
        if n % 2:
            api.seed(each, None, status=r.STATUS_REJECTED, reason="corrupt")
        else:
            api.seed(each, text_vector(fake, f"picture number {n}"))
    assert all(len((api.aws.upload_prefix + n).encode()) == r.MAX_KEY_BYTES for n in names)
    # When listing two at a time
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        query: dict[str, Any] = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        response = api.get("/images", query=query)
        assert response.status == 200, response.body
        seen += [item["key"] for item in response.body["items"]]
        cursor = response.body["cursor"]
        if cursor is None:
            break
    # Then every key comes back once, in order (the cursors fit the API's limit)
    assert seen == sorted(api.aws.upload_prefix + n for n in names)
