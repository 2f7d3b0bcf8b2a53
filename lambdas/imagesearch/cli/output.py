"""Readable output: the search results table, image records and the status report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MIN_KEY_WIDTH = 16
_ELLIPSIS = "..."


def shorten_left(text: str, width: int) -> str:
    """Keep the end of a key (the file name is the informative part)."""
    if len(text) <= width:
        return text
    if width <= len(_ELLIPSIS):
        return text[-width:]
    return _ELLIPSIS + text[-(width - len(_ELLIPSIS)) :]


def _dimensions(item: Mapping[str, Any]) -> str:
    width, height = item.get("width"), item.get("height")
    return f"{width}x{height}" if width and height else "-"


def human_size(size: Any) -> str:
    if not isinstance(size, int | float):
        return "-"
    value = float(size)
    if value < 1000:
        return f"{int(value)} B"
    for unit in ("KB", "MB"):
        value /= 1000
        if value < 1000:
            return f"{value:.1f} {unit}"
    return f"{value / 1000:.1f} GB"


def results_table(response: Mapping[str, Any], *, width: int = 120) -> str:
    """Search results as an aligned table with a one-line footer."""
    results: Sequence[Mapping[str, Any]] = response.get("results") or []
    footer = (
        f"{len(results)} result{'s' if len(results) != 1 else ''}"
        f" in {float(response.get('took_ms') or 0):.0f} ms"
        f" ({response.get('model_id', '?')}, {response.get('dimension', '?')} dimensions)"
    )
    if not results:
        return f"no results\n{footer}"
    header = ("#", "SCORE", "IMAGE ID", "SIZE", "TYPE", "KEY")
    rows = [
        (
            str(rank),
            f"{float(item.get('score', 0.0)):.4f}",
            str(item.get("image_id", "")),
            _dimensions(item),
            str(item.get("content_type") or "-"),
            str(item.get("key", "")),
        )
        for rank, item in enumerate(results, start=1)
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    # The key is last and takes what the terminal has left.
    used = sum(widths) + 2 * (len(widths))
    key_width = max(MIN_KEY_WIDTH, width - used)
    lines = []
    for row in [header, *rows]:
        cells = [row[i].rjust(widths[i]) if i < 2 else row[i].ljust(widths[i]) for i in range(5)]
        lines.append("  ".join([*cells, shorten_left(row[5], key_width)]).rstrip())
    return "\n".join([*lines, footer])


def results_lines(response: Mapping[str, Any]) -> str:
    """Search results for scripts: ``score<TAB>image_id<TAB>key`` per line, best first."""
    results: Sequence[Mapping[str, Any]] = response.get("results") or []
    return "\n".join(
        f"{float(item.get('score', 0.0)):.4f}\t{item.get('image_id', '')}\t{item.get('key', '')}"
        for item in results
    )


def upload_table(report: Mapping[str, Any]) -> str:
    """``upload --output table``: one row per file with what happened to it."""
    rows = [("uploaded", item["path"], item["key"]) for item in report.get("uploaded") or []]
    if report.get("dryrun"):
        rows = [("would upload", path, key) for _, path, key in rows]
    rows += [("unchanged", item["path"], item["key"]) for item in report.get("unchanged") or []]
    rows += [("skipped", item["path"], item["reason"]) for item in report.get("skipped") or []]
    rows += [("failed", item["path"], item["reason"]) for item in report.get("failed") or []]
    header = ("RESULT", "FILE", "KEY OR REASON")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(2)]
    return "\n".join(
        f"{row[0]:<{widths[0]}}  {row[1]!s:<{widths[1]}}  {row[2]}".rstrip()
        for row in [header, *rows]
    )


def dead_letters_text(letters: Sequence[Mapping[str, Any]], *, header: str) -> str:
    """Dead-letter messages with the keys they name and the recorded cause."""
    if not letters:
        return "the dead-letter queue is empty"
    lines = [header]
    for letter in letters:
        keys = ", ".join(letter.get("keys") or []) or "(no object key)"
        when = letter.get("sent_at") or "-"
        lines.append(f"  {when}  {keys}  {letter.get('cause') or 'cause unknown'}")
    return "\n".join(lines)


_RECORD_ORDER = (
    "image_id",
    "key",
    "status",
    "reason",
    "content_type",
    "width",
    "height",
    "size",
    "etag",
    "uploaded_at",
    "indexed_at",
    "model_id",
    "dimension",
    "caption",
    "url",
    "thumbnail_url",
)


def record_text(record: Mapping[str, Any]) -> str:
    """An image record as ``field: value`` lines (empty fields left out)."""
    names = [n for n in _RECORD_ORDER if n in record] + sorted(
        n for n in record if n not in _RECORD_ORDER
    )
    present = [n for n in names if record.get(n) not in (None, "")]
    label_width = max((len(n) for n in present), default=0)
    lines = []
    for name in present:
        value = record[name]
        if name == "size":
            large = isinstance(value, int | float) and value >= 1000
            value = f"{value} bytes" + (f" ({human_size(value)})" if large else "")
        lines.append(f"{name.ljust(label_width)}  {value}")
    return "\n".join(lines)


def _space_text(space: Mapping[str, Any] | None) -> str:
    return "?" if not space else f"{space.get('model_id')} ({space.get('dimension')})"


def switch_text(switch: Mapping[str, Any]) -> str:
    """One line of the model switch's progress."""
    phase = switch.get("phase")
    serving = _space_text(switch.get("serving"))
    if phase == "switching":
        covered, total = switch.get("covered"), switch.get("total")
        progress = f"{covered}/{total} re-embedded" if total is not None else "starting"
        if switch.get("given_up"):
            progress += f", {switch['given_up']} given up"
        return f"{serving} -> {_space_text(switch.get('target'))}: {progress}, serving {serving}"
    if phase == "removing":
        lacking = switch.get("lacking")
        sweep = f"; re-embedding {lacking} records that lack its vector" if lacking else ""
        if switch.get("healing"):
            return f"serving {serving}; healing an abandoned switch{sweep}"
        return (
            f"serving {serving} since {switch.get('flipped_at')};"
            f" removing the vectors of {_space_text(switch.get('previous'))}{sweep}"
        )
    if switch.get("previous"):
        return (
            f"complete: serving {serving}, the vectors of"
            f" {_space_text(switch.get('previous'))} removed at {switch.get('finished_at')}"
        )
    return f"serving {serving}"


