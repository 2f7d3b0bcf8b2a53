"""The subcommands. Each takes the parsed arguments, a Context and an output stream,
and returns the exit code; failures raise CliError."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from imagesearch import resources as r
from imagesearch.cli.errors import ApiError, CliError, UsageError
from imagesearch.cli.http import send
from imagesearch.cli.output import (
    dead_letters_text,
    human_size,
    record_text,
    results_lines,
    results_table,
    status_text,
    upload_table,
)
from imagesearch.cli.target import Backend, Context

# What the ingest path accepts (SPEC section 5), by file extension.
IMAGE_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".jpe": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".heic": "image/heic",
    ".heif": "image/heif",
}
SQS_BATCH = 10  # send_message_batch maximum
SEND_ATTEMPTS = 3
LATEST_REJECTIONS = 5
OUTPUT_FORMATS = ("text", "table", "json")
# `--not TEXT`: half the weight of the query, enough to steer away without turning
# the query into its opposite (weights are on unit vectors, renormalised).
NOT_WEIGHT = 0.5
MAX_QUERY_PARTS = 10  # the API's limit (api_models.MAX_QUERY_PARTS)
UPLOAD_JOBS = 8
MAX_UPLOAD_JOBS = 32
# As the web page: a query image over 3.5 MB is scaled to 1024 px on its long side
# (JPEG, quality 90) before sending; base64 grows it by a third, and the API takes
# at most 5 MB of body.
MAX_RAW_IMAGE_BYTES = int(3.5 * 1024 * 1024)
QUERY_IMAGE_LONG_SIDE = 1024
DEAD_LETTERS_SHOWN = 10
LIST_PAGE = 100  # GET /images' largest page
_RECEIVE_ROUNDS = 3
# API errors that concern one file only: the upload goes on with the next one.
_PER_FILE_STATUSES = frozenset({400, 413, 415, 422})


def terminal_width() -> int:
    return shutil.get_terminal_size((120, 24)).columns


def _progress(**kwargs: Any) -> Any:
    from tqdm import tqdm

    # disable=None: a bar in a terminal, silence when stderr is a pipe or a file.
    return tqdm(disable=None, leave=False, dynamic_ncols=True, **kwargs)


def image_path(value: str) -> str:
    return quote(value, safe="")


def output_format(args: Any, default: str = "text") -> str:
    """``--output`` if given, else ``--json``, else the command's readable default."""
    chosen = getattr(args, "output", None)
    if chosen:
        return str(chosen)
    return "json" if getattr(args, "json", False) else default


def emit(
    out: TextIO,
    fmt: str,
    data: Any,
    text: Callable[[], str],
    table: Callable[[], str] | None = None,
) -> None:
    if fmt == "json":
        out.write(json.dumps(data, indent=2) + "\n")
    elif fmt == "table" and table is not None:
        out.write(table() + "\n")
    else:
        out.write(text() + "\n")


# --- search, get, delete ---------------------------------------------------------


