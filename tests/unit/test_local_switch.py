"""Local mode's model switch (decision 42): which model a saved state switches from, and
the stepping thread outliving a failed step. The end-to-end run is
tests/e2e/test_local_switch.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.exceptions import EndpointConnectionError
from moto import mock_aws

from imagesearch import resources as r
from imagesearch.catalog.dynamodb import DynamoDBCatalog
from imagesearch.local import app as local_app
from imagesearch.records import ImageRecord, image_id_for_key
from imagesearch.switch import ModelState, Space

TITAN = Space(r.TITAN_MODEL_ID, 1024)
NOVA = Space(r.NOVA_MODEL_ID, 1024)


@pytest.fixture
def catalog() -> Iterator[DynamoDBCatalog]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(**r.table_definition("local-switch"))
        yield DynamoDBCatalog("local-switch", client=client)


def put(catalog: DynamoDBCatalog, key: str, space: Space) -> None:
    catalog.put(
        ImageRecord(
            image_id=image_id_for_key(key),
            key=key,
            status=r.STATUS_INDEXED,
            model_id=space.model_id,
            dimension=space.dimension,
            sequencer="S1",
            vector=np.ones(space.dimension, dtype=np.float32),
        )
    )


def local_mode(catalog: DynamoDBCatalog, deployed: Space) -> local_app.LocalMode:
    mode = local_app.LocalMode()
    mode.model_id, mode.dimension = deployed.model_id, deployed.dimension
    mode._catalog = lambda: catalog  # type: ignore[method-assign]
    return mode


def test_a_saved_state_switches_from_the_model_most_of_its_images_hold(catalog) -> None:
    for n in range(3):
        put(catalog, f"uploads/t{n}.png", TITAN)
    put(catalog, "uploads/n.png", NOVA)
    assert local_mode(catalog, NOVA)._switch_source() == TITAN
    # Another dimension of the same model is another space
    assert local_mode(catalog, Space(r.TITAN_MODEL_ID, 384))._switch_source() == TITAN


def test_nothing_to_switch_when_every_image_holds_this_runs_model(catalog) -> None:
    put(catalog, "uploads/a.png", NOVA)
    assert local_mode(catalog, NOVA)._switch_source() is None


def test_the_state_item_names_the_model_to_switch_from(catalog) -> None:
    put(catalog, "uploads/a.png", NOVA)
    catalog.put_model_state(ModelState(phase="serving", serving=TITAN), expected_version=None)
    # An unfinished switch goes on from the model it serves, whatever the records hold
    assert local_mode(catalog, NOVA)._switch_source() == TITAN
    # A state serving this run's model: nothing to switch (a finished switch)
    assert local_mode(catalog, TITAN)._switch_source() is None


def test_images_of_a_model_this_version_cannot_call_are_reported_not_switched(
    catalog, caplog: pytest.LogCaptureFixture
) -> None:
    put(catalog, "uploads/a.png", Space("acme.unknown-embed-v9", 1024))
    assert local_mode(catalog, NOVA)._switch_source() is None
    assert "backfill --force" in caplog.text


def test_the_switch_thread_outlives_a_failed_step(
    catalog, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(local_app, "SWITCH_STEP_SECONDS", 0.0)
    mode = local_mode(catalog, NOVA)
    calls: list[str] = []

    class Orchestrator:
        def step(self) -> Any:
            calls.append("step")
            if len(calls) == 1:
                raise EndpointConnectionError(endpoint_url="http://moto")
            mode._switch_stop.set()  # the second step ends the loop
            raise EndpointConnectionError(endpoint_url="http://moto")

    mode._step_switch(Orchestrator())
    assert calls == ["step", "step"]
    assert "model switch step failed" in caplog.text
