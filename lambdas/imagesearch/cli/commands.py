"""The subcommands. Each takes the parsed arguments, a Context and an output stream,
and returns the exit code; failures raise CliError."""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from imagesearch import resources as r
from imagesearch.cli.errors import ApiError, CliError, UsageError
from imagesearch.cli.http import send
from imagesearch.cli.output import human_size, record_text, results_table, status_text
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


# --- search, get, delete ---------------------------------------------------------


def build_search_body(
    text: str | None,
    *,
    image: Path | None = None,
    image_id: str | None = None,
    top_k: int = 10,
    min_score: float | None = None,
    prefix: str | None = None,
) -> dict[str, Any]:
    """The POST /search body. text + image is one joint query; an image id with
    anything else becomes an equally weighted multi-part query (the API does not mix
    image_id with direct inputs)."""
    if text is not None and not text.strip():
        raise UsageError("search TEXT must not be blank")
    if text is None and image is None and image_id is None:
        raise UsageError("search needs TEXT, --image PATH or --image-id ID")
    encoded = base64.b64encode(read_file(image)).decode("ascii") if image is not None else None
    body: dict[str, Any] = {"top_k": top_k}
    if image_id is not None and (text is not None or encoded is not None):
        parts: list[dict[str, Any]] = []
        if text is not None:
            parts.append({"text": text, "weight": 1.0})
        if encoded is not None:
            parts.append({"image": encoded, "weight": 1.0})
        parts.append({"image_id": image_id, "weight": 1.0})
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


def cmd_search(args: Any, ctx: Context, out: TextIO) -> int:
    body = build_search_body(
        args.text,
        image=Path(args.image) if args.image else None,
        image_id=args.image_id,
        top_k=args.top_k,
        min_score=args.min_score,
        prefix=args.prefix,
    )
    response = ctx.api().post("/search", body)
    if args.json:
        out.write(json.dumps(response, indent=2) + "\n")
    else:
        out.write(results_table(response, width=terminal_width()) + "\n")
    return 0


def cmd_get(args: Any, ctx: Context, out: TextIO) -> int:
    record = ctx.api().get(f"/images/{image_path(args.image_id)}")
    out.write((json.dumps(record, indent=2) if args.json else record_text(record)) + "\n")
    return 0