def build_search_body(
    text: str | None,
    *,
    image: Path | None = None,
    image_id: str | None = None,
    top_k: int = 10,
    min_score: float | None = None,
    prefix: str | None = None,
    weighted: Iterable[tuple[str, float]] = (),
    image_bytes: bytes | None = None,
) -> dict[str, Any]:
    """The POST /search body. text + image is one joint query; an image id with
    anything else, or any weighted term (``--also``, ``--not``), makes a weighted
    multi-part query (the API does not mix image_id with direct inputs)."""
    if text is not None and not text.strip():
        raise UsageError("search TEXT must not be blank")
    terms = list(weighted)
    given = (text, image, image_id, image_bytes)
    if all(value is None for value in given) and not any(weight > 0 for _, weight in terms):
        raise UsageError("search needs TEXT, --image PATH or --image-id ID")
    if image_bytes is None and image is not None:
        image_bytes = read_file(image)
    encoded = base64.b64encode(image_bytes).decode("ascii") if image_bytes is not None else None
    body: dict[str, Any] = {"top_k": top_k}
    if terms or (image_id is not None and (text is not None or encoded is not None)):
        parts: list[dict[str, Any]] = []
        if text is not None:
            parts.append({"text": text, "weight": 1.0})
        if encoded is not None:
            parts.append({"image": encoded, "weight": 1.0})
        if image_id is not None:
            parts.append({"image_id": image_id, "weight": 1.0})
        parts.extend({"text": term, "weight": weight} for term, weight in terms)
        if len(parts) > MAX_QUERY_PARTS:
            raise UsageError(f"a search takes at most {MAX_QUERY_PARTS} parts, not {len(parts)}")
        body["queries"] = parts
    else:
        for name, value in (("text", text), ("image", encoded), ("image_id", image_id)):
            if value is not None:
                body[name] = value
    if min_score is not None:
        body["min_score"] = min_score
    if prefix:
        body["prefix"] = prefix
    return body


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as error:
        raise CliError(f"no such file: {path}") from error
    except IsADirectoryError as error:
        raise CliError(f"{path} is a directory, not an image file") from error
    except OSError as error:
        raise CliError(f"cannot read {path}: {error.strerror or error}") from error


def query_image(path: Path, err: TextIO | None = None) -> bytes:
    """The query image's bytes, scaled down like the web page does when over
    MAX_RAW_IMAGE_BYTES (the model sees at most 2048 px anyway)."""
    data = read_file(path)
    if len(data) <= MAX_RAW_IMAGE_BYTES:
        return data
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
    except ImportError as error:
        raise CliError(
            f"{path} is {human_size(len(data))}, over the {human_size(MAX_RAW_IMAGE_BYTES)} a"
            " query image may have, and shrinking it needs Pillow (pip install pillow);"
            " or upload it and search with --image-id"
        ) from error
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except ImportError:
        pass  # HEIC query images need pillow-heif; everything else works without it
    try:
        with Image.open(io.BytesIO(data)) as opened:
            picture = ImageOps.exif_transpose(opened).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise CliError(f"cannot read {path} as an image to shrink it: {error}") from error
    picture.thumbnail((QUERY_IMAGE_LONG_SIDE, QUERY_IMAGE_LONG_SIDE))
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=90)
    if err is not None:
        err.write(
            f"shrank {path.name} ({human_size(len(data))}) to {picture.width}x{picture.height}"
            f" ({human_size(buffer.tell())}) for the query\n"
        )
    return buffer.getvalue()


def cmd_search(args: Any, ctx: Context, out: TextIO, err: TextIO | None = None) -> int:
    image = Path(args.image) if args.image else None
    body = build_search_body(
        args.text,
        image_bytes=query_image(image, err) if image is not None else None,
        image_id=args.image_id,
        top_k=args.top_k,
        min_score=args.min_score,
        prefix=args.prefix,
        weighted=[*getattr(args, "also", []), *getattr(args, "negative", [])],
    )
    response = ctx.api().post("/search", body)
    emit(
        out,
        output_format(args, "table"),
        response,
        text=lambda: results_lines(response),
        table=lambda: results_table(response, width=terminal_width()),
    )
    return 0


def cmd_get(args: Any, ctx: Context, out: TextIO) -> int:
    record = ctx.api().get(f"/images/{image_path(args.image_id)}")
    emit(out, output_format(args), record, text=lambda: record_text(record))
    return 0


def cmd_delete(args: Any, ctx: Context, out: TextIO) -> int:
    response = ctx.api().delete(f"/images/{image_path(args.image_id)}") or {}
    key = response.get("key", "?")
    emit(
        out,
        output_format(args),
        response,
        text=lambda: f"deleted {key} ({args.image_id}): no longer searchable",
    )
    return 0


# --- upload -----------------------------------------------------------------------


