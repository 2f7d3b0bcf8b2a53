"""Switching embedding models without downtime (docs/decisions.md entry 22).

A deployment names its model (``modelId``/``embeddingDimension``: the *deployed* space)
and, during a switch, the model it replaces (``previousModelId``/...: the *previous*
space). Which one search uses is the catalog's *state item* (``ModelState``), moved on
by the scheduled maintenance function (``SwitchOrchestrator``, one step per run):

- ``switching`` (serving: previous, target: deployed): ingest embeds new uploads with
  both models (primary slot: the target's vector, alt slot: the serving one's); the
  orchestrator sends a re-embed message through the ingest queue for every indexed
  record that lacks the target's vector (bounded per run; ``ingestMaxConcurrency``
  throttles them), and when none lacks it, flips the state in one conditional write;
- ``removing`` (serving: deployed, previous recorded): search instances change over
  on their next state read; after a grace period a sweep re-embeds every indexed record
  still lacking the serving model's vector (one written around the flip), the records
  the new model could not embed end ``failed``/``rejected`` with its cause, and the
  previous model's vectors are removed (the catalog's alt slots and, on S3 Vectors, the
  previous index's vectors);
- ``serving``: one model; the next deploy without ``previousModelId`` drops its grant.

Every run that would send re-embed messages first reads the ingest queue's depth and
sends at most ``per_run`` minus what still waits there. A record the new model cannot
embed is not re-sent forever: ingest counts its failed re-embeds on the record and gives
it up after ``SWITCH_MAX_REEMBED_FAILURES`` (a refusal at once); a given-up record stays
searchable under the serving model, with the new model's cause as its reason, and no
longer holds the flip back (decision 42). A switch abandoned by a deploy without
``previousModelId`` heals: the state item says it is unfinished, and the maintenance
function sweeps as after a flip until every record has the deployed model's vector.

Search answers from one space at a time (one matrix or one S3 Vectors index per model
and dimension): results never mix models.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, Literal, Protocol, TypeVar

from imagesearch.resources import (
    STATUS_FAILED,
    STATUS_INDEXED,
    STATUS_REJECTED,
    SWITCH_ENQUEUE_PER_RUN,
    SWITCH_MAX_GIVEN_UP,
    SWITCH_MAX_GIVEN_UP_FRACTION,
    SWITCH_REMOVAL_GRACE_SECONDS,
)

logger = logging.getLogger(__name__)

Phase = Literal["serving", "switching", "removing"]
T = TypeVar("T")


@dataclass(frozen=True, order=True)
class Space:
    """A vector space: a model at one output dimension."""

    model_id: str
    dimension: int

    def __str__(self) -> str:
        return f"{self.model_id} ({self.dimension})"


@dataclass(frozen=True)
class ModelState:
    """The catalog's state item (``resources.MODEL_STATE_ID``)."""

    phase: Phase
    serving: Space
    target: Space | None = None  # switching: the model being switched to
    previous: Space | None = None  # removing: the model whose vectors are removed
    covered: int | None = None  # switching: indexed records with the target's vector
    total: int | None = None  # switching: indexed records
    enqueued: int = 0  # re-embed messages sent so far
    removed: int = 0  # previous vectors removed so far
    given_up: int = 0  # records the target could not embed (switching: still served)
    settled: int = 0  # given-up records made failed/rejected after the flip
    lacking: int | None = None  # removing: records without the serving model's vector
    healing: bool = False  # removing: a switch abandoned mid-way is being completed
    cursor: str | None = None  # where the next run continues looking for records
    started_at: str | None = None
    flipped_at: str | None = None
    finished_at: str | None = None
    updated_at: str | None = None
    version: int = 0  # conditional writes: a write must see the version it read


def serving_space(deployed: Space, previous: Space | None, state: ModelState | None) -> Space:
    """The space search answers from. Without a switch configured: the deployed one.
    During a switch: the previous one until the state says the deployed one serves."""
    if previous is None:
        return deployed
    if state is not None and state.serving == deployed:
        return deployed
    return previous


def ingest_spaces(deployed: Space, previous: Space | None, state: ModelState | None) -> list[Space]:
    """The spaces ingest embeds a new image in, primary first: during a switch both
    (so an upload is searchable before and after the flip), else the deployed one."""
    if serving_space(deployed, previous, state) == deployed or previous is None:
        return [deployed]
    return [deployed, previous]


