"""Which model space a search instance serves (``switch.ServingSpaces``): the deployed one
without a switch (nothing read), the previous one until the state item flips, the new
one only once its index is loaded, and the last good one when a read or a load fails."""

from __future__ import annotations

from typing import Any

import pytest

from imagesearch.switch import ModelState, ServingSpaces, Space, ingest_spaces, serving_space

OLD = Space("amazon.titan-embed-image-v1", 1024)
NEW = Space("amazon.nova-2-multimodal-embeddings-v1:0", 1024)
SWITCHING = ModelState(phase="switching", serving=OLD, target=NEW)
FLIPPED = ModelState(phase="removing", serving=NEW, previous=OLD)


class World:
    def __init__(self) -> None:
        self.now = 0.0
        self.state: ModelState | None = None
        self.reads = 0
        self.read_error: Exception | None = None
        self.load_error: Exception | None = None
        self.built: list[Space] = []
        self.loaded: list[Space] = []

    def read(self) -> ModelState | None:
        self.reads += 1
        if self.read_error is not None:
            raise self.read_error
        return self.state

    def build(self, space: Space) -> dict[str, Any]:
        self.built.append(space)
        return {"space": space}

    def prepare(self, built: dict[str, Any]) -> None:
        if self.load_error is not None:
            raise self.load_error
        self.loaded.append(built["space"])

    def spaces(self, previous: Space | None = OLD) -> ServingSpaces[dict[str, Any]]:
        return ServingSpaces(
            deployed=NEW,
            previous=previous,
            build=self.build,
            read_state=self.read,
            prepare=self.prepare,
            clock=lambda: self.now,
            ttl=5.0,
        )


def test_without_a_switch_the_deployed_space_serves_and_nothing_is_read() -> None:
    world = World()
    spaces = world.spaces(previous=None)
    for _ in range(3):
        world.now += 10
        assert spaces.current()[0] == NEW
    assert world.reads == 0 and world.built == [NEW]


def test_the_previous_space_serves_until_the_flip_then_the_new_one_once_loaded() -> None:
    world = World()
    world.state = SWITCHING
    spaces = world.spaces()
    assert spaces.current()[0] == OLD
    # The flip is seen at the next read (ttl), not before
    world.state = FLIPPED
    world.now += 1
    assert spaces.current()[0] == OLD and world.reads == 1
    world.now += 5
    space, built = spaces.current()
    assert space == NEW and built == {"space": NEW}
    assert world.loaded == [NEW]  # loaded before it served


def test_a_failed_load_keeps_the_old_space_and_tries_again_on_the_next_request() -> None:
    world = World()
    world.state = SWITCHING
    spaces = world.spaces()
    assert spaces.current()[0] == OLD
    world.state = FLIPPED
    world.load_error = RuntimeError("throttled")
    world.now += 5
    assert spaces.current()[0] == OLD
    world.load_error = None
    world.now += 0.1  # the next request, within the ttl: tries again at once
    assert spaces.current()[0] == NEW


def test_a_failed_state_read_keeps_serving_what_it_serves() -> None:
    world = World()
    world.state = FLIPPED
    spaces = world.spaces()
    assert spaces.current()[0] == NEW
    world.read_error = RuntimeError("table unreachable")
    world.now += 5
    assert spaces.current()[0] == NEW
    # ... but with nothing served yet, the error is the request's
    fresh = World()
    fresh.read_error = RuntimeError("table unreachable")
    with pytest.raises(RuntimeError, match="unreachable"):
        fresh.spaces().current()


def test_health_peeks_without_reading_or_loading() -> None:
    world = World()
    world.state = FLIPPED
    spaces = world.spaces()
    assert spaces.peek()[0] == OLD  # before any request: where a switch starts from
    assert world.reads == 0 and world.loaded == []
    assert spaces.current()[0] == NEW
    assert spaces.peek()[0] == NEW
    # The instance built for the peek is reused, not built twice
    assert world.built.count(NEW) == 1


@pytest.mark.parametrize(
    ("state", "serving", "ingest"),
    [
        (None, OLD, [NEW, OLD]),
        (SWITCHING, OLD, [NEW, OLD]),
        (FLIPPED, NEW, [NEW]),
        (ModelState(phase="serving", serving=Space("cohere.embed-v4:0", 256)), OLD, [NEW, OLD]),
    ],
    ids=["not-started", "switching", "flipped", "state-of-another-model"],
)
def test_serving_and_ingest_spaces_follow_the_state(
    state: ModelState | None, serving: Space, ingest: list[Space]
) -> None:
    assert serving_space(NEW, OLD, state) == serving
    assert ingest_spaces(NEW, OLD, state) == ingest
    # Without a switch configured the state is not consulted at all
    assert serving_space(NEW, None, state) == NEW
    assert ingest_spaces(NEW, None, state) == [NEW]
