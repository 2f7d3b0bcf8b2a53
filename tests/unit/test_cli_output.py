"""Readable CLI output: the results table, records and the status report."""

from __future__ import annotations

from typing import Any

import pytest

from imagesearch.cli.output import (
    human_size,
    record_text,
    results_table,
    shorten_left,
    status_text,
)


def result(rank: int, key: str, score: float, **extra: Any) -> dict[str, Any]:
    return {
        "image_id": f"{rank:032x}",
        "key": key,
        "score": score,
        "url": "u",
        "thumbnail_url": "t",
        **extra,
    }


def test_table_aligns_columns_and_keeps_result_order() -> None:
    response = {
        "results": [
            result(1, "uploads/red.jpg", 0.9, width=640, height=480, content_type="image/jpeg"),
            result(2, "uploads/a/much/longer/key.png", -0.05, content_type="image/png"),
        ],
        "count": 2,
        "model_id": "m",
        "dimension": 256,
        "took_ms": 3.6,
    }

    lines = results_table(response, width=200).splitlines()

    assert lines == [
        "#    SCORE  IMAGE ID                          SIZE     TYPE        KEY",
        "1   0.9000  00000000000000000000000000000001  640x480  image/jpeg  uploads/red.jpg",
        "2  -0.0500  00000000000000000000000000000002  -        image/png   "
        "uploads/a/much/longer/key.png",
        "2 results in 4 ms (m, 256 dimensions)",
    ]


def test_long_keys_keep_their_end_within_the_terminal_width() -> None:
    key = "uploads/" + "very-long-folder-name/" * 10 + "red-shoe.jpg"
    table = results_table({"results": [result(1, key, 0.5)], "took_ms": 1}, width=90)

    row = table.splitlines()[1]

    assert len(row) == 90
    shown_key = row.split()[-1]
    assert shown_key.startswith("...")
    assert shown_key.endswith("-folder-name/red-shoe.jpg")
    assert key.endswith(shown_key[3:])


def test_no_results() -> None:
    text = results_table({"results": [], "model_id": "m", "dimension": 8, "took_ms": 0})
    assert text == "no results\n0 results in 0 ms (m, 8 dimensions)"


@pytest.mark.parametrize(
    ("text", "width", "expected"),
    [("abc", 5, "abc"), ("uploads/x/red.jpg", 10, "...red.jpg"), ("abcdef", 2, "ef")],
)
def test_shorten_left(text: str, width: int, expected: str) -> None:
    assert shorten_left(text, width) == expected


@pytest.mark.parametrize(
    ("size", "expected"),
    [(0, "0 B"), (999, "999 B"), (1500, "1.5 KB"), (2_500_000, "2.5 MB"), (3e9, "3.0 GB")],
)
def test_human_size(size: float, expected: str) -> None:
    assert human_size(size) == expected


def test_record_text_lists_present_fields_in_a_stable_order() -> None:
    text = record_text(
        {
            "url": "http://x",
            "key": "uploads/a.jpg",
            "image_id": "f" * 32,
            "status": "indexed",
            "reason": None,
            "width": 10,
            "extra": "kept",
        }
    )

    assert text.splitlines() == [
        f"image_id  {'f' * 32}",
        "key       uploads/a.jpg",
        "status    indexed",
        "width     10",
        "url       http://x",
        "extra     kept",
    ]


def test_status_text_shows_counts_rejections_and_hints() -> None:
    report = {
        "target": "http://127.0.0.1:8000",
        "model_id": "amazon.titan-embed-image-v1",
        "dimension": 1024,
        "images": {"indexed": 12, "rejected": 1},
        "queues": {
            "ingest": {"waiting": 3, "in_flight": 2},
            "dead_letter": {"waiting": 1, "in_flight": 0},
        },
        "latest_rejections": [
            {"key": "uploads/bad.jpg", "reason": "corrupt JPEG", "indexed_at": "2026-01-02"}
        ],
        "hints": ["run `imagesearch backfill --force`"],
    }

    lines = status_text(report).splitlines()

    assert lines[:5] == [
        "target       http://127.0.0.1:8000",
        "model        amazon.titan-embed-image-v1 (1024 dimensions)",
        "images       12 indexed, 1 rejected",
        "ingest queue 3 waiting, 2 in flight",
        "dead letters 1",
    ]
    assert "latest rejections:" in lines
    assert lines[lines.index("latest rejections:") + 1].split() == [
        "2026-01-02",
        "uploads/bad.jpg",
        "corrupt",
        "JPEG",
    ]
    assert lines[-1] == "hint: run `imagesearch backfill --force`"