# --- search: the serving space's index and embedder -----------------------------------


class Loadable(Protocol):
    def refresh(self) -> None: ...


class ServingSpaces(Generic[T]):
    """Per request: the serving space and what search needs for it (``T``: the index
    and embedder of that space), built on first use.

    Without a switch configured nothing is read. During one, the state item is read at
    most every ``ttl`` seconds; when it names another space, that space's index is
    loaded first (``prepare``: the embedded tier fills its matrix) and only then
    served, so a query never meets a half-loaded index; if loading fails the instance
    keeps serving the space it has and tries again at the next read.
    """

    def __init__(
        self,
        *,
        deployed: Space,
        previous: Space | None,
        build: Callable[[Space], T],
        read_state: Callable[[], ModelState | None] | None = None,
        prepare: Callable[[T], None] | None = None,
        clock: Callable[[], float],
        ttl: float,
    ) -> None:
        self.deployed = deployed
        self.previous = previous
        self._build = build
        self._read_state = read_state
        self._prepare = prepare
        self._clock = clock
        self._ttl = ttl
        self._space: Space | None = None
        self._current: T | None = None
        self._read_at = float("-inf")
        self._guess: tuple[Space, T] | None = None  # built for peek() before any request

    def current(self) -> tuple[Space, T]:
        now = self._clock()
        if self._space is None or (self.previous is not None and now - self._read_at >= self._ttl):
            self._read_at = now
            wanted = serving_space(self.deployed, self.previous, self._state())
            if wanted != self._space:
                self._change_to(wanted)
        assert self._space is not None and self._current is not None
        return self._space, self._current

    def peek(self) -> tuple[Space, T]:
        """The space served now, without reading the state or loading anything (GET
        /health); before the first request, the one a switch starts from."""
        if self._space is not None and self._current is not None:
            return self._space, self._current
        if self._guess is None:
            space = self.previous or self.deployed
            self._guess = space, self._build(space)
        return self._guess

    def _state(self) -> ModelState | None:
        if self.previous is None or self._read_state is None:
            return None
        try:
            return self._read_state()
        except Exception as error:  # any adapter error: keep serving what is known
            if self._space is None:
                raise
            logger.warning(
                "could not read the model switch state; serving %s: %s", self._space, error
            )
            return None if self._space == self.previous else _served(self._space)

    def _change_to(self, space: Space) -> None:
        guess, self._guess = self._guess, None
        built = guess[1] if guess is not None and guess[0] == space else self._build(space)
        if self._space is not None and self._prepare is not None:
            try:
                self._prepare(built)
            except Exception as error:  # noqa: BLE001  (keep serving what is loaded)
                logger.warning(
                    "could not load %s yet; still serving %s: %s", space, self._space, error
                )
                self._read_at = float("-inf")  # try again on the next request
                return
        if self._space is not None:
            logger.info("model switch: serving %s instead of %s", space, self._space)
        self._space, self._current = space, built


def _served(space: Space) -> ModelState:
    return ModelState(phase="serving", serving=space)


# --- records the new model could not embed ----------------------------------------------
#
# The reason of an indexed record says, during a switch, why it lacks the new model's
# vector (the ``by_status`` index projects ``reason``, so the orchestrator's queries can
# tell these records apart without a GSI change). The prefix names the target space: a
# reason left from another switch means nothing to this one.


def retrying_prefix(space: Space) -> str:
    """Reason of a record whose re-embed by ``space`` failed and is retried."""
    return f"not yet embedded by {space}: "


def failed_prefix(space: Space) -> str:
    """Reason of a record given up after too many failed re-embeds by ``space``."""
    return f"not embedded by {space}: "


def refused_prefix(space: Space) -> str:
    """Reason of a record ``space`` refused (final: no retry)."""
    return f"refused by {space}: "


def given_up_prefixes(space: Space) -> tuple[str, str]:
    return failed_prefix(space), refused_prefix(space)


def reembed_failures(reason: str | None, failures: int | None, space: Space) -> int:
    """The failed re-embeds by ``space`` counted on a record so far (0: none, or counted
    for another space)."""
    if reason is None or not reason.startswith(
        (retrying_prefix(space), failed_prefix(space), refused_prefix(space))
    ):
        return 0
    return failures or 0


