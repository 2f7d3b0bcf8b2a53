"""Local mode's terminal output carries no tracebacks unless IMAGESEARCH_DEBUG=1."""

from __future__ import annotations

import io
import logging

from imagesearch.local.app import WithoutTracebacks


def log_an_exception(*filters: logging.Filter) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    for item in filters:
        handler.addFilter(item)
    logger = logging.getLogger("test-local-output")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("the model is gone")
        except ValueError:
            logger.exception("ingest of %s failed", "uploads/a.jpg")
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_an_exception_is_one_line_without_its_traceback() -> None:
    assert log_an_exception(WithoutTracebacks()) == (
        "ingest of uploads/a.jpg failed: ValueError: the model is gone\n"
    )


def test_without_the_filter_the_traceback_stays() -> None:
    assert "Traceback (most recent call last)" in log_an_exception()
