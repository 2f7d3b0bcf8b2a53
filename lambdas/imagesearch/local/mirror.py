"""One-way mirror of the drop folder into the bucket's upload prefix.

Polls rather than watching with inotify/FSEvents: polling works everywhere,
including network shares and folders mounted into containers, where change
notifications are often not delivered, and it needs no extra dependency. A
scan of a few thousand files every half second costs next to nothing.

New and changed files are uploaded to ``upload_prefix + relative path``; files
that disappear are deleted. Only objects this mirror uploaded are ever deleted,
so uploads that arrive another way (presigned URL, CLI) are left alone.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import os
import stat
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5
# Browsers, download managers and editors write to these names before the final rename.
PARTIAL_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".tmp", ".swp", "~")
_HASH_CHUNK = 1024 * 1024
# Ingest queue depth above which new uploads wait (see DropboxMirror._upload_budget).
MAX_BACKLOG = 40


def is_ignored(name: str) -> bool:
    """Hidden files and partial downloads never leave the folder."""
    lowered = name.lower()
    return name.startswith((".", "~$")) or lowered.endswith(PARTIAL_SUFFIXES)


@dataclass(frozen=True)
class _Stat:
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class _Uploaded:
    key: str
    file_stat: _Stat
    sha256: str


class DropboxMirror:
    def __init__(
        self,
        folder: Path,
        *,
        s3: Any,
        bucket: str,
        upload_prefix: str,
        poll_seconds: float = POLL_SECONDS,
        backlog: Callable[[], int] | None = None,
        max_backlog: int = MAX_BACKLOG,
    ) -> None:
        self.folder = folder
        self._s3 = s3
        self._bucket = bucket
        self._prefix = upload_prefix
        self._poll_seconds = poll_seconds
        self._backlog = backlog
        self._max_backlog = max_backlog
        self._uploaded: dict[str, _Uploaded] = {}  # relative path -> what the bucket holds
        self._seen: dict[str, _Stat] = {}  # relative path -> stat at the previous poll
        self._reported: set[str] = set()  # problems already logged, not repeated every poll
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dropbox-mirror", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            mirrored = len(self._uploaded)
            pending = sum(
                1
                for path, seen in self._seen.items()
                if path not in self._uploaded or self._uploaded[path].file_stat != seen
            )
        return {"path": str(self.folder), "files": mirrored, "pending": pending}

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
        """One poll: upload what is new, changed and settled; delete what is gone."""
        if not self.folder.is_dir():
            # An unmounted share or a moved folder is not a request to empty the bucket.
            self._report_once("missing", "drop folder %s is missing; nothing synced", self.folder)
            return
        self._reported.discard("missing")
        current = self._scan()
        # A file is settled when two polls in a row see the same size and mtime:
        # one still being written is left for a later poll.
        settled = sorted(
            path
            for path, observed in current.items()
            if self._seen.get(path) == observed
            and (path not in self._uploaded or self._uploaded[path].file_stat != observed)
        )
        for path in settled[: self._upload_budget(len(settled))]:
            if self._stop.is_set():
                return
            self._sync_file(path, current[path], self._uploaded.get(path))
        for path in [p for p in self._uploaded if p not in current]:
            self._delete(path)
        with self._lock:
            self._seen = current

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

    def _scan(self) -> dict[str, _Stat]:
        found: dict[str, _Stat] = {}
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
                    self._report_once(relative, "skipping %r: its name is not UTF-8", relative)
                    continue
                try:
                    info = full.stat()
                except OSError:
                    continue  # removed between listing and stat
                if stat.S_ISREG(info.st_mode):
                    found[relative] = _Stat(info.st_size, info.st_mtime_ns)
        return found

    def key_for(self, relative: str) -> str:
        # NFC: macOS file systems hand out decomposed names; keys should not
        # depend on which machine dropped the file.
        return self._prefix + unicodedata.normalize("NFC", relative)

    def _sync_file(self, relative: str, observed: _Stat, uploaded: _Uploaded | None) -> None:
        full = self.folder / relative
        try:
            digest = _sha256(full)
            if uploaded is not None and uploaded.sha256 == digest:
                self._remember(relative, _Uploaded(uploaded.key, observed, digest))  # touched only
                return
            key = self.key_for(relative)
            content_type = mimetypes.guess_type(relative)[0] or "application/octet-stream"
            with full.open("rb") as body:
                self._s3.put_object(
                    Bucket=self._bucket, Key=key, Body=body, ContentType=content_type
                )
        except OSError as error:
            self._report_once(relative, "cannot read %s: %s", relative, error.strerror or error)
            return
        except (BotoCoreError, ClientError) as error:
            logger.warning("upload of %s failed (will retry): %s", relative, error)
            return
        self._reported.discard(relative)
        self._remember(relative, _Uploaded(key, observed, digest))
        logger.info("%s %s", "updated" if uploaded else "uploaded", key)

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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
