"""The drop-folder mirror against a stack-shaped moto bucket (finding 9.13).

Each test drives ``sync_once`` by hand (a file is uploaded once two polls agree on
it), so nothing depends on timing.
"""

from __future__ import annotations

import logging
import os
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from imagesearch import resources as r
from imagesearch.local.mirror import TRASH_DIR, DropboxMirror
from tests.support.aws import AwsResources, create_resources

LIMIT = 50 * 1024 * 1024


@pytest.fixture
def aws() -> Iterator[AwsResources]:
    with mock_aws():
        yield create_resources()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "dropbox"
    path.mkdir()
    return path


def make_mirror(aws: AwsResources, folder: Path, **options: Any) -> DropboxMirror:
    options.setdefault("max_bytes", LIMIT)
    return DropboxMirror(
        folder, s3=aws.s3, bucket=aws.bucket, upload_prefix=aws.upload_prefix, **options
    )


def settle(mirror: DropboxMirror, polls: int = 2) -> None:
    for _ in range(polls):
        mirror.sync_once()


def objects(aws: AwsResources) -> dict[str, bytes]:
    listed = aws.s3.list_objects_v2(Bucket=aws.bucket, Prefix=aws.upload_prefix)
    return {
        item["Key"]: aws.s3.get_object(Bucket=aws.bucket, Key=item["Key"])["Body"].read()
        for item in listed.get("Contents", [])
    }


def refusals(mirror: DropboxMirror) -> dict[str, str]:
    stats = mirror.stats()
    listed = {item["path"]: item["reason"] for item in stats["refusals"]}
    assert stats["refused"] == len(listed)
    return listed


def warnings_about(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno >= logging.WARNING and text in record.getMessage()
    ]