def max_given_up(total: int) -> int:
    """Given-up records a switch may flip without: a few images' own faults. More
    looks like the model's or the deployment's, so the switch halts instead."""
    return max(SWITCH_MAX_GIVEN_UP, int(total * SWITCH_MAX_GIVEN_UP_FRACTION))


def settled_status(reason: str, space: Space) -> tuple[str, str]:
    """After the flip: the status and reason of a record ``space`` could not embed, as
    if it had been uploaded after the switch (a refusal is final, a failure retried by
    ``imagesearch backfill``)."""
    refused = refused_prefix(space)
    if reason.startswith(refused):
        return STATUS_REJECTED, reason[len(refused) :]
    failed = failed_prefix(space)
    return STATUS_FAILED, reason[len(failed) :] if reason.startswith(failed) else reason


# --- maintenance: the orchestrator ------------------------------------------------------


class SwitchCatalog(Protocol):
    """The catalog reads and writes the orchestrator needs (``DynamoDBCatalog``)."""

    def model_state(self) -> ModelState | None: ...

    def put_model_state(self, state: ModelState, *, expected_version: int | None) -> bool:
        """Write ``state`` if the stored one has ``expected_version`` (None: if there is
        none); False otherwise. The written item carries ``expected_version + 1``."""
        ...

    def counts(self) -> dict[str, int]: ...

    def count_model(self, model_id: str, dimension: int) -> int:
        """Indexed records whose primary vector is of this model and dimension."""
        ...

    def lacking(
        self, model_id: str, dimension: int, *, limit: int, cursor: str | None
    ) -> tuple[list[str], str | None]:
        """Keys of indexed records whose primary vector is not of this model and
        dimension and that it has not given up (``given_up_prefixes``), from ``cursor``
        on, at most ``limit``; and the cursor to continue from (None: the end was
        reached)."""
        ...

    def given_up(self, space: Space, *, limit: int) -> list[str]:
        """Ids of indexed records ``space`` gave up (``given_up_prefixes``), at most
        ``limit``."""
        ...

    def count_given_up(self, space: Space) -> int: ...

    def settle_given_up(self, image_id: str, space: Space) -> bool:
        """Make a given-up record ``failed``/``rejected`` (``settled_status``); False
        when it changed meanwhile."""
        ...

    def alt_ids(self, model_id: str, dimension: int) -> Iterator[str]:
        """Ids of records holding an alt vector of this model and dimension."""
        ...

    def remove_alt(self, image_id: str, model_id: str, dimension: int) -> bool:
        """Remove the record's alt vector if it is of this model and dimension."""
        ...


class Reembed(Protocol):
    """Re-embed (backfill) messages for object keys through the ingest queue."""

    def send(self, keys: Sequence[str]) -> None: ...

    def pending(self) -> int:
        """Messages waiting in the queue (approximate)."""
        ...


class IndexEraser(Protocol):
    """Removes every vector of the previous model's vector index (S3 Vectors)."""

    def __call__(self) -> int: ...


@dataclass(frozen=True)
class StepResult:
    state: ModelState
    action: str  # what this run did (logs, timeline)
    enqueued: int = 0
    removed: int = 0


