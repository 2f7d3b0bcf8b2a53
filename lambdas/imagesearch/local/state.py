"""Local mode's state on disk: a moto snapshot that survives restarts (SPEC section 8).

moto keeps S3, SQS and DynamoDB in memory. ``StateStore`` pickles the three backends
of local mode's account and region, plus what local mode's own threads need to pick up
where they stopped (the mirror's list of uploaded files), into ``STATE_DIR/moto.pickle``:
every few seconds while something changed and once more on a clean stop. A write goes
to a temporary file that replaces the old one only once complete (``os.replace``), so a
crash leaves the previous snapshot, never half a file. On start the snapshot is put
back into moto before the resources are created, so a restart finds every record,
object (CLI uploads included) and queued message, and makes no model call.

``WriteGate`` is a WSGI middleware in front of moto: it marks the state changed on
every request that can write, and lets a snapshot run while no request is inside moto
(a readers-writer lock), so the pickle never sees a half-applied request.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import os
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

SNAPSHOT_NAME = "moto.pickle"
LOCK_NAME = "lock"
FORMAT_VERSION = 1
SAVE_INTERVAL_SECONDS = 3.0
ACCOUNT_ID = "123456789012"  # moto's default account: local mode's clients never set one
S3_PARTITION = "aws"

# Requests that never change moto's state (everything else marks it changed).
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_READ_TARGETS = frozenset(
    {
        "DynamoDB_20120810.GetItem",
        "DynamoDB_20120810.BatchGetItem",
        "DynamoDB_20120810.Query",
        "DynamoDB_20120810.Scan",
        "DynamoDB_20120810.DescribeTable",
        "DynamoDB_20120810.DescribeTimeToLive",
        "DynamoDB_20120810.ListTables",
        "AmazonSQS.GetQueueAttributes",
        "AmazonSQS.GetQueueUrl",
        "AmazonSQS.ListQueues",
    }
)
# A receive changes receive counts (and moves messages to the DLQ) only when it
# returns messages: the worker's empty long polls must not count as changes.
_RECEIVE_TARGET = "AmazonSQS.ReceiveMessage"


class StateError(RuntimeError):
    """The state directory cannot be used; the message says what to do."""


class _SharedExclusive:
    """Many requests at once, or one snapshot alone; a waiting snapshot goes first."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._active = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._condition:
            while self._writer or self._writers_waiting:
                self._condition.wait()
            self._active += 1
        try:
            yield
        finally:
            with self._condition:
                self._active -= 1
                if not self._active:
                    self._condition.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._condition:
            self._writers_waiting += 1
            while self._writer or self._active:
                self._condition.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._condition:
                self._writer = False
                self._condition.notify_all()


class WriteGate:
    """WSGI middleware in front of moto's app: tracks changes, admits snapshots."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self._app = app
        self.lock = _SharedExclusive()
        self._changed = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        method = environ.get("REQUEST_METHOD", "GET")
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        with self.lock.shared():
            result = self._app(environ, start_response)
            if method in _READ_METHODS or target in _READ_TARGETS:
                return result
            if target == _RECEIVE_TARGET:
                # moto answers in full here; read it to see whether messages went out.
                body = b"".join(result)
                close = getattr(result, "close", None)
                if callable(close):
                    close()
                if b'"Messages"' in body:
                    self._changed.set()
                return [body]
            self._changed.set()
            return result

    @property
    def changed(self) -> bool:
        return self._changed.is_set()

    def mark_changed(self) -> None:
        self._changed.set()

    def take_changed(self) -> bool:
        """True once per batch of changes (the flag is cleared)."""
        if self._changed.is_set():
            self._changed.clear()
            return True
        return False


class _Pickler(pickle.Pickler):
    """moto's SQS queues hold a ``threading.Condition``: saved as a fresh one. A
    DynamoDB item's attributes (moto's ``LimitedSizeDict``) are saved as a plain dict
    put back whole: unpickled item by item, each insert re-measures the whole item (a
    restore of 1,000 images spent 0.9 s there); the sizes were checked when written."""

    def __init__(self, file: IO[bytes], protocol: int) -> None:
        super().__init__(file, protocol=protocol)
        from moto.dynamodb.models.dynamo_type import LimitedSizeDict

        self._limited = LimitedSizeDict

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is self._limited:
            return _limited_size_dict, (dict(obj),)
        if isinstance(obj, threading.Condition):
            return threading.Condition, ()
        return NotImplemented


def _limited_size_dict(items: dict[str, Any]) -> Any:
    """moto's ``LimitedSizeDict`` holding ``items``, without its per-insert size check."""
    from moto.dynamodb.models.dynamo_type import LimitedSizeDict

    restored = LimitedSizeDict.__new__(LimitedSizeDict)
    dict.update(restored, items)
    return restored


@dataclass
class Snapshot:
    region: str
    shape: str  # fingerprint of the resource shapes the tables and queues were made with
    s3: Any
    dynamodb: Any
    sqs: Any
    extra: dict[str, Any] = field(default_factory=dict)
    saved_at: float = 0.0
    version: int = FORMAT_VERSION