def cmd_delete(args: Any, ctx: Context, out: TextIO) -> int:
    response = ctx.api().delete(f"/images/{image_path(args.image_id)}") or {}
    key = response.get("key", "?")
    out.write(f"deleting {key} ({args.image_id}): the index follows through the S3 event\n")
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
    grant = ctx.api().post(
        "/uploads", {"filename": name, "content_type": content_type, "size": size}
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


def cmd_upload(args: Any, ctx: Context, out: TextIO, err: TextIO) -> int:
    plan = plan_upload(args.paths, normalise_prefix(args.prefix))
    if not plan.files:
        raise CliError(
            "no image files to upload (extensions: "
            + ", ".join(sorted({e.lstrip(".") for e in IMAGE_TYPES}))
            + ")"
        )
    uploaded: list[str] = []
    failed: list[tuple[Path, str]] = []
    total_bytes = 0
    with _progress(total=len(plan.files), unit="file", desc="uploading", file=err) as bar:
        for path, name in plan.files:
            try:
                uploaded.append(upload_one(ctx, path, name))
                total_bytes += path.stat().st_size
            except ApiError as error:
                # Auth, throttling and server errors concern every file: stop there.
                if error.status not in _PER_FILE_STATUSES:
                    raise
                failed.append((path, str(error)))
            except (FileFailed, OSError) as error:
                failed.append((path, str(error)))
            bar.update(1)
    for path, reason in failed:
        err.write(f"failed: {path}: {reason}\n")
    summary = f"uploaded {len(uploaded)} file{'s' if len(uploaded) != 1 else ''}"
    summary += f" ({human_size(total_bytes)})"
    if uploaded:
        summary += f" to {_common(uploaded)}"
    if plan.skipped:
        summary += f"; skipped {len(plan.skipped)} (not an image)"
    if failed:
        summary += f"; {len(failed)} failed"
    out.write(summary + "\n")
    return 1 if failed else 0


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
    mode = " (--force: records of another model or dimension are re-embedded)" if args.force else ""
    out.write(f"enqueued {sent} object{'s' if sent != 1 else ''} under {where}{mode}\n")
    if failed:
        raise CliError(f"{len(failed)} object(s) could not be enqueued")
    return 0


# --- status -------------------------------------------------------------------------


def _query_count(dynamodb: Any, table: str, status: str, **extra: Any) -> int:
    names = {"#s": r.ATTR_STATUS, **extra.pop("names", {})}
    values = {":s": {"S": status}, **extra.pop("values", {})}
    total = 0
    for page in dynamodb.get_paginator("query").paginate(
        TableName=table,
        IndexName=r.INDEX_BY_STATUS,
        KeyConditionExpression="#s = :s",
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
        Select="COUNT",
        **extra,
    ):
        total += int(page["Count"])
    return total


def count_other_model(dynamodb: Any, table: str, model_id: str, dimension: int) -> int:
    """Indexed records embedded with another model or dimension (``backfill --force``)."""
    return _query_count(
        dynamodb,
        table,
        r.STATUS_INDEXED,
        FilterExpression="#m <> :m OR #d <> :d",
        names={"#m": "model_id", "#d": "dimension"},
        values={":m": {"S": model_id}, ":d": {"N": str(dimension)}},
    )


def latest_rejections(dynamodb: Any, table: str, limit: int = LATEST_REJECTIONS) -> list[dict]:
    items: list[dict[str, str]] = []
    for page in dynamodb.get_paginator("query").paginate(
        TableName=table,
        IndexName=r.INDEX_BY_STATUS,
        KeyConditionExpression="#s = :s",
        ProjectionExpression="#id, #k, #r, #t",
        ExpressionAttributeNames={
            "#s": r.ATTR_STATUS,
            "#id": r.ATTR_IMAGE_ID,
            "#k": r.ATTR_KEY,
            "#r": "reason",
            "#t": "indexed_at",
        },
        ExpressionAttributeValues={":s": {"S": r.STATUS_REJECTED}},
    ):
        for item in page.get("Items") or []:
            items.append({name: value.get("S", "") for name, value in item.items()})
    items.sort(key=lambda item: item.get("indexed_at", ""), reverse=True)
    return items[:limit]


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
    backend = ctx.backend()
    dynamodb, sqs = ctx.client("dynamodb"), ctx.client("sqs")
    report: dict[str, Any] = {
        "target": ctx.url if ctx.is_local else f"stack {ctx.stack_name} ({backend.region})",
        "model_id": backend.model_id,
        "dimension": backend.dimension,
        "images": {
            status: _query_count(dynamodb, backend.table, status)
            for status in (r.STATUS_INDEXED, r.STATUS_REJECTED)
        },
        "queues": {
            "ingest": queue_depth(sqs, backend.queue_url),
            "dead_letter": queue_depth(sqs, backend.dlq_url),
        },
        "latest_rejections": latest_rejections(dynamodb, backend.table),
        "other_model": None,
    }
    hints: list[str] = []
    if backend.model_id and backend.dimension:
        other = count_other_model(dynamodb, backend.table, backend.model_id, backend.dimension)
        report["other_model"] = other
        if other:
            hints.append(
                f"{other} indexed record{'s were' if other != 1 else ' was'} embedded with"
                f" another model or dimension than {backend.model_id} ({backend.dimension}):"
                " run `imagesearch backfill --force` to re-embed"
                f" {'them' if other != 1 else 'it'}"
            )
    dead = report["queues"]["dead_letter"]
    if dead["waiting"] + dead["in_flight"]:
        hints.append(
            "messages in the dead-letter queue failed ingest repeatedly: fix the cause"
            " (see the logs), then redrive them to the ingest queue"
        )
    report["hints"] = hints
    return report


def cmd_status(args: Any, ctx: Context, out: TextIO) -> int:
    report = status_report(ctx)
    if args.json:
        out.write(json.dumps(report, indent=2) + "\n")
    else:
        out.write(status_text(report) + "\n")
    return 0


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
        )
    )