@dataclass
class UploadPlan:
    files: list[tuple[Path, str]] = field(default_factory=list)  # (path, name below prefix)
    skipped: list[Path] = field(default_factory=list)


def normalise_prefix(prefix: str | None) -> str:
    value = (prefix or "").strip().replace("\\", "/").strip("/")
    if ".." in value.split("/"):
        raise UsageError("--prefix must not contain '..'")
    return f"{value}/" if value else ""


def plan_upload(paths: Iterable[str], prefix: str = "") -> UploadPlan:
    """Files to upload with their names below the upload prefix: a file keeps its name,
    a directory contributes its image files by path relative to it (hidden ones left out)."""
    plan = UploadPlan()
    seen: set[str] = set()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise CliError(f"no such file or directory: {raw}")
        candidates: Iterator[tuple[Path, str]]
        if path.is_dir():
            candidates = (
                (child, child.relative_to(path).as_posix())
                for child in sorted(path.rglob("*"))
                if child.is_file() and not _hidden(child.relative_to(path))
            )
        else:
            candidates = iter([(path, path.name)])
        for file, relative in candidates:
            if file.suffix.lower() not in IMAGE_TYPES:
                plan.skipped.append(file)
                continue
            name = prefix + relative
            if name not in seen:
                seen.add(name)
                plan.files.append((file, name))
    return plan


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


class FileFailed(Exception):
    """One file could not be uploaded; the others go on."""


def upload_one(ctx: Context, path: Path, name: str) -> str:
    """POST /uploads for a presigned PUT, then PUT the bytes with the returned headers."""
    size = path.stat().st_size
    if size == 0:
        raise FileFailed("empty file")
    content_type = IMAGE_TYPES[path.suffix.lower()]
    # A sync of a directory: a changed file replaces its earlier upload (decision 43).
    grant = ctx.api().post(
        "/uploads",
        {"filename": name, "content_type": content_type, "size": size, "overwrite": True},
    )
    with path.open("rb") as body:
        response = send(
            ctx.http,
            "PUT",
            grant["url"],
            data=body,
            headers=dict(grant.get("headers") or {}),
            timeout=(5.0, 300.0),
        )
    if response.status_code >= 300:
        detail = (response.text or response.reason or "").strip().replace("\n", " ")[:200]
        raise FileFailed(f"PUT to storage failed ({response.status_code}): {detail}")
    return str(grant["key"])


@dataclass
class UploadReport:
    uploaded: list[tuple[Path, str, int]] = field(default_factory=list)  # path, key, size
    unchanged: list[tuple[Path, str]] = field(default_factory=list)  # path, key
    failed: list[tuple[Path, str]] = field(default_factory=list)  # path, reason

    def as_json(self, plan: UploadPlan, *, dryrun: bool) -> dict[str, Any]:
        return {
            "dryrun": dryrun,
            "uploaded": [
                {"path": str(path), "key": key, "size": size} for path, key, size in self.uploaded
            ],
            "unchanged": [{"path": str(path), "key": key} for path, key in self.unchanged],
            "skipped": [{"path": str(path), "reason": "not an image"} for path in plan.skipped],
            "failed": [{"path": str(path), "reason": reason} for path, reason in self.failed],
        }


def upload_prefix(ctx: Context) -> str:
    """The bucket's upload prefix: local mode and stacks say; a bare --url gets the default."""
    if ctx.is_local or ctx.url is None:
        return ctx.backend().upload_prefix
    return str(r.CONTEXT_DEFAULTS["uploadPrefix"])


