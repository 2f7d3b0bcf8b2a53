"""S3 adapter of the ObjectStore port."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from imagesearch.ports import ObjectInfo, ObjectTooLarge, StoredObject

_MISSING = ("NoSuchKey", "404", "NotFound")
_DENIED = ("AccessDenied", "403", "Forbidden")


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class S3ObjectStore:
    def __init__(self, bucket: str, *, client: Any | None = None) -> None:
        self.bucket = bucket
        # SigV4 presigning: boto3's default still signs some regions' URLs with SigV2,
        # which S3 refuses for buckets created since 2020.
        self._client = client or boto3.client("s3", config=Config(signature_version="s3v4"))

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
        self, key: str, *, expires_in: int = 900, content_type: str, attachment: bool = False
    ) -> str:
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
        self, key: str, *, content_type: str, content_length: int, expires_in: int = 900
    ) -> tuple[str, dict[str, str]]:
        # Both signed: S3 refuses another type or a body of any other length, so an
        # upload is bounded by the size the API accepted.
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "ContentType": content_type,
            "ContentLength": content_length,
        }
        headers = {"Content-Type": content_type, "Content-Length": str(content_length)}
        url: str = self._client.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=expires_in
        )
        return url, headers
