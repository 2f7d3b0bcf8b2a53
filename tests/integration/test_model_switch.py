"""The model switch end to end, on both vector stores: the real ingest, search and
maintenance handlers on moto (and the S3 Vectors emulator), the fake Bedrock speaking
Titan and Nova 2 (whose vectors of the same input differ: each model has its own
projection). Index with Titan, deploy Nova with previousModelId=Titan, and search
answers from Titan vectors until the switch completes and from Nova vectors only
afterwards; an upload during the switch is found in both phases, a delete during the
switch in neither. The test prints its timeline (run with -s to see it)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fakes.bedrock import FakeBedrock, fake_embedding
from imagesearch import resources as r
from imagesearch.handlers import api, ingest, maintenance
from imagesearch.index.s3vectors import NON_FILTERABLE_METADATA_KEYS
from imagesearch.local.s3vectors_emulator import S3VectorsEmulator, ensure_index
from imagesearch.records import image_id_for_key
from tests.integration.api_fixtures import rest_event
from tests.support.lambda_runtime import FakeLambdaContext, drain_queue, sqs_event
from tests.support.s3vectors import client_for

TITAN, NOVA, DIM = r.TITAN_MODEL_ID, r.NOVA_MODEL_ID, 1024
SPACE = {TITAN: "titan", NOVA: "nova"}
COLOURS = {
    "red": (220, 20, 20),
    "green": (20, 200, 20),
    "blue": (20, 20, 220),
    "yellow": (230, 220, 30),
    "white": (245, 245, 245),
    "black": (10, 10, 10),
}


def png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (48, 40), colour).save(out, "PNG")
    return out.getvalue()


def unit(vector: Any) -> np.ndarray:
    array = np.asarray(vector, dtype=np.float64)
    return array / np.linalg.norm(array)


@pytest.fixture(scope="module")
def emulator() -> Iterator[S3VectorsEmulator]:
    with S3VectorsEmulator() as running:
        yield running


class Switch:
    """The deployment as the stack configures it, phase by phase."""

    def __init__(self, aws: Any, monkeypatch: pytest.MonkeyPatch, store: str, emulator: Any):
        self.aws, self.monkeypatch, self.store = aws, monkeypatch, store
        self.timeline: list[str] = []
        monkeypatch.setattr(r, "SWITCH_STATE_TTL_SECONDS", 0.0)  # read at every request
        monkeypatch.setenv(r.ENV_SNAPSHOT_PREFIX, r.SNAPSHOT_PREFIX)
        if store == "s3vectors":
            client = client_for(emulator)
            bucket = f"switch-vectors-{id(self)}"
            for model in (TITAN, NOVA):
                ensure_index(
                    client,
                    bucket=bucket,
                    index=r.vector_index_name(model, DIM),
                    dimension=DIM,
                    non_filterable_keys=NON_FILTERABLE_METADATA_KEYS,
                )
            self.vectors = client
            self.vector_bucket = bucket
            monkeypatch.setenv(r.ENV_VECTOR_STORE, "s3vectors")
            monkeypatch.setenv(r.ENV_VECTOR_BUCKET, bucket)
            monkeypatch.setenv("AWS_ENDPOINT_URL_S3VECTORS", emulator.endpoint_url)
        self.deploy(TITAN)

    def deploy(self, model_id: str, previous: str | None = None) -> None:
        """What `cdk deploy` changes: the functions' environment (new containers)."""
        env = self.monkeypatch
        env.setenv(r.ENV_MODEL_ID, model_id)
        env.setenv(r.ENV_EMBEDDING_DIMENSION, str(DIM))
        if self.store == "s3vectors":
            env.setenv(r.ENV_VECTOR_INDEX, r.vector_index_name(model_id, DIM))
        if previous is None:
            for name in (r.ENV_PREVIOUS_MODEL_ID, r.ENV_PREVIOUS_EMBEDDING_DIMENSION):
                env.delenv(name, raising=False)
            env.delenv(r.ENV_INGEST_QUEUE_URL, raising=False)
        else:
            env.setenv(r.ENV_PREVIOUS_MODEL_ID, previous)
            env.setenv(r.ENV_PREVIOUS_EMBEDDING_DIMENSION, str(DIM))
            env.setenv(r.ENV_INGEST_QUEUE_URL, self.aws.queue_url)
        api.configure(None)
        ingest.configure(None)

    def note(self, line: str) -> None:
        self.timeline.append(f"{len(self.timeline) + 1:2d}. {line}")

    def ingest(self) -> Any:
        return drain_queue(self.aws.sqs, self.aws.queue_url, ingest.handler)

    def ingest_some(self, count: int) -> None:
        """One ingest invocation with ``count`` messages of the queue (the rest wait)."""
        sqs, url = self.aws.sqs, self.aws.queue_url
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=count)["Messages"]
        assert len(received) == count
        response = ingest.handler(sqs_event(received, arn), FakeLambdaContext())
        assert response["batchItemFailures"] == []
        for message in received:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def maintain(self) -> dict[str, Any]:
        answer: dict[str, Any] = maintenance.handler({}, FakeLambdaContext())
        return answer

    def search(self, text: str, top_k: int = 10) -> dict[str, Any]:
        raw = api.handler(
            rest_event("POST", "/search", body={"text": text, "top_k": top_k}),
            FakeLambdaContext(),
        )
        assert raw["statusCode"] == 200, raw["body"]
        found: dict[str, Any] = json.loads(raw["body"])
        return found

    def answers_from(self, text: str, model_id: str) -> dict[str, Any]:
        """Search, and check the answer came from ``model_id``'s vectors only: every
        score is the cosine of that model's query vector and stored vector, and not
        what the other model's vectors would give."""
        found = self.search(text)
        assert found["model_id"] == model_id
        other = NOVA if model_id == TITAN else TITAN
        query = {m: unit(fake_embedding(text, None, DIM, SPACE[m])) for m in (TITAN, NOVA)}
        for hit in found["results"]:
            record = self.aws.catalog.get(hit["image_id"], with_vector=True)
            assert record is not None
            mine = record.vector_for(model_id, DIM)
            assert mine is not None, f"{hit['key']} has no {model_id} vector"
            assert hit["score"] == pytest.approx(float(query[model_id] @ unit(mine)), abs=1e-5)
            theirs = record.vector_for(other, DIM)
            if theirs is not None:
                assert hit["score"] != pytest.approx(float(query[other] @ unit(theirs)), abs=1e-5)
        return found

    def end_grace(self) -> None:
        """As if the grace period after the flip had passed."""
        state = self.aws.catalog.model_state()
        assert state is not None and state.flipped_at is not None
        self.aws.catalog.put_model_state(
            replace(state, flipped_at="2000-01-01T00:00:00.000Z"),
            expected_version=state.version,
        )

    def keys(self, found: dict[str, Any]) -> set[str]:
        return {hit["key"] for hit in found["results"]}

    def coverage(self) -> tuple[int, int]:
        state = self.aws.catalog.model_state()
        assert state is not None
        total = self.aws.catalog.counts()["indexed"]
        return self.aws.catalog.count_model(NOVA, DIM), total

    def index_holds(self, model_id: str) -> set[str]:
        """Image ids in the model's S3 Vectors index (s3vectors only)."""
        from imagesearch.index.s3vectors import S3VectorsIndex

        index = S3VectorsIndex(
            self.vectors,
            bucket=self.vector_bucket,
            index=r.vector_index_name(model_id, DIM),
            dimension=DIM,
        )
        return set(index.keys())


