"""Whether the embedding model is usable, as far as this instance knows.

Two sources: a query embed that failed with a configuration error (access denied,
unknown model, rejected credentials: an operator must act), cleared by the next
query embed that succeeds; and a start-up check (local mode's probe, which also tells
the fix), cleared only by the check itself (a cached embedding proves nothing).
``GET /health`` reports the problem as ``degraded``, and a search that fails while
the model is unusable names the cause instead of "retry shortly".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelProblem:
    """Why the model is unusable, what fixes it (may be empty) and since when
    (wall clock, seconds)."""

    cause: str
    fix: str
    since: float

    def text(self) -> str:
        return f"{self.cause} — {self.fix}" if self.fix else self.cause


class ModelHealth:
    """The last known problem with the embedding model (thread-safe)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._checked: ModelProblem | None = None  # from a start-up or periodic check
        self._queried: ModelProblem | None = None  # from a failed query embed

    def problem(self) -> ModelProblem | None:
        with self._lock:
            return self._checked or self._queried

    def checked(self, cause: str | None, fix: str = "") -> None:
        """A check's verdict: ``cause`` None when the model answered."""
        with self._lock:
            if cause is None:
                self._checked = None
            elif self._checked is None or (self._checked.cause, self._checked.fix) != (
                cause,
                fix,
            ):
                self._checked = ModelProblem(cause, fix, self._clock())

    def query_failed(self, cause: str) -> None:
        """A query embed failed with a configuration error (``cause``: its reason)."""
        with self._lock:
            if self._queried is None or self._queried.cause != cause:
                self._queried = ModelProblem(cause, "", self._clock())

    def query_succeeded(self) -> None:
        with self._lock:
            self._queried = None
