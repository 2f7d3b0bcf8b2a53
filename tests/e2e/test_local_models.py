"""Local mode with each Bedrock model: ``MODEL_ID=... EMBEDDING_DIMENSION=...`` (the
env vars ``make local`` passes through) against the fake Bedrock speaking that
model's protocol; and a clear refusal of a model/dimension that do not go together."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import pytest
from PIL import Image

from fakes.bedrock import FakeBedrock
from imagesearch import resources as r
from tests.e2e.conftest import LocalProcess, _new_instance


def jpeg(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
def local_with_env(
    tmp_path_factory: pytest.TempPathFactory,
    imagesearch_command: list[str],
    local_env: dict[str, str],
) -> Iterator[Callable[..., LocalProcess]]:
    started: list[LocalProcess] = []

    def start(env: dict[str, str], *extra: str) -> LocalProcess:
        instance = _new_instance(
            tmp_path_factory, imagesearch_command, {**local_env, **env}, "model"
        )
        started.append(instance)
        return instance.start(*extra)

    yield start
    for instance in started:
        instance.stop()


@pytest.mark.parametrize("model_id", [r.NOVA_MODEL_ID, r.COHERE_MODEL_ID])
def test_local_mode_with_each_model_from_the_environment(
    model_id: str, local_with_env: Callable[..., LocalProcess], bedrock: FakeBedrock
) -> None:
    # Given local mode started with MODEL_ID and EMBEDDING_DIMENSION=1024
    local = local_with_env({"MODEL_ID": model_id, "EMBEDDING_DIMENSION": "1024"})
    health = local.get("/health").json()
    assert (health["model_id"], health["dimension"]) == (model_id, 1024)
    # When two images are dropped in
    local.drop("red.jpg", jpeg((220, 20, 20)))
    local.drop("blue.jpg", jpeg((20, 20, 220)))
    records = local.wait_indexed("red.jpg", "blue.jpg")
    assert {(rec["model_id"], rec["dimension"]) for rec in records} == {(model_id, 1024)}
    # Then search by text answers from that model's vectors (once the index, which
    # refreshes every second, has them)
    local.wait_until(
        lambda: len(local.search(text="crimson", top_k=2)) == 2,
        message="both images to be searchable",
    )
    assert local.search(text="crimson", top_k=2)[0]["key"] == local.key_for("red.jpg")
    assert local.search(text="navy", top_k=2)[0]["key"] == local.key_for("blue.jpg")
    assert any(c.model_id == model_id and c.status == 200 for c in bedrock.call_log)


def test_flags_override_the_environment_and_bad_pairs_are_refused(
    local_with_env: Callable[..., LocalProcess], start_local_mode: Callable[..., LocalProcess]
) -> None:
    # --model-id/--dimension win over the environment
    local = local_with_env(
        {"MODEL_ID": r.TITAN_MODEL_ID}, "--model-id", r.COHERE_MODEL_ID, "--dimension", "256"
    )
    health = local.get("/health").json()
    assert (health["model_id"], health["dimension"]) == (r.COHERE_MODEL_ID, 256)
    # A dimension the model lacks stops local mode with a message naming the choices
    with pytest.raises(RuntimeError, match="256, 384, 1024, 3072-dimensional vectors, not 512"):
        start_local_mode("--model-id", r.NOVA_MODEL_ID, "--dimension", "512")