def remote_objects(ctx: Context, prefix: str) -> dict[str, tuple[int | None, str]]:
    """key -> (size, ETag) of the images the catalog holds below ``prefix`` (a folder
    below the upload prefix, "" for all), read through GET /images page by page."""
    found: dict[str, tuple[int | None, str]] = {}
    cursor: str | None = None
    while True:
        page = ctx.api().get(
            "/images", {"prefix": prefix or None, "limit": LIST_PAGE, "cursor": cursor}
        )
        if not isinstance(page, dict):
            return found
        for item in page.get("items") or []:
            if isinstance(item, dict) and item.get("key"):
                found[str(item["key"])] = (item.get("size"), str(item.get("etag") or "").strip('"'))
        cursor = page.get("cursor")
        if not cursor:
            return found


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_unchanged(path: Path, remote: tuple[int | None, str] | None) -> bool:
    """Like ``aws s3 sync``: same size, and the single-part ETag is the file's MD5."""
    if remote is None:
        return False
    size, etag = remote
    try:
        return size == path.stat().st_size and bool(etag) and etag == file_md5(path)
    except OSError:
        return False


def cmd_upload(args: Any, ctx: Context, out: TextIO, err: TextIO) -> int:
    prefix = normalise_prefix(args.prefix)
    plan = plan_upload(args.paths, prefix)
    if not plan.files:
        raise CliError(
            "no image files to upload (extensions: "
            + ", ".join(sorted({e.lstrip(".") for e in IMAGE_TYPES}))
            + ")"
        )
    dryrun = bool(getattr(args, "dryrun", False))
    fmt = output_format(args)
    remote = remote_objects(ctx, prefix)
    base = upload_prefix(ctx) if remote else ""
    report = UploadReport()
    todo: list[tuple[Path, str]] = []
    for path, name in plan.files:
        if is_unchanged(path, remote.get(base + name)):
            report.unchanged.append((path, base + name))
        else:
            todo.append((path, name))
    if dryrun:
        base = base or upload_prefix(ctx)
        for path, name in todo:
            report.uploaded.append((path, base + name, _size(path)))
    else:
        _upload_all(ctx, todo, report, jobs=getattr(args, "jobs", UPLOAD_JOBS), err=err)
    report.uploaded.sort(key=lambda item: item[1])
    report.failed.sort(key=lambda item: str(item[0]))
    for path, reason in report.failed:
        err.write(f"failed: {path}: {reason}\n")
    emit(
        out,
        fmt,
        report.as_json(plan, dryrun=dryrun),
        text=lambda: _upload_summary(report, plan, dryrun=dryrun),
        table=lambda: upload_table(report.as_json(plan, dryrun=dryrun)),
    )
    return 1 if report.failed else 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _upload_all(
    ctx: Context, todo: list[tuple[Path, str]], report: UploadReport, *, jobs: int, err: TextIO
) -> None:
    """Upload ``todo`` on ``jobs`` threads. A per-file failure is recorded and the rest go
    on; auth, throttling and server errors concern every file: the first one stops all."""
    if not todo:
        return
    stop = threading.Event()
    lock = threading.Lock()

    def one(path: Path, name: str) -> None:
        if stop.is_set():
            return
        try:
            key = upload_one(ctx, path, name)
            size = path.stat().st_size
        except ApiError as error:
            if error.status not in _PER_FILE_STATUSES:
                stop.set()
                raise
            with lock:
                report.failed.append((path, str(error)))
        except (FileFailed, OSError) as error:
            with lock:
                report.failed.append((path, str(error)))
        else:
            with lock:
                report.uploaded.append((path, key, size))

    with (
        _progress(total=len(todo), unit="file", desc="uploading", file=err) as bar,
        ThreadPoolExecutor(max_workers=min(jobs, len(todo)), thread_name_prefix="upload") as pool,
    ):
        futures: list[Future[None]] = [pool.submit(one, path, name) for path, name in todo]
        for future in futures:
            future.add_done_callback(lambda _: bar.update(1))
        wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            future.cancel()
    for future in futures:
        if future.done() and not future.cancelled() and future.exception() is not None:
            raise future.exception()  # type: ignore[misc]