def test_a_file_over_the_upload_limit_is_refused_once_and_never_read(
    aws: AwsResources,
    folder: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a 1.5 GB file (sparse: no disk used) next to a small one
    huge = folder / "huge.jpg"
    with huge.open("wb") as handle:
        handle.truncate(1536 * 1024 * 1024)
    (folder / "small.jpg").write_bytes(b"small")
    opened: list[str] = []
    real_open = os.open

    def spying_open(path: Any, *args: Any, **kwargs: Any) -> int:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", spying_open)
    mirror = make_mirror(aws, folder)

    # When the mirror polls many times
    settle(mirror, polls=6)

    # Then only the small file is mirrored; the big one was never opened, and it is
    # one visible refusal (one warning, listed in stats), not a retry per poll
    assert set(objects(aws)) == {"uploads/small.jpg"}
    assert str(huge) not in opened
    reason = refusals(mirror)["huge.jpg"]
    assert f"upload limit is {LIMIT} bytes" in reason
    assert len(warnings_about(caplog, "huge.jpg")) == 1


def test_the_limit_is_the_deployments_upload_limit() -> None:
    from imagesearch.settings import IngestSettings

    # Local mode passes load_settings(IngestSettings).max_upload_bytes: one limit for
    # presigned uploads, ingest and the mirror.
    assert IngestSettings.model_fields["max_upload_bytes"].default == LIMIT


NFC = unicodedata.normalize("NFC", "café.jpg")
NFD = unicodedata.normalize("NFD", "café.jpg")


def test_nfc_and_nfd_spellings_of_one_name_do_not_collide(
    aws: AwsResources, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given two files whose names differ only in Unicode normalisation
    assert NFC != NFD
    (folder / NFC).write_bytes(b"composed")
    (folder / NFD).write_bytes(b"decomposed")
    mirror = make_mirror(aws, folder)

    settle(mirror, polls=4)

    # Then one of them owns the key and the other is refused, visibly, once
    assert objects(aws) == {"uploads/" + NFC: b"composed"}
    assert "Unicode-normalised" in refusals(mirror)[NFD]
    assert len(warnings_about(caplog, "Unicode-normalised")) == 1

    # When the refused spelling is deleted, the image stays
    (folder / NFD).unlink()
    settle(mirror)
    assert objects(aws) == {"uploads/" + NFC: b"composed"}
    assert refusals(mirror) == {}


def test_deleting_the_mirrored_spelling_hands_the_key_to_the_other(
    aws: AwsResources, folder: Path
) -> None:
    (folder / NFC).write_bytes(b"composed")
    mirror = make_mirror(aws, folder)
    settle(mirror)
    (folder / NFD).write_bytes(b"decomposed")
    settle(mirror)
    assert objects(aws) == {"uploads/" + NFC: b"composed"}  # the first one keeps the key

    # When the mirrored file is deleted while the other spelling remains
    (folder / NFC).unlink()
    settle(mirror)

    # Then the image is not removed: the remaining file becomes the object
    assert objects(aws) == {"uploads/" + NFC: b"decomposed"}
    assert refusals(mirror) == {}


def test_a_file_whose_object_was_deleted_through_the_api_moves_to_the_trash(
    aws: AwsResources, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="imagesearch.local.mirror")
    (folder / "trip").mkdir()
    (folder / "trip" / "beach.jpg").write_bytes(b"beach")
    (folder / "keep.jpg").write_bytes(b"keep")
    mirror = make_mirror(aws, folder, reconcile_seconds=0)
    settle(mirror)
    assert set(objects(aws)) == {"uploads/trip/beach.jpg", "uploads/keep.jpg"}

    # When the object is deleted through the API (DELETE /images/{id} deletes the object)
    aws.s3.delete_object(Bucket=aws.bucket, Key="uploads/trip/beach.jpg")
    settle(mirror, polls=3)

    # Then the file follows it into .deleted/ (kept, no longer mirrored), for good
    assert not (folder / "trip" / "beach.jpg").exists()
    assert (folder / TRASH_DIR / "trip" / "beach.jpg").read_bytes() == b"beach"
    assert set(objects(aws)) == {"uploads/keep.jpg"}
    assert mirror.stats()["files"] == 1
    assert any("was deleted from the bucket" in record.getMessage() for record in caplog.records)


def test_a_listing_older_than_an_upload_does_not_count_as_a_delete(
    aws: AwsResources, folder: Path
) -> None:
    # Given an upload that finished at t=100 and a listing that began at t=50 (so it
    # could not show the object yet)
    now = [100.0]
    mirror = make_mirror(aws, folder, reconcile_seconds=10**6, clock=lambda: now[0])
    (folder / "fresh.jpg").write_bytes(b"fresh")
    settle(mirror)
    now[0] = 50.0
    mirror._listed_keys = set  # type: ignore[method-assign]  # that listing: empty

    mirror.reconcile()

    # Then the file stays where it is, mirrored
    assert (folder / "fresh.jpg").exists()
    assert mirror.stats()["files"] == 1


@pytest.mark.parametrize("name", ["line\nbreak.jpg", "tab\there.jpg", "bell\x07.jpg"])
def test_a_name_s3_events_cannot_carry_is_one_visible_rejection(
    aws: AwsResources, folder: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    (folder / name).write_bytes(b"x")
    mirror = make_mirror(aws, folder)

    settle(mirror, polls=8)

    assert objects(aws) == {}
    assert "control character" in refusals(mirror)[name]
    assert len(warnings_about(caplog, "not mirrored")) == 1
    assert warnings_about(caplog, "will retry") == []


def test_a_rewrite_that_keeps_size_and_mtime_is_uploaded(aws: AwsResources, folder: Path) -> None:
    path = folder / "same.jpg"
    path.write_bytes(b"AAAA")
    mirror = make_mirror(aws, folder)
    settle(mirror)
    before = os.stat(path)

    # When the content changes but size and mtime are put back (copy -p, rsync -t)
    path.write_bytes(b"BBBB")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (os.stat(path).st_size, os.stat(path).st_mtime_ns) == (
        before.st_size,
        before.st_mtime_ns,
    )
    settle(mirror)

    assert objects(aws) == {"uploads/same.jpg": b"BBBB"}


def test_a_path_over_1024_key_bytes_is_refused_not_uploaded(
    aws: AwsResources, folder: Path
) -> None:
    # Given a path whose key is over S3's 1,024 bytes (each name within 255)
    deep = folder.joinpath(*["d" * 200] * 6)
    deep.mkdir(parents=True)
    (deep / "photo.jpg").write_bytes(b"deep")
    (folder / "ok.jpg").write_bytes(b"ok")
    mirror = make_mirror(aws, folder)

    settle(mirror, polls=3)

    assert set(objects(aws)) == {"uploads/ok.jpg"}
    ((path, reason),) = refusals(mirror).items()
    assert path.endswith("photo.jpg")
    assert f"S3 keys are at most {r.MAX_KEY_BYTES}" in reason


def test_symlinks_to_files_outside_the_folder_are_not_followed(
    aws: AwsResources, folder: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "outside" / "id_rsa"
    secret.parent.mkdir()
    secret.write_bytes(b"private key")
    (folder / "innocent.jpg").symlink_to(secret)
    (folder / "real.jpg").write_bytes(b"real")
    (folder / "alias.jpg").symlink_to(folder / "real.jpg")  # inside: fine
    (folder / "linked dir").symlink_to(secret.parent, target_is_directory=True)
    mirror = make_mirror(aws, folder)

    settle(mirror, polls=3)

    assert objects(aws) == {"uploads/real.jpg": b"real", "uploads/alias.jpg": b"real"}
    assert "outside the drop folder" in refusals(mirror)["innocent.jpg"]
    assert b"private key" not in objects(aws).values()


class FailingS3:
    def __init__(self, real: Any) -> None:
        self._real = real

    def put_object(self, **kwargs: Any) -> None:
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"}}, "PutObject")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_a_failing_upload_warns_once_and_keeps_retrying(
    aws: AwsResources, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (folder / "retry.jpg").write_bytes(b"x")
    failing = DropboxMirror(
        folder, s3=FailingS3(aws.s3), bucket=aws.bucket, upload_prefix="uploads/", max_bytes=LIMIT
    )
    settle(failing, polls=6)
    assert len(warnings_about(caplog, "will retry")) == 1
    assert failing.stats()["pending"] == 1
