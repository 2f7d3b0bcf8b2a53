"""S3 adapter of the ObjectStore port."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from imagesearch.ports import ObjectInfo, ObjectTooLarge, StoredObject

# A GET URL signed this recently for the same object, version and headers is handed
# out again (see presign_get).
URL_REUSE_SECONDS = 60
# At most this many signed URLs kept (about 1.5 KB each with a session token).
_MAX_REUSABLE_URLS = 4096
_MISSING = ("NoSuchKey", "404", "NotFound")
_DENIED = ("AccessDenied", "403", "Forbidden")


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class S3ObjectStore:
    def __init__(
        self,
        bucket: str,
        *,
        client: Any | None = None,
        url_reuse_seconds: float = URL_REUSE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bucket = bucket
        # SigV4 presigning: boto3's default still signs some regions' URLs with SigV2,
        # which S3 refuses for buckets created since 2020.
        self._client = client or boto3.client("s3", config=Config(signature_version="s3v4"))
        self._url_reuse_seconds = url_reuse_seconds
        self._clock = clock
        # (key, version, headers, expiry) -> (signed at, URL), oldest first
        self._signed: dict[tuple[Any, ...], tuple[float, str]] = {}
        self._signed_lock = threading.Lock()

    def get(self, key: str, *, max_bytes: int) -> StoredObject | None:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if self._is_missing(error, key):
                return None
            raise
        size = int(response["ContentLength"])
        body = response["Body"]
        if size > max_bytes:
            # Checked before reading: a huge object must not be pulled into memory.
            body.close()
            raise ObjectTooLarge(size, max_bytes)
        return StoredObject(
            key=key,
            body=body.read(),
            etag=response["ETag"].strip('"'),
            size=size,
            content_type=response.get("ContentType"),
            last_modified=_iso(response.get("LastModified")),
            metadata=dict(response.get("Metadata") or {}),
        )

    def head(self, key: str) -> ObjectInfo | None:
        try:
            response = self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if self._is_missing(error, key):
                return None
            raise
        return ObjectInfo(
            key=key,
            etag=response["ETag"].strip('"'),
            size=int(response["ContentLength"]),
            last_modified=_iso(response.get("LastModified")),
        )

    def _is_missing(self, error: ClientError, key: str) -> bool:
        """404, or a 403 for a key a listing of that very key does not show.

        S3 answers 404 for a missing key only to callers allowed to list the bucket,
        and whether a ListBucket grant limited by an ``s3:prefix`` condition counts
        for that is not documented. A listing with ``Prefix=key`` is within such a
        grant, so it settles the question; a key that is listed (or a listing that is
        refused too) leaves the 403 a real permissions error.
        """
        code = error.response.get("Error", {}).get("Code")
        if code in _MISSING:
            return True
        if code not in _DENIED:
            return False
        try:
            listed = self._client.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
        except ClientError:
            return False
        # Keys are listed in order and a key sorts before every longer key it prefixes.
        first = next(iter(listed.get("Contents") or []), None)
        return first is None or first.get("Key") != key

    def put(self, key: str, body: bytes, *, content_type: str) -> None:
        self._client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=key)

    def list_keys(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield ObjectInfo(
                    key=item["Key"],
                    etag=item["ETag"].strip('"'),
                    size=int(item["Size"]),
                    last_modified=_iso(item.get("LastModified")),
                )

    def presign_get(
        self,
        key: str,
        *,
        expires_in: int = 900,
        content_type: str,
        attachment: bool = False,
        version: str | None = None,
    ) -> str:
        """A GET URL valid for at least ``expires_in`` seconds. One signed in the last
        ``url_reuse_seconds`` for the same key, ``version`` (the object's ETag: other
        bytes get a new URL, never a browser's cached copy of the old ones) and headers
        is handed out again, so it is signed for ``expires_in`` plus that. Signing costs
        ~0.3 ms of CPU, twice per search result; and a browser caches the thumbnails of
        a search it repeats (docs/decisions.md, decision 32)."""
        reusable = (key, version, content_type, attachment, expires_in)
        now = self._clock()
        with self._signed_lock:
            signed = self._signed.get(reusable)
        if signed is not None and now - signed[0] < self._url_reuse_seconds:
            return signed[1]
        url = self._sign_get(
            key,
            expires_in=expires_in + math.ceil(self._url_reuse_seconds),
            content_type=content_type,
            attachment=attachment,
        )
        with self._signed_lock:
            self._signed.pop(reusable, None)  # re-inserted last: the dict stays oldest first
            self._signed[reusable] = (now, url)
            while len(self._signed) > _MAX_REUSABLE_URLS:
                del self._signed[next(iter(self._signed))]
        return url

    def _sign_get(self, key: str, *, expires_in: int, content_type: str, attachment: bool) -> str:
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            # Signed response overrides: S3 answers with these headers, not the object's
            # metadata (which the uploader chose: an SVG or HTML must not render here).
            "ResponseContentType": content_type,
        }
        if attachment:
            name = key.rsplit("/", 1)[-1]
            params["ResponseContentDisposition"] = (
                f"attachment; filename*=UTF-8''{quote(name, safe='')}"
            )
        url: str = self._client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=expires_in
        )
        return url

    def presign_put(
        self,
        key: str,
        *,
        content_type: str,
        content_length: int,
        expires_in: int = 900,
        overwrite: bool = False,
    ) -> tuple[str, dict[str, str]]:
        # All signed: S3 refuses another type or a body of any other length, so an
        # upload is bounded by the size the API accepted; and unless ``overwrite``,
        # If-None-Match: * makes S3 refuse (412) a PUT to a key that exists, so the
        # URL can neither replace another image nor be replayed once it was used.
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "ContentType": content_type,
            "ContentLength": content_length,
        }
        headers = {"Content-Type": content_type, "Content-Length": str(content_length)}
        if not overwrite:
            params["IfNoneMatch"] = "*"
            headers["If-None-Match"] = "*"
        url: str = self._client.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=expires_in
        )
        return url, headers