def _upload_summary(report: UploadReport, plan: UploadPlan, *, dryrun: bool) -> str:
    count = len(report.uploaded)
    total_bytes = sum(size for _, _, size in report.uploaded)
    lines = (
        [f"(dryrun) upload: {path} to {key}" for path, key, _ in report.uploaded] if dryrun else []
    )
    verb = "(dryrun) would upload" if dryrun else "uploaded"
    summary = f"{verb} {count} file{'s' if count != 1 else ''} ({human_size(total_bytes)})"
    if report.uploaded:
        summary += f" to {_common([key for _, key, _ in report.uploaded])}"
    if report.unchanged:
        summary += f"; {len(report.unchanged)} unchanged"
    if plan.skipped:
        summary += f"; skipped {len(plan.skipped)} (not an image)"
    if report.failed:
        summary += f"; {len(report.failed)} failed"
    return "\n".join([*lines, summary])


def _common(keys: list[str]) -> str:
    parts = [k.split("/")[:-1] for k in keys]
    common: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return "/".join(common) + "/" if common else "/"


# --- backfill -----------------------------------------------------------------------


def backfill_keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents") or []:
            if not item["Key"].endswith("/"):  # folder placeholders are not images
                yield item["Key"]


def batched(keys: Iterable[str], size: int = SQS_BATCH) -> Iterator[list[str]]:
    batch: list[str] = []
    for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def send_backfill_batch(
    sqs: Any, backend: Backend, keys: list[str], *, force: bool
) -> list[tuple[str, str]]:
    """Enqueue one batch (<= 10); retries entries SQS failed on its side. Returns the
    (key, reason) pairs that could not be enqueued."""
    from imagesearch.events import make_backfill_message

    pending = {
        str(i): {
            "Id": str(i),
            "MessageBody": make_backfill_message(
                backend.bucket, key, force=force, region=backend.region
            ),
        }
        for i, key in enumerate(keys)
    }
    failures: dict[str, str] = {}
    for _ in range(SEND_ATTEMPTS):
        if not pending:
            break
        response = sqs.send_message_batch(
            QueueUrl=backend.queue_url, Entries=list(pending.values())
        )
        retry: dict[str, dict[str, str]] = {}
        for failure in response.get("Failed") or []:
            entry_id = failure["Id"]
            failures[entry_id] = f"{failure.get('Code')}: {failure.get('Message', '')}".strip()
            if not failure.get("SenderFault"):
                retry[entry_id] = pending[entry_id]
        for success in response.get("Successful") or []:
            failures.pop(success["Id"], None)
        pending = retry
    return [(keys[int(entry_id)], reason) for entry_id, reason in sorted(failures.items())]


def cmd_backfill(args: Any, ctx: Context, out: TextIO, err: TextIO) -> int:
    backend = ctx.backend()
    s3, sqs = ctx.client("s3"), ctx.client("sqs")
    where = f"s3://{backend.bucket}/{backend.upload_prefix}"
    sent = 0
    failed: list[tuple[str, str]] = []
    with _progress(unit="obj", desc="enqueueing", file=err) as bar:
        for batch in batched(backfill_keys(s3, backend.bucket, backend.upload_prefix)):
            failures = send_backfill_batch(sqs, backend, batch, force=args.force)
            failed.extend(failures)
            sent += len(batch) - len(failures)
            bar.update(len(batch))
    for key, reason in failed[:10]:
        err.write(f"failed: {key}: {reason}\n")
    if sent == 0 and not failed:
        out.write(f"no objects under {where}: nothing to backfill\n")
        return 0
    mode = (
        " (--force: records of another model or dimension are re-embedded, and images the"
        " model refused are asked again)"
        if args.force
        else ""
    )
    out.write(f"enqueued {sent} object{'s' if sent != 1 else ''} under {where}{mode}\n")
    if failed:
        raise CliError(f"{len(failed)} object(s) could not be enqueued")
    return 0