class SwitchOrchestrator:
    """One step of a model switch per maintenance run (see the module docstring).

    With ``previous`` (``previousModelId`` deployed) it starts and drives a switch to
    ``deployed``. Without it, it only finishes what a state item left unfinished: the
    sweep after a flip, or a switch abandoned by a deploy without ``previousModelId``
    (``healing``); with no state item, or one serving ``deployed``, it does nothing
    but read that item."""

    def __init__(
        self,
        catalog: SwitchCatalog,
        *,
        deployed: Space,
        previous: Space | None,
        reembed: Reembed | None,
        erase_previous_index: IndexEraser | None = None,
        clock: Callable[[], float],
        per_run: int = SWITCH_ENQUEUE_PER_RUN,
        grace_seconds: float = SWITCH_REMOVAL_GRACE_SECONDS,
    ) -> None:
        self._catalog = catalog
        self._deployed = deployed
        self._previous = previous
        self._reembed = reembed
        self._erase_previous_index = erase_previous_index
        self._clock = clock
        self._per_run = per_run
        self._grace = grace_seconds

    def step(self) -> StepResult:
        state = self._catalog.model_state()
        deployed, previous = self._deployed, self._previous
        if previous is not None and (state is None or state.serving != deployed):
            if (
                state is None
                or state.phase != "switching"
                or (state.serving, state.target) != (previous, deployed)
            ):
                started = ModelState(
                    phase="switching", serving=previous, target=deployed, started_at=self._now()
                )
                return self._write(state, started, "switch started")
            return self._switching(state)
        if state is None:
            return StepResult(_served(deployed), "no switch")
        if state.serving != deployed or (state.phase == "switching" and previous is None):
            return self._heal(state)
        if state.phase == "removing":
            return self._removing(state)
        if state.phase == "switching":  # an item flipped by hand: nothing left to do
            return self._write(state, replace(state, phase="serving", target=None), "serving")
        return StepResult(state, "switch complete")

    # -- phases ------------------------------------------------------------------------

    def _switching(self, state: ModelState) -> StepResult:
        target = state.target
        assert target is not None
        total = self._catalog.counts().get(STATUS_INDEXED, 0)
        covered = self._catalog.count_model(target.model_id, target.dimension)
        given_up = self._catalog.count_given_up(target)
        room = self._room()
        if room <= 0:
            # Every run checks: more messages now would only queue behind these.
            waiting = replace(state, covered=covered, total=total, given_up=given_up)
            return self._write(state, waiting, "waiting for the ingest queue")
        keys, cursor = self._catalog.lacking(
            target.model_id, target.dimension, limit=room, cursor=state.cursor
        )
        if not keys and state.cursor is None and cursor is None:
            # A whole pass from the start found no record without the target's vector
            # but those it gave up: they are settled after the flip, unless too many to
            # be the images' own fault (then the switch halts, visibly, for an operator).
            if given_up > max_given_up(total):
                halted = replace(
                    state, covered=covered, total=total, given_up=given_up, cursor=None
                )
                return self._write(state, halted, "halted: too many records given up")
            flipped = replace(
                state,
                phase="removing",
                serving=target,
                target=None,
                previous=state.serving,
                covered=covered,
                total=total,
                given_up=given_up,
                cursor=None,
                flipped_at=self._now(),
            )
            return self._write(state, flipped, "flipped")
        if keys:
            self._send(keys)
        progressed = replace(
            state,
            covered=covered,
            total=total,
            given_up=given_up,
            cursor=cursor,
            enqueued=state.enqueued + len(keys),
        )
        return self._write(state, progressed, "re-embedding", enqueued=len(keys))

    def _heal(self, state: ModelState) -> StepResult:
        """The deployed model serves (no ``previousModelId``) but the state item says a
        switch did not finish: every record lacking its vector is re-embedded by the
        sweep that follows a flip."""
        previous = state.serving if state.serving != self._deployed else state.previous
        healing = replace(
            state,
            phase="removing",
            serving=self._deployed,
            target=None,
            previous=previous,
            cursor=None,
            healing=True,
            flipped_at=state.flipped_at or self._now(),
        )
        logger.warning(
            "model switch: the state item says %s; %s serves: re-embedding what lacks it",
            describe(state),
            self._deployed,
        )
        return self._write(state, healing, "healing an abandoned switch")

    def _removing(self, state: ModelState) -> StepResult:
        serving = state.serving
        if (
            not state.healing
            and state.flipped_at is not None
            and self._age(state.flipped_at) < self._grace
        ):
            return StepResult(state, "waiting for search instances to change over")
        # The sweep: a record written around the flip with the previous model's vector
        # only (the flip's pass read an eventually consistent index) is re-embedded now.
        lacking = self._catalog.counts().get(STATUS_INDEXED, 0) - self._catalog.count_model(
            serving.model_id, serving.dimension
        )
        settled = 0
        for image_id in self._catalog.given_up(serving, limit=self._per_run):
            if self._catalog.settle_given_up(image_id, serving):
                settled += 1
        room = self._room()
        if room <= 0:
            waiting = replace(state, lacking=lacking, settled=state.settled + settled)
            return self._write(state, waiting, "waiting for the ingest queue")
        keys, cursor = self._catalog.lacking(
            serving.model_id, serving.dimension, limit=room, cursor=state.cursor
        )
        if keys or cursor is not None or state.cursor is not None or settled:
            if keys:
                self._send(keys)
            sweeping = replace(
                state,
                cursor=cursor,
                lacking=lacking,
                enqueued=state.enqueued + len(keys),
                settled=state.settled + settled,
            )
            return self._write(state, sweeping, "re-embedding after the flip", enqueued=len(keys))
        removed = 0
        previous = state.previous
        if previous is not None:
            for image_id in self._catalog.alt_ids(previous.model_id, previous.dimension):
                if self._catalog.remove_alt(image_id, previous.model_id, previous.dimension):
                    removed += 1
            if self._erase_previous_index is not None:
                removed += self._erase_previous_index()
        done = replace(
            state,
            phase="serving",
            lacking=0,
            healing=False,
            removed=state.removed + removed,
            finished_at=self._now(),
        )
        return self._write(state, done, "previous vectors removed", removed=removed)

    # -- helpers -----------------------------------------------------------------------

    def _send(self, keys: Sequence[str]) -> None:
        if self._reembed is None:
            raise RuntimeError("a model switch needs the ingest queue (INGEST_QUEUE_URL)")
        self._reembed.send(keys)

    def _room(self) -> int:
        """Messages this run may send: ``per_run`` less what the queue still holds
        (waiting and in flight), read on every run before sending."""
        if self._reembed is None:
            return self._per_run  # nothing to wait for; sending then raises
        return self._per_run - self._reembed.pending()

    def _write(
        self,
        old: ModelState | None,
        new: ModelState,
        action: str,
        *,
        enqueued: int = 0,
        removed: int = 0,
    ) -> StepResult:
        expected = None if old is None else old.version
        new = replace(new, updated_at=self._now(), version=(expected or 0) + 1)
        if not self._catalog.put_model_state(new, expected_version=expected):
            # Another run wrote meanwhile: it did this step; the next run goes on.
            current = self._catalog.model_state() or new
            return StepResult(current, "concurrent run", enqueued, removed)
        logger.info("model switch: %s (%s)", action, describe(new))
        return StepResult(new, action, enqueued, removed)

    def _now(self) -> str:
        from datetime import UTC, datetime

        return (
            datetime.fromtimestamp(self._clock(), tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )

    def _age(self, iso: str) -> float:
        from datetime import datetime

        return self._clock() - datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def describe(state: ModelState | None) -> str:
    """One line for logs and the CLI."""
    if state is None:
        return "no switch state"
    if state.phase == "switching":
        progress = (
            f"{state.covered}/{state.total} re-embedded"
            if state.covered is not None and state.total is not None
            else "starting"
        )
        if state.given_up:
            progress += f", {state.given_up} the new model could not embed"
        if state.total is not None and state.given_up > max_given_up(state.total):
            progress += (
                " (halted: more than a few images' own faults; see their reasons in"
                " GET /images?status=indexed, fix the cause and run"
                " `imagesearch backfill --force`, or delete them)"
            )
        return f"switching from {state.serving} to {state.target}: {progress}"
    if state.phase == "removing":
        lacking = f"; {state.lacking} records lack its vector" if state.lacking else ""
        if state.healing:
            return (
                f"serving {state.serving}; healing a switch abandoned mid-way: re-embedding"
                f" every record without its vector{lacking}"
            )
        return f"serving {state.serving}; removing the vectors of {state.previous}{lacking}"
    return f"serving {state.serving}"


def state_fields(state: ModelState) -> dict[str, Any]:
    """The state as plain values (status JSON)."""
    return {
        "phase": state.phase,
        "serving": _space_fields(state.serving),
        "target": _space_fields(state.target),
        "previous": _space_fields(state.previous),
        "covered": state.covered,
        "total": state.total,
        "enqueued": state.enqueued,
        "removed": state.removed,
        "given_up": state.given_up,
        "settled": state.settled,
        "lacking": state.lacking,
        "healing": state.healing,
        "started_at": state.started_at,
        "flipped_at": state.flipped_at,
        "finished_at": state.finished_at,
        "updated_at": state.updated_at,
    }


def _space_fields(space: Space | None) -> dict[str, Any] | None:
    return None if space is None else {"model_id": space.model_id, "dimension": space.dimension}


__all__ = [
    "ModelState",
    "ServingSpaces",
    "Space",
    "SwitchOrchestrator",
    "describe",
    "failed_prefix",
    "given_up_prefixes",
    "ingest_spaces",
    "reembed_failures",
    "refused_prefix",
    "retrying_prefix",
    "serving_space",
    "settled_status",
    "state_fields",
]
