"""Snapshots of the embedded index in S3: a cold start maps one contiguous float32 array
instead of parsing every vector out of Scan pages.

Layout (``<prefix>snapshots/<created ms>-<uuid>.snap``, immutable once written):

- bytes ``[0, HEADER_BYTES)``: ``MAGIC`` + the header as JSON, zero-padded;
- ``[vectors_offset, +count * dimension * 4)``: the unit vectors, row-major
  little-endian float32, checked per ``part_bytes`` part by CRC-32;
- ``[meta_offset, +meta_bytes)``: zlib-compressed JSON of ids, keys, content types and
  catalog revisions (one entry per row), CRC-32 checked.

``<prefix>current.json`` (the pointer) holds the header of the current snapshot and is
written last, after the object is complete, so a reader never sees half a snapshot;
a replaced snapshot is deleted one write later (``retired``), so a reader that just
read the old pointer still finds its object. Writers race harmlessly: every snapshot
is complete and consistent with its watermark, and a writer does not move the pointer
back to an older watermark.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from botocore.exceptions import ClientError

from imagesearch.index.matrix import MatrixIndex, allocate_rows
from imagesearch.records import VECTOR_DTYPE

logger = logging.getLogger(__name__)

MAGIC = b"IMGSNAP1"
FORMAT = 1
HEADER_BYTES = 16384
POINTER_NAME = "current.json"
PART_BYTES = 8 * 1024 * 1024
READ_THREADS = 8
_UPLOAD_PART_BYTES = 16 * 1024 * 1024
_UPLOAD_THREADS = 4
# Parts the upload holds in memory at once (s3transfer's default is 10: 160 MB): one
# per upload thread.
_UPLOAD_PARTS_IN_MEMORY = _UPLOAD_THREADS
# Metadata entries JSON-encoded at a time while the snapshot is written.
_META_BATCH = 4096


class SnapshotError(Exception):
    """No usable snapshot: ``reason`` is missing, corrupt, mismatch or stale."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SnapshotHeader:
    object_key: str
    model_id: str
    dimension: int
    count: int
    watermark_ms: int  # changes from here on (minus the overlap) are caught up
    created_ms: int
    vectors_offset: int
    part_bytes: int
    part_crc32: tuple[int, ...]
    meta_offset: int
    meta_bytes: int
    meta_crc32: int
    format: int = FORMAT

    @property
    def vectors_bytes(self) -> int:
        return self.count * self.dimension * VECTOR_DTYPE.itemsize

    def to_json(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["part_crc32"] = list(self.part_crc32)
        return payload

    @classmethod
    def from_json(cls, payload: Any) -> SnapshotHeader:
        try:
            header = cls(
                object_key=str(payload["object_key"]),
                model_id=str(payload["model_id"]),
                dimension=_int(payload["dimension"]),
                count=_int(payload["count"]),
                watermark_ms=_int(payload["watermark_ms"]),
                created_ms=_int(payload["created_ms"]),
                vectors_offset=_int(payload["vectors_offset"]),
                part_bytes=_int(payload["part_bytes"]),
                part_crc32=tuple(_int(c) for c in payload["part_crc32"]),
                meta_offset=_int(payload["meta_offset"]),
                meta_bytes=_int(payload["meta_bytes"]),
                meta_crc32=_int(payload["meta_crc32"]),
                format=_int(payload["format"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise SnapshotError("corrupt", f"snapshot header is malformed: {error}") from None
        if header.format != FORMAT:
            raise SnapshotError("corrupt", f"snapshot format {header.format} is not {FORMAT}")
        parts = -(-header.vectors_bytes // header.part_bytes) if header.part_bytes > 0 else -1
        if (
            header.dimension < 1
            or header.count < 0
            or header.part_bytes < 1
            or len(header.part_crc32) != parts
            or header.meta_offset != header.vectors_offset + header.vectors_bytes
        ):
            raise SnapshotError("corrupt", "snapshot header is inconsistent")
        return header


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not an integer")
    return value


@dataclass
class Snapshot:
    """A loaded snapshot: rows ``[0, count)`` of ``buffer`` (extra rows: spare capacity)."""

    header: SnapshotHeader
    ids: list[str]
    keys: list[str]
    content_types: list[str | None]
    revisions: list[str | None]
    buffer: npt.NDArray[np.float32] = field(repr=False)


class _Chunks(io.RawIOBase):
    """A read-only file over several buffers, so an upload never joins them (a
    snapshot's vectors are hundreds of MB)."""

    def __init__(self, parts: Sequence[memoryview]) -> None:
        self._parts = [p.cast("B") for p in parts]
        self._index = 0
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        view = memoryview(target).cast("B")
        written = 0
        while written < len(view) and self._index < len(self._parts):
            part = self._parts[self._index]
            take = min(len(view) - written, len(part) - self._offset)
            view[written : written + take] = part[self._offset : self._offset + take]
            written += take
            self._offset += take
            if self._offset == len(part):
                self._index += 1
                self._offset = 0
        return written


class SnapshotStore:
    """Reads and writes snapshots under ``prefix`` of ``bucket``."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        client: Any = None,
        clock: Callable[[], float] = time.time,
        part_bytes: int = PART_BYTES,
        threads: int = READ_THREADS,
    ) -> None:
        self._bucket = bucket
        self._prefix = prefix
        self._client = client
        self._clock = clock
        self._part_bytes = part_bytes
        self._threads = threads

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # deferred: keeps the handler's cold import fast

            self._client = boto3.client("s3")
        return self._client

    @property
    def pointer_key(self) -> str:
        return f"{self._prefix}{POINTER_NAME}"

    # -- reading ----------------------------------------------------------------

    def _pointer(self) -> dict[str, Any] | None:
        try:
            body = self.client.get_object(Bucket=self._bucket, Key=self.pointer_key)["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        try:
            pointer = json.loads(body)
        except ValueError:
            raise SnapshotError("corrupt", "snapshot pointer is not JSON") from None
        if not isinstance(pointer, dict) or "header" not in pointer:
            raise SnapshotError("corrupt", "snapshot pointer has no header")
        return pointer

    def read_header(self) -> SnapshotHeader | None:
        """The current snapshot's header (one small GET), None when there is none."""
        return self.read_pointer()[0]

    def read_pointer(self) -> tuple[SnapshotHeader | None, int]:
        """The current snapshot's header and when the catalog was last reconciled with
        the snapshots (epoch ms, 0: never; the pointer carries it from one to the next)."""
        pointer = self._pointer()
        if pointer is None:
            return None, 0
        return SnapshotHeader.from_json(pointer["header"]), _reconciled_ms(pointer)

    def read_revisions(self, header: SnapshotHeader) -> dict[str, str | None]:
        """Each row's catalog revision in the snapshot ``header`` names: its metadata
        only (one ranged GET, no vector), what the reconciliation compares."""
        blob = self._range(header, header.meta_offset, header.meta_bytes)
        if zlib.crc32(blob) != header.meta_crc32:
            raise SnapshotError("corrupt", "snapshot metadata fails its checksum")
        ids, _, _, revisions = _parse_meta(blob, header.count)
        return dict(zip(ids, revisions, strict=True))

    def mark_reconciled(self, header: SnapshotHeader, reconciled_ms: int) -> bool:
        """Record in the pointer that the snapshot ``header`` names agreed with the
        catalog at ``reconciled_ms``; False (nothing written) when the pointer has
        moved to another snapshot meanwhile (its writer carried the older time)."""
        pointer = self._pointer()
        if pointer is None or pointer["header"].get("object_key") != header.object_key:
            return False
        self.client.put_object(
            Bucket=self._bucket,
            Key=self.pointer_key,
            Body=pointer_body(header, list(pointer.get("retired") or []), reconciled_ms),
            ContentType="application/json",
        )
        return True

    def load(self, *, model_id: str, dimension: int) -> Snapshot:
        """The current snapshot of ``model_id`` at ``dimension``, read with parallel
        ranged GETs straight into a matrix buffer (with spare rows for appends).
        Raises SnapshotError when there is none, it is corrupt or of another model."""
        header = self.read_header()
        if header is None:
            raise SnapshotError("missing", "no index snapshot yet")
        if header.model_id != model_id or header.dimension != dimension:
            raise SnapshotError(
                "mismatch",
                f"snapshot holds {header.model_id} ({header.dimension}-d), not "
                f"{model_id} ({dimension}-d)",
            )
        buffer = allocate_rows(MatrixIndex.capacity_for(header.count), dimension)
        target = buffer.data.cast("B")
        ranges = [
            (start, min(start + header.part_bytes, header.vectors_bytes))
            for start in range(0, header.vectors_bytes, header.part_bytes)
        ]

        def read_part(n: int) -> None:
            start, end = ranges[n]
            part = target[start:end]
            self._range_into(header, header.vectors_offset + start, part)
            if zlib.crc32(part) != header.part_crc32[n]:
                raise SnapshotError("corrupt", f"snapshot part {n} fails its checksum")

        def read_head() -> None:
            blob = self._range(header, 0, HEADER_BYTES)
            if _header_block(header) != blob:
                raise SnapshotError("corrupt", "snapshot object does not match its pointer")

        meta: list[bytes] = []

        def read_meta() -> None:
            blob = self._range(header, header.meta_offset, header.meta_bytes)
            if zlib.crc32(blob) != header.meta_crc32:
                raise SnapshotError("corrupt", "snapshot metadata fails its checksum")
            meta.append(blob)

        jobs: list[Callable[[], None]] = [read_head, read_meta]
        jobs += [functools.partial(read_part, n) for n in range(len(ranges))]
        try:
            with ThreadPoolExecutor(max_workers=self._threads) as pool:
                for future in [pool.submit(job) for job in jobs]:
                    future.result()
        finally:
            target.release()
        if np.dtype(np.float32) != VECTOR_DTYPE:  # big-endian host
            buffer[: header.count].byteswap(inplace=True)
        ids, keys, content_types, revisions = _parse_meta(meta[0], header.count)
        return Snapshot(header, ids, keys, content_types, revisions, buffer)

    def _range_into(self, header: SnapshotHeader, start: int, target: memoryview) -> None:
        """Ranged GET of ``len(target)`` bytes at ``start`` straight into ``target``
        (no intermediate bytes object: parts are 8 MB of fresh memory each)."""
        body = self._get_range(header, start, len(target))
        filled = 0
        while filled < len(target):
            read = body.readinto(target[filled:])
            if not read:
                raise SnapshotError("corrupt", "snapshot object is shorter than its header says")
            filled += read
        if body.read(1):
            raise SnapshotError("corrupt", "snapshot object is longer than its header says")

    def _get_range(self, header: SnapshotHeader, start: int, length: int) -> Any:
        try:
            response = self.client.get_object(
                Bucket=self._bucket,
                Key=header.object_key,
                Range=f"bytes={start}-{start + length - 1}",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise SnapshotError("missing", "snapshot object is gone") from None
            raise
        return response["Body"]

    def _range(self, header: SnapshotHeader, start: int, length: int) -> bytes:
        blob: bytes = self._get_range(header, start, length).read()
        if len(blob) != length:
            raise SnapshotError("corrupt", "snapshot object is shorter than its header says")
        return blob

    # -- writing ----------------------------------------------------------------

    def write(
        self,
        *,
        model_id: str,
        dimension: int,
        watermark_ms: int,
        ids: Sequence[str],
        keys: Sequence[str],
        content_types: Sequence[str | None],
        revisions: Sequence[str | None],
        matrix: npt.NDArray[np.float32],
        reconciled_ms: int | None = None,
    ) -> SnapshotHeader:
        """Upload a new snapshot object, then point to it (unless a snapshot with a
        newer watermark is current), then delete the snapshot retired last time.
        ``reconciled_ms``: this snapshot was built from a full read of the catalog then
        (None: it builds on the previous one, whose reconciliation time it keeps)."""
        created_ms = int(self._clock() * 1000)
        object_key = f"{self._prefix}snapshots/{created_ms:013d}-{uuid.uuid4().hex}.snap"
        header, chunks = encode_snapshot(
            object_key=object_key,
            created_ms=created_ms,
            model_id=model_id,
            dimension=dimension,
            watermark_ms=watermark_ms,
            ids=ids,
            keys=keys,
            content_types=content_types,
            revisions=revisions,
            matrix=matrix,
            part_bytes=self._part_bytes,
        )
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=_UPLOAD_PART_BYTES,
            multipart_chunksize=_UPLOAD_PART_BYTES,
            max_concurrency=_UPLOAD_THREADS,
        )
        # s3transfer's own setting (boto3's constructor does not take it): the memory
        # the upload adds to the function's, next to the index being written.
        config.max_in_memory_upload_chunks = _UPLOAD_PARTS_IN_MEMORY
        self.client.upload_fileobj(
            io.BufferedReader(_Chunks(chunks), buffer_size=1024 * 1024),
            self._bucket,
            object_key,
            Config=config,
        )
        self._point_to(header, reconciled_ms)
        return header

    def _point_to(self, header: SnapshotHeader, reconciled_ms: int | None) -> None:
        try:
            previous = self._pointer()
        except SnapshotError:
            previous = None  # a corrupt pointer is simply replaced
        if previous is not None:
            current = previous["header"]
            if isinstance(current, dict) and _newer(current, header):
                # Another writer got further: keep its snapshot, drop ours.
                logger.info("a newer snapshot is current; dropping this one")
                self.client.delete_object(Bucket=self._bucket, Key=header.object_key)
                return
        retired = [] if previous is None else list(previous.get("retired") or [])
        replaced = None if previous is None else previous["header"].get("object_key")
        if reconciled_ms is None:
            reconciled_ms = 0 if previous is None else _reconciled_ms(previous)
        self.client.put_object(
            Bucket=self._bucket,
            Key=self.pointer_key,
            Body=pointer_body(
                header, [replaced] if isinstance(replaced, str) else [], reconciled_ms
            ),
            ContentType="application/json",
        )
        for key in retired:
            if isinstance(key, str) and key.startswith(self._prefix) and key != header.object_key:
                self.client.delete_object(Bucket=self._bucket, Key=key)


def encode_snapshot(
    *,
    object_key: str,
    created_ms: int,
    model_id: str,
    dimension: int,
    watermark_ms: int,
    ids: Sequence[str],
    keys: Sequence[str],
    content_types: Sequence[str | None],
    revisions: Sequence[str | None],
    matrix: npt.NDArray[np.float32],
    part_bytes: int = PART_BYTES,
) -> tuple[SnapshotHeader, list[memoryview]]:
    """The header and the object's bytes (header block, vectors, metadata) as buffers,
    without joining them (the vectors are hundreds of MB)."""
    count = len(ids)
    if not len(keys) == len(content_types) == len(revisions) == matrix.shape[0] == count:
        raise ValueError("ids, keys, content types, revisions and rows differ in number")
    if matrix.shape[1:] != (dimension,):
        raise ValueError("matrix rows are not of the snapshot's dimension")
    vectors = np.ascontiguousarray(matrix, dtype=VECTOR_DTYPE)
    vector_view = vectors.reshape(-1).view(np.uint8).data
    crcs = tuple(
        zlib.crc32(vector_view[start : start + part_bytes])
        for start in range(0, len(vector_view), part_bytes)
    )
    meta = _compressed_meta(ids, keys, content_types, revisions)
    header = SnapshotHeader(
        object_key=object_key,
        model_id=model_id,
        dimension=dimension,
        count=count,
        watermark_ms=watermark_ms,
        created_ms=created_ms,
        vectors_offset=HEADER_BYTES,
        part_bytes=part_bytes,
        part_crc32=crcs,
        meta_offset=HEADER_BYTES + len(vector_view),
        meta_bytes=len(meta),
        meta_crc32=zlib.crc32(meta),
    )
    return header, [memoryview(_header_block(header)), vector_view, memoryview(meta)]


def _compressed_meta(
    ids: Sequence[str],
    keys: Sequence[str],
    content_types: Sequence[str | None],
    revisions: Sequence[str | None],
) -> bytes:
    """The metadata block: zlib of the JSON object ``{"ids": [...], "keys": [...],
    "content_types": [...], "revisions": [...]}``, encoded and compressed
    ``_META_BATCH`` entries at a time: the whole JSON text (tens of MB at 250k rows, in
    the maintenance function next to the matrix) never exists at once."""
    compressor = zlib.compressobj(level=1)
    out: list[bytes] = []
    fields: tuple[tuple[str, Sequence[str | None]], ...] = (
        ("ids", ids),
        ("keys", keys),
        ("content_types", content_types),
        ("revisions", revisions),
    )
    for position, (name, values) in enumerate(fields):
        out.append(compressor.compress(f'{"{" if position == 0 else ","}"{name}":['.encode()))
        for start in range(0, len(values), _META_BATCH):
            batch = json.dumps(
                list(values[start : start + _META_BATCH]),
                separators=(",", ":"),
                ensure_ascii=False,
            )
            text = batch[1:-1] if start == 0 else "," + batch[1:-1]
            out.append(compressor.compress(text.encode("utf-8")))
        out.append(compressor.compress(b"]"))
    out.append(compressor.compress(b"}"))
    out.append(compressor.flush())
    return b"".join(out)


def pointer_body(
    header: SnapshotHeader, retired: Sequence[str] = (), reconciled_ms: int = 0
) -> bytes:
    """The pointer object's bytes for ``header``."""
    return json.dumps(
        {"header": header.to_json(), "retired": list(retired), "reconciled_ms": reconciled_ms}
    ).encode("utf-8")


def _reconciled_ms(pointer: dict[str, Any]) -> int:
    value = pointer.get("reconciled_ms")  # absent in pointers written before entry 41
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _newer(current: dict[str, Any], header: SnapshotHeader) -> bool:
    """Whether the pointed-to snapshot is newer than ``header`` (same model only:
    after a model change the new model's snapshot always wins)."""
    return (
        current.get("model_id") == header.model_id
        and current.get("dimension") == header.dimension
        and isinstance(current.get("watermark_ms"), int)
        and current["watermark_ms"] > header.watermark_ms
    )


def _header_block(header: SnapshotHeader) -> bytes:
    text = json.dumps(header.to_json(), sort_keys=True, separators=(",", ":")).encode("utf-8")
    block = MAGIC + len(text).to_bytes(4, "little") + text
    if len(block) > HEADER_BYTES:
        raise ValueError("snapshot header does not fit its block")
    return block + b"\0" * (HEADER_BYTES - len(block))


def _parse_meta(
    blob: bytes, count: int
) -> tuple[list[str], list[str], list[str | None], list[str | None]]:
    try:
        meta = json.loads(zlib.decompress(blob))
        ids, keys = meta["ids"], meta["keys"]
        content_types, revisions = meta["content_types"], meta["revisions"]
    except (zlib.error, ValueError, KeyError, TypeError):
        raise SnapshotError("corrupt", "snapshot metadata is unreadable") from None
    fields = (ids, keys, content_types, revisions)
    if not all(isinstance(v, list) and len(v) == count for v in fields):
        raise SnapshotError("corrupt", "snapshot metadata does not match its row count")
    return ids, keys, content_types, revisions