def model_state_text(model: Mapping[str, Any] | None) -> str:
    """``: ok``, or ``: unusable since ...: cause; fix: ...`` (nothing when not known)."""
    if not model:
        return ""
    if model.get("state") != "unusable":
        return f": {model.get('state') or 'unknown'}"
    since = f" since {model['since']}" if model.get("since") else ""
    fix = f"; fix: {model['fix']}" if model.get("fix") else ""
    return f": unusable{since}: {model.get('cause') or 'no cause given'}{fix}"


def status_text(report: Mapping[str, Any]) -> str:
    """The ``status`` report: counts, queues, model, latest rejections and hints."""
    images = report["images"]
    queues = report["queues"]
    lines = [
        f"target       {report['target']}",
        f"model        {report.get('model_id') or '?'}"
        f" ({report.get('dimension') or '?'} dimensions)" + model_state_text(report.get("model")),
        f"images       {images['indexed']} indexed, {images['rejected']} rejected"
        + (f", {images['failed']} failed" if images.get("failed") else ""),
        f"ingest queue {queues['ingest']['waiting']} waiting,"
        f" {queues['ingest']['in_flight']} in flight",
        f"dead letters {queues['dead_letter']['waiting'] + queues['dead_letter']['in_flight']}",
    ]
    switch = report.get("switch")
    if switch:
        lines.insert(2, "switch       " + switch_text(switch))
    vectors = report.get("vector_index") or {}
    if "vectors" in vectors:
        mode = f" ({vectors['mode']} mode)" if vectors.get("mode") else ""
        lines.insert(
            3,
            f"vector index {vectors['vectors']} vectors in S3 Vectors index"
            f" {vectors['index']}{mode}",
        )
    rejections = report.get("latest_rejections") or []
    if rejections:
        lines.append("")
        lines.append("latest rejections:")
        key_width = max(MIN_KEY_WIDTH, min(48, max(len(str(r.get("key", ""))) for r in rejections)))
        for item in rejections:
            key = shorten_left(str(item.get("key", "")), key_width).ljust(key_width)
            when = str(item.get("indexed_at") or "-")
            reason = str(item.get("reason") or "no reason recorded")
            # The reason is what the user acts on: never shortened.
            lines.append(f"  {when}  {key}  {reason}")
    failures = report.get("latest_failures") or []
    if failures:
        lines.append("")
        lines.append("latest failures (the model could not embed them; retried):")
        for item in failures:
            when = str(item.get("indexed_at") or "-")
            lines.append(f"  {when}  {item.get('key', '')}  {item.get('reason') or 'no cause'}")
    letters = report.get("dead_letters") or []
    if letters:
        lines.append("")
        lines.append(
            dead_letters_text(letters, header="dead letters (the cause is the catalog's):")
        )
    hints = report.get("hints") or []
    if hints:
        lines.append("")
        lines.extend(f"hint: {hint}" for hint in hints)
    return "\n".join(lines)
