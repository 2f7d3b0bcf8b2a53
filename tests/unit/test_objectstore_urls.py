"""Presigned GET URLs: one signed in the last minute for the same object, version and
headers is handed out again, and every URL handed out stays valid for the asked time."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
from botocore.config import Config

from imagesearch import objectstore
from imagesearch.objectstore import URL_REUSE_SECONDS, S3ObjectStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SigningSpy:
    """A real S3 client's presigning, counted."""

    def __init__(self) -> None:
        self._client = boto3.client(
            "s3",
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(signature_version="s3v4"),
        )
        self.signed: list[dict[str, Any]] = []

    def generate_presigned_url(self, operation: str, **kwargs: Any) -> str:
        self.signed.append(kwargs)
        url: str = self._client.generate_presigned_url(operation, **kwargs)
        return url


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def spy() -> SigningSpy:
    return SigningSpy()


@pytest.fixture
def store(spy: SigningSpy, clock: Clock) -> S3ObjectStore:
    return S3ObjectStore("bucket", client=spy, clock=clock)


def query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlparse(url).query).items()}


def test_a_url_is_reused_within_the_window_and_signed_for_the_window_more(
    store: S3ObjectStore, spy: SigningSpy, clock: Clock
) -> None:
    first = store.presign_get("uploads/a.jpg", content_type="image/jpeg", version="e1")
    clock.now += URL_REUSE_SECONDS - 0.1
    again = store.presign_get("uploads/a.jpg", content_type="image/jpeg", version="e1")

    assert again == first
    assert len(spy.signed) == 1
    # Handed out up to a minute after signing, it is still valid for the asked 900 s.
    assert int(query(first)["X-Amz-Expires"]) == 900 + URL_REUSE_SECONDS
    assert query(first)["response-content-type"] == "image/jpeg"


def test_after_the_window_the_url_is_signed_anew(
    store: S3ObjectStore, spy: SigningSpy, clock: Clock
) -> None:
    store.presign_get("uploads/a.jpg", content_type="image/jpeg", version="e1")
    clock.now += URL_REUSE_SECONDS
    store.presign_get("uploads/a.jpg", content_type="image/jpeg", version="e1")
    assert len(spy.signed) == 2


@pytest.mark.parametrize(
    "change",
    [
        {"key": "uploads/b.jpg"},
        {"version": "e2"},  # the object was replaced: no browser-cached old bytes
        {"version": None},
        {"content_type": "application/octet-stream"},
        {"attachment": True},
        {"expires_in": 60},
    ],
)
def test_anything_else_is_signed_anew(
    store: S3ObjectStore, spy: SigningSpy, change: dict[str, Any]
) -> None:
    asked: dict[str, Any] = {
        "key": "uploads/a.jpg",
        "content_type": "image/jpeg",
        "version": "e1",
        "attachment": False,
        "expires_in": 900,
    }
    first = store.presign_get(asked.pop("key"), **asked)
    changed = {**asked, "key": "uploads/a.jpg", **change}
    other = store.presign_get(changed.pop("key"), **changed)

    assert len(spy.signed) == 2
    if "version" not in change:  # the version changes what is reused, not what is signed
        assert spy.signed[0] != spy.signed[1]
        assert other != first


def test_an_attachment_url_downloads_under_the_object_name(store: S3ObjectStore) -> None:
    url = store.presign_get(
        "uploads/dir/ünï code.svg", content_type="application/octet-stream", attachment=True
    )
    assert query(url)["response-content-disposition"] == (
        "attachment; filename*=UTF-8''%C3%BCn%C3%AF%20code.svg"
    )


def test_no_reuse_when_the_window_is_zero(spy: SigningSpy, clock: Clock) -> None:
    store = S3ObjectStore("bucket", client=spy, clock=clock, url_reuse_seconds=0)
    for _ in range(3):
        url = store.presign_get("uploads/a.jpg", content_type="image/jpeg")
    assert len(spy.signed) == 3
    assert query(url)["X-Amz-Expires"] == "900"


def test_the_kept_urls_are_bounded_oldest_out_first(
    store: S3ObjectStore, spy: SigningSpy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(objectstore, "_MAX_REUSABLE_URLS", 3)
    for name in ("a", "b", "c", "d"):  # "a" leaves when "d" arrives
        store.presign_get(f"uploads/{name}.jpg", content_type="image/jpeg")
    store.presign_get("uploads/d.jpg", content_type="image/jpeg")
    store.presign_get("uploads/b.jpg", content_type="image/jpeg")
    assert len(spy.signed) == 4
    store.presign_get("uploads/a.jpg", content_type="image/jpeg")
    assert len(spy.signed) == 5
