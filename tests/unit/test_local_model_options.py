"""``imagesearch local --model-id/--dimension`` (env MODEL_ID, EMBEDDING_DIMENSION):
parsing, precedence, and local mode's check of the pair against the model table."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from imagesearch import resources as r
from imagesearch.cli.main import build_parser, run
from imagesearch.local.app import LocalModeError, embedder_settings


def parse(argv: list[str], environ: dict[str, str]) -> Any:
    return build_parser(environ).parse_args(argv)


def test_model_options_from_flags_then_environment_then_defaults() -> None:
    assert (parse(["local"], {}).model_id, parse(["local"], {}).dimension) == (None, None)
    env = {"MODEL_ID": r.NOVA_MODEL_ID, "EMBEDDING_DIMENSION": "3072"}
    from_env = parse(["local"], env)
    assert (from_env.model_id, from_env.dimension) == (r.NOVA_MODEL_ID, 3072)
    flags = parse(["local", "--model-id", r.COHERE_MODEL_ID, "--dimension", "512"], env)
    assert (flags.model_id, flags.dimension) == (r.COHERE_MODEL_ID, 512)


def test_a_dimension_that_is_not_a_number_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(["local"], environ={"EMBEDDING_DIMENSION": "big"}) == 2
    assert "not a dimension: 'big'" in capsys.readouterr().err


def test_local_passes_the_model_choice_to_local_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    fake = types.ModuleType("imagesearch.local")
    fake.run = lambda **options: calls.append(options) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "imagesearch.local", fake)
    env = {"MODEL_ID": r.COHERE_MODEL_ID, "EMBEDDING_DIMENSION": "1536"}
    assert run(["local"], environ=env) == 0
    assert (calls[0]["model_id"], calls[0]["dimension"]) == (r.COHERE_MODEL_ID, 1536)


@pytest.mark.parametrize(
    ("model_id", "dimension", "expected"),
    [
        (None, None, (r.TITAN_MODEL_ID, 1024)),
        (r.NOVA_MODEL_ID, None, (r.NOVA_MODEL_ID, 1024)),
        (r.NOVA_MODEL_ID, 3072, (r.NOVA_MODEL_ID, 3072)),
        (f"eu.{r.COHERE_MODEL_ID}", 256, (f"eu.{r.COHERE_MODEL_ID}", 256)),
    ],
)
def test_bedrock_model_choices(
    model_id: str | None, dimension: int | None, expected: tuple[str, int]
) -> None:
    assert embedder_settings("bedrock", model_id, dimension) == expected


@pytest.mark.parametrize(
    ("embedder", "model_id", "dimension", "message"),
    [
        ("bedrock", "amazon.titan-embed-text-v2:0", None, "unknown --model-id"),
        ("bedrock", r.COHERE_MODEL_ID, 384, "256, 512, 1024, 1536-dimensional vectors, not 384"),
        ("clip", r.NOVA_MODEL_ID, None, "apply to --embedder bedrock only"),
    ],
)
def test_bad_model_choices_stop_local_mode_with_a_clear_message(
    embedder: str, model_id: str, dimension: int | None, message: str
) -> None:
    with pytest.raises(LocalModeError, match=message):
        embedder_settings(embedder, model_id, dimension)
