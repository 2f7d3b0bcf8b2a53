"""One-way mirror of the drop folder into the bucket's upload prefix.

Polls rather than watching with inotify/FSEvents: polling works everywhere,
including network shares and folders mounted into containers, where change
notifications are often not delivered, and it needs no extra dependency. A
scan of a few thousand files every half second costs next to nothing.

New and changed files are uploaded to ``upload_prefix + relative path``; files
that disappear are deleted. Only objects this mirror uploaded are ever deleted,
so uploads that arrive another way (presigned URL, CLI) are left alone. An object
this mirror uploaded that disappears from the bucket (``DELETE /images/{id}``, the
CLI) takes its file along: it is moved to ``.deleted/`` in the drop folder, so the
folder shows what is indexed and nothing is lost.

A file that cannot become an object is refused once, visibly (a warning and the
``refused`` list of ``stats()``), never retried every poll: larger than the upload
limit (never read), a name with control characters, a key over S3's 1,024 bytes,
a second spelling of a name already mirrored (NFC/NFD), a symbolic link to a file
outside the folder (never followed).
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import os
import stat
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from imagesearch import resources as r

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5
# How often the bucket is listed to notice objects deleted through the API or CLI.
RECONCILE_SECONDS = 5.0
# Browsers, download managers and editors write to these names before the final rename.
PARTIAL_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".tmp", ".swp", "~")
# Where files whose objects were deleted through the API go (hidden: never mirrored).
TRASH_DIR = ".deleted"
_HASH_CHUNK = 1024 * 1024
# Ingest queue depth above which new uploads wait (see DropboxMirror._upload_budget).
MAX_BACKLOG = 40
# Refusals listed by stats() (the count is always complete).
MAX_LISTED_REFUSALS = 50
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def is_ignored(name: str) -> bool:
    """Hidden files and partial downloads never leave the folder."""
    lowered = name.lower()
    return name.startswith((".", "~$")) or lowered.endswith(PARTIAL_SUFFIXES)


@dataclass(frozen=True)
class _Stat:
    size: int
    mtime_ns: int
    # A rewrite that keeps size and mtime (copy -p, os.utime) still changes the
    # ctime, and a replace by rename changes the inode.
    ctime_ns: int
    inode: int


@dataclass(frozen=True)
class _Found:
    stat: _Stat
    source: Path  # what is read: the file, or an in-folder symlink's target


@dataclass(frozen=True)
class _Uploaded:
    key: str
    file_stat: _Stat
    sha256: str
    at: float  # time.monotonic() when the upload finished


class DropboxMirror:
    def __init__(
        self,
        folder: Path,
        *,
        s3: Any,
        bucket: str,
        upload_prefix: str,
        max_bytes: int,
        poll_seconds: float = POLL_SECONDS,
        reconcile_seconds: float = RECONCILE_SECONDS,
        backlog: Callable[[], int] | None = None,
        max_backlog: int = MAX_BACKLOG,
        clock: Callable[[], float] = time.monotonic,
        uploaded: Mapping[str, _Uploaded] | None = None,
    ) -> None:
        self.folder = folder
        self._root = folder.resolve()
        self._s3 = s3
        self._bucket = bucket
        self._prefix = upload_prefix
        self._max_bytes = max_bytes
        self._poll_seconds = poll_seconds
        self._reconcile_seconds = reconcile_seconds
        self._backlog = backlog
        self._max_backlog = max_backlog
        self._clock = clock
        # relative path -> what the bucket holds (``uploaded``: from local mode's saved
        # state, so a restart neither re-uploads unchanged files nor forgets removed ones)
        self._uploaded: dict[str, _Uploaded] = dict(uploaded or {})
        self._seen: dict[str, _Stat] = {}  # relative path -> stat at the previous poll
        self._refused: dict[str, str] = {}  # relative path -> why it is not mirrored
        self._reported: set[str] = set()  # problems already logged, not repeated every poll
        self._last_reconcile = float("-inf")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dropbox-mirror", daemon=True)

    def start(self) -> None:
        # The first listing of the bucket waits one period: at start (a restart of
        # local mode with thousands of images) the first searches come first, and an
        # object deleted behind a stopped mirror's back is noticed a period later.
        self._last_reconcile = self._clock()
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def uploaded_files(self) -> dict[str, _Uploaded]:
        """What the mirror uploaded (for local mode's saved state)."""
        with self._lock:
            return dict(self._uploaded)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            mirrored = len(self._uploaded)
            pending = sum(
                1
                for path, seen in self._seen.items()
                if path not in self._refused
                and (path not in self._uploaded or self._uploaded[path].file_stat != seen)
            )
            refused = [
                {"path": path, "reason": reason} for path, reason in sorted(self._refused.items())
            ]
        return {
            "path": str(self.folder),
            "files": mirrored,
            "pending": pending,
            "refused": len(refused),
            "refusals": refused[:MAX_LISTED_REFUSALS],
        }

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_once()
            except Exception:
                # The mirror must outlive any one bad poll (a vanished file, a moto
                # hiccup); the next poll starts from a fresh scan.
                logger.exception("drop folder sync failed; retrying")
            self._stop.wait(self._poll_seconds)

    def sync_once(self) -> None:
        """One poll: upload what is new, changed and settled; delete what is gone;
        now and then, notice objects deleted behind the mirror's back."""
        if not self.folder.is_dir():
            # An unmounted share or a moved folder is not a request to empty the bucket.
            self._report_once("missing", "drop folder %s is missing; nothing synced", self.folder)
            return
        self._reported.discard("missing")
        found, refused = self._scan()
        current = self._claim_keys(found, refused)
        self._set_refused(refused)
        # A file is settled when two polls in a row see the same stat: one still
        # being written is left for a later poll.
        settled = sorted(
            path
            for path, entry in current.items()
            if self._seen.get(path) == entry.stat
            and (path not in self._uploaded or self._uploaded[path].file_stat != entry.stat)
        )
        for path in settled[: self._upload_budget(len(settled))]:
            if self._stop.is_set():
                return
            self._sync_file(path, current[path], self._uploaded.get(path))
        claimed = {self.key_for(path) for path in current}
        for path in [p for p in self._uploaded if p not in current]:
            if self._uploaded[path].key in claimed:
                # Another spelling of the name took the key over: it overwrites the
                # object instead of the object being deleted.
                with self._lock:
                    del self._uploaded[path]
            else:
                self._delete(path)
        with self._lock:
            self._seen = {path: entry.stat for path, entry in found.items()}
        if self._clock() - self._last_reconcile >= self._reconcile_seconds:
            self.reconcile(current)

    def _set_refused(self, refused: dict[str, str]) -> None:
        # One warning per file and reason; told again only if it comes back later.
        for path, reason in refused.items():
            if self._refused.get(path) != reason:
                logger.warning("not mirrored: %r: %s", path, reason)
        with self._lock:
            self._refused = refused

    def _claim_keys(self, found: dict[str, _Found], refused: dict[str, str]) -> dict[str, _Found]:
        """One file per key. Names that differ only in Unicode normalisation (NFC and
        NFD) share a key: the one mirrored already keeps it, else the first by name;
        the others are refused, so deleting one never removes the other's image."""
        by_key: dict[str, list[str]] = {}
        for path in found:
            by_key.setdefault(self.key_for(path), []).append(path)
        current = dict(found)
        for key, paths in by_key.items():
            if len(paths) < 2:
                continue
            # The one mirrored already keeps the key; else the spelling that is the key.
            owners = [p for p in paths if p in self._uploaded and self._uploaded[p].key == key]
            owners += sorted(p for p in paths if self._prefix + p == key) + sorted(paths)
            owner = owners[0]
            for path in paths:
                if path != owner:
                    del current[path]
                    # ascii(): the two names look alike; their code points do not.
                    refused[path] = (
                        f"same name as {owner!a} once Unicode-normalised (NFC), so "
                        f"both would be the object {key!r}: only {owner!a} is "
                        "mirrored; rename one of them"
                    )
        return current

    def _upload_budget(self, wanted: int) -> int:
        """How many files this poll may upload.

        Uploads stop while the ingest queue holds ``max_backlog`` messages: the
        rest stay pending in the folder. moto's SQS does work proportional to the
        queue length for every message it hands out, so a folder of thousands
        of photos enqueued at once would slow ingest quadratically.
        """
        if self._backlog is None or wanted == 0:
            return wanted
        try:
            return max(0, self._max_backlog - self._backlog())
        except (BotoCoreError, ClientError) as error:
            logger.warning("could not read the ingest queue depth: %s", error)
            return self._max_backlog

    def _scan(self) -> tuple[dict[str, _Found], dict[str, str]]:
        found: dict[str, _Found] = {}
        refused: dict[str, str] = {}
        # followlinks=False: a symlinked directory is never entered.
        for root, dirs, files in os.walk(self.folder):
            dirs[:] = [d for d in dirs if not is_ignored(d)]
            for name in files:
                if is_ignored(name):
                    continue
                full = Path(root, name)
                relative = full.relative_to(self.folder).as_posix()
                try:
                    relative.encode("utf-8")
                except UnicodeEncodeError:
                    refused[relative] = "its name is not UTF-8: rename the file"
                    continue
                problem = self._name_problem(relative)
                if problem is not None:
                    refused[relative] = problem
                    continue
                try:
                    entry = self._examine(full)
                except OSError:
                    continue  # removed between listing and stat
                if isinstance(entry, str):
                    refused[relative] = entry
                elif entry is not None:
                    found[relative] = entry
        return found, refused

    def _name_problem(self, relative: str) -> str | None:
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in relative):
            return (
                "its name holds a control character (newline, tab...), which S3 event "
                "notifications and listings do not carry reliably: rename the file"
            )
        size = len(self.key_for(relative).encode("utf-8"))
        if size > r.MAX_KEY_BYTES:
            return (
                f"its object key would be {size} bytes and S3 keys are at most "
                f"{r.MAX_KEY_BYTES}: shorten the path"
            )
        return None

    def _examine(self, full: Path) -> _Found | str | None:
        """The file to mirror, a reason not to, or None (not a regular file)."""
        source = full
        info = os.lstat(full)
        if stat.S_ISLNK(info.st_mode):
            target = full.resolve(strict=True)
            if not target.is_relative_to(self._root):
                return "symbolic link to a file outside the drop folder: not followed"
            source = target
            info = os.stat(target)
        if not stat.S_ISREG(info.st_mode):
            return None
        if info.st_size > self._max_bytes:
            # Never read: a huge file must not pass through this process or moto.
            return (
                f"file is {info.st_size} bytes and the upload limit is {self._max_bytes} "
                f"bytes ({r.ENV_MAX_UPLOAD_BYTES})"
            )
        stamp = _Stat(info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)
        return _Found(stamp, source)

    def key_for(self, relative: str) -> str:
        # NFC: macOS file systems hand out decomposed names; keys should not
        # depend on which machine dropped the file.
        return self._prefix + unicodedata.normalize("NFC", relative)

    def _sync_file(self, relative: str, entry: _Found, uploaded: _Uploaded | None) -> None:
        try:
            digest = _sha256(self._open(entry.source))
            if uploaded is not None and uploaded.sha256 == digest:
                # Touched only: same bytes, nothing to send.
                self._remember(relative, _Uploaded(uploaded.key, entry.stat, digest, uploaded.at))
                return
            key = self.key_for(relative)
            content_type = mimetypes.guess_type(relative)[0] or "application/octet-stream"
            with self._open(entry.source) as body:
                if os.fstat(body.fileno()).st_size > self._max_bytes:
                    return  # grew past the limit since the scan: refused at the next one
                self._s3.put_object(
                    Bucket=self._bucket, Key=key, Body=body, ContentType=content_type
                )
        except OSError as error:
            self._report_once(relative, "cannot read %s: %s", relative, error.strerror or error)
            return
        except (BotoCoreError, ClientError) as error:
            # Once per file until it succeeds, not a warning every poll.
            self._report_once(
                f"upload:{relative}", "upload of %s failed (will retry): %s", relative, error
            )
            return
        self._reported.discard(relative)
        self._reported.discard(f"upload:{relative}")
        self._remember(relative, _Uploaded(key, entry.stat, digest, self._clock()))
        logger.info("%s %s", "updated" if uploaded else "uploaded", key)

    def _open(self, source: Path) -> IO[bytes]:
        # O_NOFOLLOW: a file swapped for a symlink after the scan is not followed.
        return os.fdopen(os.open(source, os.O_RDONLY | _O_NOFOLLOW), "rb")

    def reconcile(self, current: dict[str, _Found] | None = None) -> None:
        """Files whose objects were deleted through the API or CLI follow them into
        ``.deleted/``: kept (nothing is lost), no longer mirrored (the delete holds)."""
        started = self._clock()
        self._last_reconcile = started
        try:
            keys = self._listed_keys()
        except (BotoCoreError, ClientError) as error:
            self._report_once("reconcile", "could not list the bucket: %s", error)
            return
        self._reported.discard("reconcile")
        for path, uploaded in list(self._uploaded.items()):
            if uploaded.key in keys or uploaded.at >= started:
                continue  # present, or uploaded after the listing began
            if current is not None and (
                path not in current or current[path].stat != uploaded.file_stat
            ):
                continue  # gone or changed meanwhile: the next poll deals with it
            with self._lock:
                del self._uploaded[path]
            moved = self._to_trash(path)
            if moved is not None:
                logger.info(
                    "%s was deleted from the bucket: moved %s to %s", uploaded.key, path, moved
                )

    def _listed_keys(self) -> set[str]:
        keys: set[str] = set()
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix):
            keys.update(item["Key"] for item in page.get("Contents", []))
        return keys

    def _to_trash(self, relative: str) -> str | None:
        source = self.folder / relative
        target = self.folder / TRASH_DIR / relative
        counter = 1
        while target.exists() or target.is_symlink():
            counter += 1
            target = self.folder / TRASH_DIR / f"{relative} ({counter})"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            source.rename(target)
        except OSError as error:
            self._report_once(
                f"trash:{relative}", "cannot move %s to %s: %s", relative, TRASH_DIR, error
            )
            return None
        return target.relative_to(self.folder).as_posix()

    def _delete(self, relative: str) -> None:
        uploaded = self._uploaded[relative]
        try:
            self._s3.delete_object(Bucket=self._bucket, Key=uploaded.key)
        except (BotoCoreError, ClientError) as error:
            logger.warning("delete of %s failed (will retry): %s", uploaded.key, error)
            return
        with self._lock:
            del self._uploaded[relative]
        logger.info("deleted %s", uploaded.key)

    def _remember(self, relative: str, uploaded: _Uploaded) -> None:
        with self._lock:
            self._uploaded[relative] = uploaded

    def _report_once(self, topic: str, message: str, *args: object) -> None:
        if topic not in self._reported:
            self._reported.add(topic)
            logger.warning(message, *args)


def _sha256(opened: IO[bytes]) -> str:
    digest = hashlib.sha256()
    with opened as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