# --- status -------------------------------------------------------------------------


def queue_depth(sqs: Any, queue_url: str) -> dict[str, int]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    ).get("Attributes", {})
    return {
        "waiting": int(attributes.get("ApproximateNumberOfMessages", 0)),
        "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
    }


def status_report(ctx: Context) -> dict[str, Any]:
    from imagesearch.catalog.dynamodb import DynamoDBCatalog

    backend = ctx.backend()
    catalog = DynamoDBCatalog(backend.table, client=ctx.client("dynamodb"))
    sqs = ctx.client("sqs")
    report: dict[str, Any] = {
        "target": ctx.url if ctx.is_local else f"stack {ctx.stack_name} ({backend.region})",
        "model_id": backend.model_id,
        "dimension": backend.dimension,
        "model": backend.model_state,
        "images": catalog.counts(),
        "queues": {
            "ingest": queue_depth(sqs, backend.queue_url),
            "dead_letter": queue_depth(sqs, backend.dlq_url),
        },
        "latest_rejections": [
            {
                "image_id": record.image_id,
                "key": record.key,
                "reason": record.reason or "",
                "indexed_at": record.indexed_at or "",
            }
            for record in catalog.recent(r.STATUS_REJECTED, LATEST_REJECTIONS)
        ],
        # The model could not embed these (yet): the cause, while retries run.
        "latest_failures": [
            {
                "image_id": record.image_id,
                "key": record.key,
                "reason": record.reason or "",
                "indexed_at": record.indexed_at or "",
            }
            for record in catalog.recent(r.STATUS_FAILED, LATEST_REJECTIONS)
        ],
        "other_model": None,
    }
    hints: list[str] = []
    report["switch"], switch_hints = switch_status(catalog, report["images"]["indexed"])
    switching = bool(report["switch"]) and report["switch"]["phase"] == "switching"
    if backend.model_id and backend.dimension:
        other = catalog.count_other_model(backend.model_id, backend.dimension)
        report["other_model"] = other
        if other and not switching:  # during a switch the re-embeds are under way
            hints.append(
                f"{other} indexed record{'s were' if other != 1 else ' was'} embedded with"
                f" another model or dimension than {backend.model_id} ({backend.dimension}):"
                " run `imagesearch backfill --force` to re-embed"
                f" {'them' if other != 1 else 'it'}"
            )
    capacity = backend.embedded_max_images
    indexed = report["images"].get(r.STATUS_INDEXED, 0)
    report["embedded_capacity"] = capacity
    if capacity and indexed >= r.EMBEDDED_CAPACITY_WARNING * capacity:
        hints.append(
            f"{indexed} indexed images reach {indexed / capacity:.0%} of the embedded index's"
            f" capacity ({capacity}, embeddedMaxImages): raise embeddedMaxImages or deploy"
            " with -c vectorStore=s3vectors"
        )
    dead = report["queues"]["dead_letter"]
    report["dead_letters"] = []
    if dead["waiting"] + dead["in_flight"]:
        report["dead_letters"] = describe_dead_letters(ctx, peek_dead_letters(sqs, backend.dlq_url))
        hints.append(
            "messages in the dead-letter queue failed ingest repeatedly: fix the cause,"
            " then run `imagesearch redrive` to send them back to the ingest queue"
        )
    from imagesearch.cli.vectors import vector_status

    report["vector_index"], vector_hints = vector_status(ctx, report["images"]["indexed"])
    hints.extend(vector_hints)
    hints.extend(switch_hints)
    report["hints"] = hints
    return report