@pytest.fixture
def new_switch(
    aws: Any, emulator: S3VectorsEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], Switch]]:
    """Factory: the deployment on a vector store, Titan deployed. Afterwards the
    handlers drop their services (the next test builds its own from its environment)."""
    yield lambda store: Switch(aws, monkeypatch, store, emulator)
    api.configure(None)
    ingest.configure(None)


def fail_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """One attempt per model call and no adaptive slow-down."""
    monkeypatch.setenv(r.ENV_BEDROCK_MAX_ATTEMPTS, "1")
    monkeypatch.setenv(r.ENV_BEDROCK_RETRY_MODE, "standard")


@pytest.mark.parametrize("store", ["dynamodb", "s3vectors"])
def test_switch_from_titan_to_nova_without_downtime(
    store: str, aws: Any, fake_bedrock: FakeBedrock, new_switch: Callable[[str], Switch]
) -> None:
    switch = new_switch(store)
    try:
        _run_switch(switch, aws, fake_bedrock, store)
    finally:
        print(f"\nthe switch test's timeline ({store}):")
        print("\n".join(switch.timeline))


def _run_switch(switch: Switch, aws: Any, fake_bedrock: FakeBedrock, store: str) -> None:
    # Given a catalog indexed with Titan
    keys = {name: aws.upload(f"{name}.png", png(colour)) for name, colour in COLOURS.items()}
    switch.ingest()
    assert {c.model_id for c in fake_bedrock.call_log} == {TITAN}
    found = switch.answers_from("red", TITAN)
    assert found["results"][0]["key"] == keys["red"]
    switch.note(f"indexed {len(keys)} images with Titan; search answers from Titan")

    # When Nova is deployed with previousModelId=Titan, and maintenance runs
    switch.deploy(NOVA, previous=TITAN)
    answer = switch.maintain()
    assert answer["switch"]["action"] == "switch started"
    switch.note(
        f"deployed Nova with previousModelId=Titan; maintenance: {answer['switch']['state']}"
    )
    switch.answers_from("red", TITAN)

    # An upload during the switch: embedded by both models, found in Titan's phase
    fake_bedrock.reset()
    purple = aws.upload("purple.png", png((150, 30, 160)))
    switch.ingest()
    assert sorted(c.model_id for c in fake_bedrock.call_log) == sorted([NOVA, TITAN])
    assert keys["red"] in switch.keys(switch.answers_from("purple", TITAN))
    assert switch.search("purple")["results"][0]["key"] == purple
    switch.note("uploaded purple.png during the switch: embedded by Nova and Titan, found (Titan)")

    # A delete during the switch: gone at once
    aws.s3.delete_object(Bucket=aws.bucket, Key=keys["green"])
    switch.ingest()
    assert keys["green"] not in switch.keys(switch.answers_from("green", TITAN))
    switch.note("deleted green.png during the switch: gone from search (Titan)")

    # Maintenance sends re-embed messages; ingest works off a part of them
    fake_bedrock.reset()
    answer = switch.maintain()
    assert (answer["switch"]["action"], answer["switch"]["enqueued"]) == ("re-embedding", 5)
    switch.ingest_some(2)
    assert {c.model_id for c in fake_bedrock.call_log} == {NOVA}  # Titan vectors kept
    covered, total = switch.coverage()
    assert (covered, total) == (3, 6)  # purple, and two re-embedded
    switch.answers_from("red", TITAN)
    switch.note(f"re-embedding through the ingest queue: {covered}/{total} have a Nova vector")
    answer = switch.maintain()
    assert answer["switch"]["state"].endswith(f"{covered}/{total} re-embedded")
    switch.note(f"maintenance: {answer['switch']['state']}; search still answers from Titan")

    # The rest is re-embedded; the next clean pass flips
    switch.ingest()
    assert switch.coverage() == (6, 6)
    switch.answers_from("red", TITAN)
    answer = switch.maintain()
    assert answer["switch"]["action"] == "flipped"
    switch.note(f"6/6 re-embedded; maintenance flipped: {answer['switch']['state']}")

    # Then search answers from Nova vectors only, the upload still found, the delete not
    found = switch.answers_from("red", NOVA)
    assert found["results"][0]["key"] == keys["red"]
    assert switch.search("purple")["results"][0]["key"] == purple
    assert keys["green"] not in switch.keys(switch.answers_from("green", NOVA))
    health = api.handler(rest_event("GET", "/health"), FakeLambdaContext())
    assert json.loads(health["body"])["model_id"] == NOVA
    switch.note("search answers from Nova: purple.png found, green.png not; /health says Nova")

    # After the grace period the Titan vectors are removed
    red = aws.catalog.get(image_id_for_key(keys["red"]), with_vector=True)
    assert red is not None and red.vector_for(TITAN, DIM) is not None
    if store == "s3vectors":
        assert len(switch.index_holds(TITAN)) == 6
    state = aws.catalog.model_state()
    assert state is not None
    aws.catalog.put_model_state(
        type(state)(**{**state.__dict__, "flipped_at": "2000-01-01T00:00:00.000Z"}),
        expected_version=state.version,
    )  # the grace period has passed
    answer = switch.maintain()
    assert answer["switch"]["action"] == "previous vectors removed"
    for record in aws.records():
        stored = aws.catalog.get(record.image_id, with_vector=True)
        assert stored is not None and stored.vector_for(TITAN, DIM) is None
        assert stored.vector_for(NOVA, DIM) is not None
    if store == "s3vectors":
        assert switch.index_holds(TITAN) == set()
        assert len(switch.index_holds(NOVA)) == 6
    switch.answers_from("red", NOVA)
    switch.note(f"old vectors removed ({answer['switch']['removed']}); {answer['switch']['state']}")

    # The next deploy without previousModelId: Nova alone, nothing reads the state
    switch.deploy(NOVA)
    found = switch.answers_from("purple", NOVA)
    assert found["results"][0]["key"] == purple
    switch.note("deployed again without previousModelId: Nova only")


