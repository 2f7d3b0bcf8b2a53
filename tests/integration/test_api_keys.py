"""Issue 9 findings 8 to 12 that need a fresh environment per test: long keys paging,
bounded uploads, upload key rules, and how stored objects are served."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from fakes import bedrock as fake
from fakes import imagefactory
from imagesearch import resources as r
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


# --- Finding 9: every presigned upload is bounded -----------------------------------------------


def test_an_upload_without_size_is_refused(api: Api) -> None:
    # S3 would take up to 5 GB through a URL that signs only type and host
    response = api.post("/uploads", {"filename": "a.jpg", "content_type": "image/jpeg"})
    assert response.status == 422, response.body
    assert "size: Field required" in response.message


def test_the_upload_url_signs_the_declared_length(api: Api) -> None:
    data = imagefactory.jpeg(40, 30, (200, 10, 10))
    response = api.post(
        "/uploads", {"filename": "sized.jpg", "content_type": "image/jpeg", "size": len(data)}
    )
    assert response.status == 200, response.body
    url, headers = response.body["url"], response.body["headers"]
    signed = parse_qs(urlparse(url).query)["X-Amz-SignedHeaders"][0].split(";")
    assert {"content-length", "content-type", "host", "if-none-match"} <= set(signed)
    # No overwrite asked: the PUT may only create the key (decision 43)
    assert headers == {
        "Content-Type": "image/jpeg",
        "Content-Length": str(len(data)),
        "If-None-Match": "*",
    }
    # The declared bytes go through
    put = requests.put(url, data=data, headers=headers, timeout=10)
    assert put.status_code == 200, put.text
    assert api.aws.s3.head_object(Bucket=api.aws.bucket, Key="uploads/sized.jpg")[
        "ContentLength"
    ] == len(data)


# --- Finding 10: upload keys are what clients write, and fit S3 --------------------------------


@pytest.mark.parametrize(
    ("filename", "message"),
    [
        ("./x.jpg", "'.' or '..' path segments"),
        ("a/./b.jpg", "'.' or '..' path segments"),
        (".", "'.' or '..' path segments"),
        ("a/../b.jpg", "'.' or '..' path segments"),
        ("\U0001f600" * 512, "2048 bytes in UTF-8; S3 keys are at most 1024 bytes"),
        ("€" * 338 + "ab.jpg", "key of 1028 bytes in UTF-8"),  # 1,020 bytes + "uploads/"
    ],
)
def test_upload_names_that_do_not_survive_as_keys_are_422(
    api: Api, filename: str, message: str
) -> None:
    response = api.post(
        "/uploads", {"filename": filename, "content_type": "image/jpeg", "size": 10}
    )
    assert response.status == 422, response.body
    assert message in response.message


# --- Finding 11: only indexed images render; anything else downloads ---------------------------

SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>'


def test_a_rejected_svg_with_a_script_downloads_instead_of_rendering(api: Api) -> None:
    # Given an SVG with a script, stored as image/svg+xml, rejected by ingest
    record = api.seed(
        "evil.svg", None, status=r.STATUS_REJECTED, reason="SVG is not supported",
        body=SVG, content_type="image/svg+xml",
    )  # fmt: skip
    api.aws.s3.put_object(
        Bucket=api.aws.bucket, Key=record.key, Body=SVG, ContentType="image/svg+xml"
    )
    # When a browser follows its URL
    url = api.get(f"/images/{record.image_id}").body["url"]
    fetched = requests.get(url, timeout=10)
    # Then it is served as opaque bytes, as an attachment
    assert fetched.status_code == 200
    assert fetched.headers["Content-Type"] == "application/octet-stream"
    assert fetched.headers["Content-Disposition"] == "attachment; filename*=UTF-8''evil.svg"
    assert fetched.content == SVG


def test_an_indexed_image_renders_as_the_type_ingest_found(api: Api) -> None:
    # Given a real JPEG whose stored Content-Type lies (text/html)
    data = imagefactory.jpeg(32, 32, (10, 200, 10))
    record = api.seed("liar.jpg", text_vector(fake, "green"), body=data, content_type="image/jpeg")
    api.aws.s3.put_object(Bucket=api.aws.bucket, Key=record.key, Body=data, ContentType="text/html")
    api.aws.s3.put_object(
        Bucket=api.aws.bucket, Key=r.thumbnail_key(record.image_id), Body=data,
        ContentType="image/jpeg",
    )  # fmt: skip
    # When its URLs are fetched, from the record and from a search
    listed = api.get(f"/images/{record.image_id}").body
    (hit,) = api.post("/search", {"text": "green", "top_k": 1}).body["results"]
    for url in (listed["url"], hit["url"], listed["thumbnail_url"], hit["thumbnail_url"]):
        fetched = requests.get(url, timeout=10)
        # Then S3 answers with the detected type, inline
        assert fetched.headers["Content-Type"] == "image/jpeg"
        assert "Content-Disposition" not in fetched.headers