def switch_status(catalog: Any, indexed: int) -> tuple[dict[str, Any] | None, list[str]]:
    """The model switch's progress, read from the catalog: the state item, and during a
    switch the records holding the new model's vector now (the state's figures are
    from the last maintenance run)."""
    from imagesearch.switch import max_given_up, state_fields

    state = catalog.model_state()
    if state is None:
        return None, []
    report = state_fields(state)
    hints: list[str] = []
    if state.phase == "switching" and state.target is not None:
        report["covered"] = catalog.count_model(state.target.model_id, state.target.dimension)
        report["total"] = indexed
        report["given_up"] = catalog.count_given_up(state.target)
        hints.append(
            f"switching models: search answers from {state.serving} until every indexed"
            f" image has a vector of {state.target}; re-embeds run through the ingest queue"
        )
        if report["given_up"]:
            hints.append(
                f"{report['given_up']} images {state.target} could not embed stay searchable"
                f" under {state.serving} until the flip, then end failed or rejected; their"
                " reasons: GET /images?status=indexed"
                + (
                    " (halted: too many to be the images' own fault; fix the cause and run"
                    " `imagesearch backfill --force`)"
                    if report["given_up"] > max_given_up(indexed)
                    else ""
                )
            )
    elif state.phase == "removing" and state.healing:
        hints.append(
            f"a model switch was abandoned (deployed without previousModelId before it"
            f" finished): maintenance re-embeds every image lacking a {state.serving}"
            " vector; until then those images are not found"
        )
    elif state.phase == "removing":
        hints.append(
            f"switched to {state.serving}: the vectors of {state.previous} are removed by"
            " the next maintenance runs; then deploy without previousModelId"
        )
    return report, hints


def cmd_status(args: Any, ctx: Context, out: TextIO) -> int:
    report = status_report(ctx)
    emit(out, output_format(args), report, text=lambda: status_text(report))
    return 0


# --- dead letters -----------------------------------------------------------------------


def peek_dead_letters(sqs: Any, dlq_url: str, limit: int = DEAD_LETTERS_SHOWN) -> list[dict]:
    """Up to ``limit`` dead-letter messages, left in the queue (visibility timeout 0)."""
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(_RECEIVE_ROUNDS):
        response = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=min(SQS_BATCH, limit),
            VisibilityTimeout=0,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
        )
        messages = response.get("Messages") or []
        fresh = [m for m in messages if m["MessageId"] not in seen]
        for message in fresh:
            seen[message["MessageId"]] = message
        if not fresh or len(seen) >= limit:
            break
    return list(seen.values())[:limit]


def message_keys(body: str) -> list[str]:
    from imagesearch.events import MalformedEvent, parse_message_body

    try:
        return list(dict.fromkeys(event.key for event in parse_message_body(body)))
    except MalformedEvent:
        return []


def dead_letter_cause(ctx: Context, key: str) -> str:
    """Why a message is dead: the catalog's last recorded cause for its key."""
    from imagesearch.records import image_id_for_key

    try:
        record = ctx.api().get(f"/images/{image_path(image_id_for_key(key))}") or {}
    except ApiError as error:
        if error.status == 404:
            return "no record (the object may be gone): see the ingest logs"
        raise
    status = record.get("status")
    if status == r.STATUS_INDEXED:
        return "indexed since (a later attempt succeeded): safe to redrive or purge"
    reason = record.get("reason")
    return f"{status}: {reason}" if reason else f"{status or 'unknown'} (no cause recorded)"