def test_a_failing_new_model_keeps_titan_serving_and_the_switch_unflipped(
    aws: Any,
    fake_bedrock: FakeBedrock,
    new_switch: Callable[[str], Switch],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fail_fast(monkeypatch)  # every failing call fails at once
    switch = new_switch("dynamodb")
    keys = {n: aws.upload(f"{n}.png", png(c)) for n, c in list(COLOURS.items())[:3]}
    switch.ingest()
    switch.deploy(NOVA, previous=TITAN)
    switch.maintain()

    # Nova throttles every call
    fake_bedrock.throttle_model(NOVA)
    purple = aws.upload("purple.png", png((150, 30, 160)))
    switch.ingest()  # retried until the DLQ: Nova never answers
    # The upload is searchable with Titan's vector all the same
    assert switch.search("purple")["results"][0]["key"] == purple
    switch.answers_from("red", TITAN)
    for _ in range(3):
        answer = switch.maintain()
        switch.ingest()
        assert answer["switch"]["action"] in ("re-embedding", "waiting for the ingest queue")
    state = aws.catalog.model_state()
    assert state is not None and state.phase == "switching" and state.serving.model_id == TITAN
    assert switch.coverage() == (0, 4)
    assert aws.queue_depth(aws.dlq_url) > 0  # visible: the alarm on the DLQ fires
    switch.answers_from("red", TITAN)

    # Nova recovers: the next passes re-embed everything and the switch flips
    fake_bedrock.throttle_model(NOVA, throttled=False)
    switch.maintain()
    switch.ingest()
    assert switch.coverage() == (4, 4)
    assert switch.maintain()["switch"]["action"] == "flipped"
    assert switch.answers_from("red", NOVA)["results"][0]["key"] == keys["red"]
    assert switch.search("purple")["results"][0]["key"] == purple


def test_during_a_switch_a_failing_serving_model_shows_failed_and_a_refusal_rejects(
    aws: Any,
    fake_bedrock: FakeBedrock,
    new_switch: Callable[[str], Switch],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fail_fast(monkeypatch)  # every failing call fails at once
    switch = new_switch("dynamodb")
    switch.deploy(NOVA, previous=TITAN)
    switch.maintain()  # switching

    # Titan (still serving) throttles: the upload is visible as failed, with the cause
    fake_bedrock.throttle_model(TITAN)
    key = aws.upload("orange.png", png((240, 140, 20)))
    switch.ingest()
    record = aws.record(key)
    assert record is not None and record.status == r.STATUS_FAILED
    assert "throttl" in (record.reason or "").lower()

    # Titan recovers: the redriven message indexes it with both models
    fake_bedrock.throttle_model(TITAN, throttled=False)
    aws.upload("orange.png", png((240, 140, 21)))
    switch.ingest()
    record = aws.record(key)
    assert record is not None and record.status == r.STATUS_INDEXED
    assert record.vector_for(NOVA, DIM) is not None
    assert record.vector_for(TITAN, DIM) is not None

    # The new model refuses an image: rejected, as it would be after the switch
    refused = png((1, 2, 3))
    fake_bedrock.refuse_image(refused)
    bad = aws.upload("refused.png", refused)
    switch.ingest()
    record = aws.record(bad)
    assert record is not None and record.status == r.STATUS_REJECTED
    assert "refused" in (record.reason or "")


def test_during_a_switch_an_image_only_the_serving_model_refuses_is_indexed_for_the_new_one(
    aws: Any,
    fake_bedrock: FakeBedrock,
    new_switch: Callable[[str], Switch],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fail_fast(monkeypatch)
    switch = new_switch("dynamodb")
    switch.deploy(NOVA, previous=TITAN)
    switch.maintain()  # switching
    # Given an image Titan (serving) refuses and Nova (the target) takes
    data = png((120, 40, 160))
    fake_bedrock.refuse_image(data, model_id=TITAN)
    key = aws.upload("only-nova.png", data)
    # When it is ingested
    stats = switch.ingest()
    # Then it is indexed with Nova's vector alone (found once search changes over), not
    # retried into the dead-letter queue because of the model being replaced
    assert stats.failures == 0
    record = aws.record(key)
    assert record is not None and record.status == r.STATUS_INDEXED
    assert record.vector_for(NOVA, DIM) is not None
    assert record.vector_for(TITAN, DIM) is None
    assert aws.queue_depth(aws.dlq_url) == 0


# --- a switch that always ends (issue 17.4, decision 42) --------------------------------


def _run_until_flipped(switch: Switch, runs: int = 10) -> list[str]:
    """Maintenance and ingest in turn until the switch flips (at most ``runs`` times);
    the actions taken, in order."""
    actions = []
    for _ in range(runs):
        action = switch.maintain()["switch"]["action"]
        actions.append(action)
        if action == "flipped":
            return actions
        switch.ingest()
    raise AssertionError(f"no flip after {runs} runs: {actions}")


def _listed(status: str) -> dict[str, dict[str, Any]]:
    raw = api.handler(
        rest_event("GET", "/images", query={"status": status, "limit": "100"}),
        FakeLambdaContext(),
    )
    assert raw["statusCode"] == 200, raw["body"]
    return {item["key"]: item for item in json.loads(raw["body"])["items"]}


def test_a_record_the_new_model_cannot_embed_is_given_up_and_the_switch_ends(
    aws: Any,
    fake_bedrock: FakeBedrock,
    new_switch: Callable[[str], Switch],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fail_fast(monkeypatch)
    switch = new_switch("dynamodb")
    keys = {n: aws.upload(f"{n}.png", png(c)) for n, c in list(COLOURS.items())[:3]}
    # Given an indexed image Nova answers with an error that is not about the image (a
    # configuration error by decision 33: retried, never a silent rejection)
    stubborn = png((90, 90, 90))
    fake_bedrock.refuse_image(stubborn, model_id=NOVA, message="Nova cannot do this today.")
    grey = aws.upload("grey.png", stubborn)
    switch.ingest()
    switch.deploy(NOVA, previous=TITAN)

    # When the switch runs: the other records are re-embedded; the grey one's failed
    # re-embeds are counted on it until it is given up, and the switch flips without it
    actions = _run_until_flipped(switch)
    assert actions.count("re-embedding") <= 3, actions
    record = aws.record(grey)
    assert record is not None and record.status == r.STATUS_INDEXED
    assert record.reembed_failures == r.SWITCH_MAX_REEMBED_FAILURES
    assert record.reason is not None and record.reason.startswith(f"not embedded by {NOVA}")
    assert "Nova cannot do this today" in record.reason

    # Then after the flip's grace period it ends failed with Nova's cause, listed as such
    switch.end_grace()
    answer = switch.maintain()
    assert answer["switch"]["action"] == "re-embedding after the flip"
    failed = _listed("failed")
    assert set(failed) == {grey}
    assert "Nova cannot do this today" in failed[grey]["reason"]
    assert failed[grey]["model_id"] == NOVA
    # and the switch completes; the others answer from Nova
    assert switch.maintain()["switch"]["action"] == "previous vectors removed"
    assert switch.answers_from("red", NOVA)["results"][0]["key"] == keys["red"]


def test_an_image_the_new_model_refuses_stays_searchable_until_the_flip(
    aws: Any,
    fake_bedrock: FakeBedrock,
    new_switch: Callable[[str], Switch],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fail_fast(monkeypatch)
    switch = new_switch("dynamodb")
    aws.upload("red.png", png(COLOURS["red"]))
    refused_old, refused_new = png((130, 60, 10)), png((10, 60, 130))
    fake_bedrock.refuse_image(refused_old, model_id=NOVA)
    fake_bedrock.refuse_image(refused_new, model_id=NOVA)
    old_key = aws.upload("old.png", refused_old)
    switch.ingest()
    switch.deploy(NOVA, previous=TITAN)
    switch.maintain()  # started
    # Given an upload during the switch that Nova refuses and Titan (serving) takes
    new_key = aws.upload("new.png", refused_new)
    stats = switch.ingest()
    assert stats.failures == 0 and aws.queue_depth(aws.dlq_url) == 0
    # Then it is indexed with Titan's vector and found, its reason says Nova refused it
    for key in (new_key,):
        record = aws.record(key)
        assert record is not None and record.status == r.STATUS_INDEXED
        assert record.vector_for(TITAN, DIM) is not None
        assert (record.reason or "").startswith(f"refused by {NOVA}")
    found = switch.keys(switch.search("anything", top_k=10))
    assert new_key in found and old_key in found
    # and an indexed image Nova refuses on its re-embed stays indexed under Titan too
    _run_until_flipped(switch)
    record = aws.record(old_key)
    assert record is not None and record.status == r.STATUS_INDEXED
    assert (record.reason or "").startswith(f"refused by {NOVA}")
    # After the flip both end rejected with Nova's refusal, as after the switch
    switch.end_grace()
    switch.maintain()
    rejected = _listed("rejected")
    assert {old_key, new_key} <= set(rejected)
    assert rejected[new_key]["reason"].startswith("the model refused the image")
    assert rejected[new_key]["model_id"] == NOVA


@pytest.mark.parametrize("store", ["dynamodb", "s3vectors"])
def test_an_abandoned_switch_heals(
    store: str,
    aws: Any,
    fake_bedrock: FakeBedrock,
    new_switch: Callable[[str], Switch],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    switch = new_switch(store)
    keys = {n: aws.upload(f"{n}.png", png(c)) for n, c in COLOURS.items()}
    switch.ingest()
    switch.deploy(NOVA, previous=TITAN)
    switch.maintain()  # started
    # Given a switch under way (a few re-embedded) ...
    switch.maintain()
    switch.ingest_some(2)
    # ... abandoned by a deploy of Nova without previousModelId
    switch.deploy(NOVA)
    switch.monkeypatch.setenv(r.ENV_INGEST_QUEUE_URL, aws.queue_url)  # the stack sets it
    assert switch.coverage()[0] < len(keys)
    # When maintenance runs, it says the switch is being healed and re-embeds the rest
    answer = switch.maintain()
    assert answer["switch"]["action"] == "healing an abandoned switch"
    assert "healing" in answer["switch"]["state"]
    for _ in range(5):
        answer = switch.maintain()
        switch.ingest()
        if answer["switch"]["action"] == "previous vectors removed":
            break
    assert answer["switch"]["action"] == "previous vectors removed"
    # Then every image is found again, from Nova's vectors
    assert switch.coverage() == (len(keys), len(keys))
    assert switch.answers_from("red", NOVA)["results"][0]["key"] == keys["red"]
    assert len(switch.search("anything")["results"]) == len(keys)
    assert aws.catalog.model_state().phase == "serving"