def shape_fingerprint(*parts: Any) -> str:
    """A short hash of the resource definitions: a snapshot of other shapes is not
    restored as is (its table may lack an index this version queries)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _backends() -> tuple[Any, Any, Any]:
    from moto.backends import get_backend

    return get_backend("s3"), get_backend("dynamodb"), get_backend("sqs")


class StateStore:
    """``STATE_DIR``: a lock against two local modes on one state, and the snapshot."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).expanduser().resolve()
        self.path = self.directory / SNAPSHOT_NAME
        self._lock_file: IO[str] | None = None

    def open(self) -> StateStore:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            lock_file = (self.directory / LOCK_NAME).open("w")
        except OSError as error:
            raise StateError(
                f"cannot use {self.directory} as the state folder: {error.strerror or error}"
                " (choose another with --state-dir or STATE_DIR)"
            ) from error
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            lock_file.close()
            raise StateError(
                f"{self.directory} is in use by another imagesearch local: stop it first,"
                " or give this one its own --state-dir"
            ) from error
        self._lock_file = lock_file
        # A process killed while saving leaves its temporary file: never read, and
        # nobody else writes here while we hold the lock.
        for leftover in self.directory.glob(f".{SNAPSHOT_NAME}.*.tmp"):
            leftover.unlink(missing_ok=True)
        return self

    def close(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    # --- save ---------------------------------------------------------------------------

    def capture(self, *, region: str, shape: str, extra: dict[str, Any]) -> bytes:
        """moto's state (and ``extra``) as bytes. Call with no request inside moto."""
        s3, dynamodb, sqs = _backends()
        snapshot = Snapshot(
            region=region,
            shape=shape,
            s3=s3[ACCOUNT_ID][S3_PARTITION],
            dynamodb=dynamodb[ACCOUNT_ID][region],
            sqs=sqs[ACCOUNT_ID][region],
            extra=extra,
            saved_at=time.time(),
        )
        buffer = io.BytesIO()
        _Pickler(buffer, pickle.HIGHEST_PROTOCOL).dump(snapshot)
        return buffer.getvalue()

    def write(self, data: bytes) -> None:
        """Atomically: the old snapshot stays until the new one is complete on disk."""
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with temporary.open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        finally:
            temporary.unlink(missing_ok=True)

    # --- restore ------------------------------------------------------------------------

    def load(self) -> Snapshot | None:
        """The saved snapshot, or None when there is none or it cannot be read (set aside
        with a warning: a snapshot of another moto or format version)."""
        if not self.path.exists():
            return None
        try:
            with self.path.open("rb") as handle:
                # Our own file in the user's state folder, written by this code.
                snapshot = pickle.load(handle)  # noqa: S301
            if not isinstance(snapshot, Snapshot) or snapshot.version != FORMAT_VERSION:
                raise TypeError("not a snapshot of this version")
        except (
            OSError,
            EOFError,
            pickle.UnpicklingError,
            AttributeError,
            ImportError,
            TypeError,
            ValueError,
        ) as error:
            aside = self.path.with_name(f"{self.path.name}.unreadable")
            os.replace(self.path, aside)
            logger.warning(
                "could not read the saved state %s (%s): starting empty; the file is kept as %s",
                self.path,
                error,
                aside,
            )
            return None
        return snapshot

    @staticmethod
    def install(snapshot: Snapshot, *, tables_and_queues: bool) -> None:
        """Put the snapshot's backends into moto (before any resource is created).
        ``tables_and_queues=False``: S3 only (the table shape changed)."""
        s3, dynamodb, sqs = _backends()
        dict.__setitem__(s3[ACCOUNT_ID], S3_PARTITION, snapshot.s3)
        # moto finds a bucket's account through this map, not the backend.
        for name in snapshot.s3.buckets:
            s3.bucket_accounts[name] = (S3_PARTITION, ACCOUNT_ID)
        if tables_and_queues:
            dict.__setitem__(dynamodb[ACCOUNT_ID], snapshot.region, snapshot.dynamodb)
            dict.__setitem__(sqs[ACCOUNT_ID], snapshot.region, snapshot.sqs)


class Saver:
    """Saves the snapshot every ``interval`` seconds while something changed."""

    def __init__(
        self,
        store: StateStore,
        gate: WriteGate,
        *,
        region: str,
        shape: str,
        extra: Callable[[], dict[str, Any]],
        interval: float = SAVE_INTERVAL_SECONDS,
    ) -> None:
        self._store = store
        self._gate = gate
        self._region = region
        self._shape = shape
        self._extra = extra
        self._interval = interval
        self._stop = threading.Event()
        self._save_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="state-saver", daemon=True)
        self.saves = 0
        self._last_seconds = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def save(self) -> None:
        with self._save_lock:
            started = time.perf_counter()
            extra = self._extra()
            with self._gate.lock.exclusive():
                data = self._store.capture(region=self._region, shape=self._shape, extra=extra)
            self._store.write(data)
            self.saves += 1
            self._last_seconds = time.perf_counter() - started
            logger.debug(
                "saved local state (%.1f MB) in %.2f s",
                len(data) / 1e6,
                time.perf_counter() - started,
            )

    def _run(self) -> None:
        # A save pauses moto: at most a tenth of the time goes to saving, however big
        # the state grows (a save of 1,000 images takes a fraction of a second).
        while not self._stop.wait(max(self._interval, 10 * self._last_seconds)):
            if not self._gate.take_changed():
                continue
            try:
                self.save()
            except (OSError, pickle.PicklingError, RuntimeError) as error:
                # Kept going: the previous snapshot is intact, the next change retries.
                self._gate.mark_changed()
                logger.warning("could not save the local state (will retry): %s", error)