def describe_dead_letters(ctx: Context, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    described = []
    for message in messages:
        keys = message_keys(message.get("Body", ""))
        attributes = message.get("Attributes") or {}
        described.append(
            {
                "message_id": message["MessageId"],
                "keys": keys,
                "sent_at": _epoch_ms_iso(attributes.get("SentTimestamp")),
                "cause": (
                    "; ".join(dead_letter_cause(ctx, key) for key in keys)
                    if keys
                    else "not an S3 event this ingest can read"
                ),
            }
        )
    return described


def _epoch_ms_iso(value: str | None) -> str | None:
    from datetime import UTC, datetime

    if not value or not value.isdigit():
        return None
    return datetime.fromtimestamp(int(value) / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cmd_redrive(args: Any, ctx: Context, out: TextIO, err: TextIO) -> int:
    """Move the dead-letter queue's messages back to the ingest queue (receive, send,
    delete: works on moto and any SQS, needs no message-move task permissions)."""
    backend = ctx.backend()
    sqs = ctx.client("sqs")
    fmt = output_format(args)
    if getattr(args, "dryrun", False):
        letters = describe_dead_letters(
            ctx, peek_dead_letters(sqs, backend.dlq_url, limit=10 * DEAD_LETTERS_SHOWN)
        )
        emit(
            out,
            fmt,
            {"dryrun": True, "messages": letters},
            text=lambda: dead_letters_text(letters, header="(dryrun) would send back:"),
        )
        return 0
    moved: list[dict[str, Any]] = []
    failed: list[tuple[str, str]] = []
    with _progress(unit="msg", desc="redriving", file=err) as bar:
        while True:
            messages = (
                sqs.receive_message(
                    QueueUrl=backend.dlq_url,
                    MaxNumberOfMessages=SQS_BATCH,
                    VisibilityTimeout=60,
                    WaitTimeSeconds=0,
                    MessageAttributeNames=["All"],
                ).get("Messages")
                or []
            )
            if not messages:
                break
            by_id = {str(i): m for i, m in enumerate(messages)}
            entries = []
            for entry_id, message in by_id.items():
                entry: dict[str, Any] = {"Id": entry_id, "MessageBody": message["Body"]}
                if message.get("MessageAttributes"):
                    entry["MessageAttributes"] = message["MessageAttributes"]
                entries.append(entry)
            result = sqs.send_message_batch(QueueUrl=backend.queue_url, Entries=entries)
            sent = [by_id[s["Id"]] for s in result.get("Successful") or []]
            for failure in result.get("Failed") or []:
                message = by_id[failure["Id"]]
                failed.append((message["MessageId"], str(failure.get("Message") or failure)))
            if sent:
                sqs.delete_message_batch(
                    QueueUrl=backend.dlq_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(sent)
                    ],
                )
            moved.extend(
                {"message_id": m["MessageId"], "keys": message_keys(m["Body"])} for m in sent
            )
            bar.update(len(messages))
            if failed:
                break  # what failed stays in the dead-letter queue; do not spin on it
    for message_id, reason in failed:
        err.write(f"failed: message {message_id}: {reason}\n")

    def text() -> str:
        if not moved and not failed:
            return "the dead-letter queue is empty: nothing to redrive"
        keys = [key for item in moved for key in item["keys"]]
        shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        line = f"sent {len(moved)} message{'s' if len(moved) != 1 else ''} back to the ingest queue"
        return line + (f" ({shown})" if shown else "")

    emit(
        out,
        fmt,
        {
            "redriven": moved,
            "failed": [{"message_id": m, "reason": reason} for m, reason in failed],
        },
        text=text,
    )
    return 1 if failed else 0


# --- local --------------------------------------------------------------------------


def cmd_local(args: Any) -> int:
    if args.embedder == "clip" and importlib.util.find_spec("sentence_transformers") is None:
        raise CliError(
            "--embedder clip needs the optional CLIP extra: pip install -r requirements-clip.txt"
        )
    try:
        # Imported here: moto and the handlers load only for this command.
        from imagesearch.local import run
    except ModuleNotFoundError as error:
        if error.name and not error.name.startswith("imagesearch"):
            raise CliError(
                f"local mode needs {error.name}: install its dependencies with make local"
                " (or pip install -r requirements-local.txt)"
            ) from error
        raise
    return int(
        run(
            port=args.port,
            dropbox=Path(args.dropbox),
            embedder=args.embedder,
            host=args.host,
            state_dir=Path(args.state_dir),
            model_id=args.model_id,
            dimension=args.dimension,
            vector_store=args.vector_store,
        )
    )
