"""The composition root wires the scale tier from settings (no network: clients injected)."""

from __future__ import annotations

import pytest

from imagesearch import resources as r
from imagesearch.composition import Clients, build_vector_index, build_vector_sync
from imagesearch.index.s3vectors import S3VectorsIndex
from imagesearch.index.sync import ReadAfterWriteSync
from imagesearch.settings import IngestSettings, SearchSettings, SettingsError, load_settings

ENV = {
    r.ENV_BUCKET: "images",
    r.ENV_TABLE: "images-table",
    r.ENV_VECTOR_STORE: "s3vectors",
    r.ENV_VECTOR_BUCKET: "images-vectors",
    r.ENV_EMBEDDING_DIMENSION: "256",
}


class NoClient:
    """Stands in for the boto3 clients; any call would be a test bug."""


def test_s3vectors_index_named_after_model_and_dimension() -> None:
    settings = load_settings(SearchSettings, ENV)
    index = build_vector_index(settings, catalog=None, clients=Clients(s3vectors=NoClient()))  # type: ignore[arg-type]
    assert isinstance(index, S3VectorsIndex)
    assert index.dimension == 256
    assert index._index == "amazon-titan-embed-image-v1-256"
    named = load_settings(SearchSettings, {**ENV, r.ENV_VECTOR_INDEX: "my-index"})
    assert build_vector_index(named, None, Clients(s3vectors=NoClient()))._index == "my-index"  # type: ignore[arg-type, attr-defined]


def test_ingest_syncs_the_index_read_after_write() -> None:
    settings = load_settings(IngestSettings, ENV)
    sync = build_vector_sync(settings, None, Clients(s3vectors=NoClient()))  # type: ignore[arg-type]
    assert isinstance(sync, ReadAfterWriteSync)


def test_the_vector_bucket_is_required() -> None:
    settings = load_settings(
        SearchSettings, {k: v for k, v in ENV.items() if k != r.ENV_VECTOR_BUCKET}
    )
    with pytest.raises(SettingsError, match="vector bucket"):
        build_vector_index(settings, None, Clients(s3vectors=NoClient()))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "dimension", "expected"),
    [
        ("amazon.titan-embed-image-v1", 1024, "amazon-titan-embed-image-v1-1024"),
        ("clip-ViT-B-32", 512, "clip-vit-b-32-512"),
    ],
)
def test_index_names_are_valid_and_differ_per_model(
    model: str, dimension: int, expected: str
) -> None:
    assert r.vector_index_name(model, dimension) == expected
    long = r.vector_index_name("vendor." + "x" * 90, 256)
    assert 3 <= len(long) <= 63 and long.endswith("-256")
    assert long != r.vector_index_name("vendor." + "x" * 91, 256)


def test_make_synth_passes_cdk_args_like_deploy() -> None:
    # `make synth CDK_ARGS="-c vectorStore=s3vectors"` must synthesize the scale tier.
    from pathlib import Path

    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    recipes = {
        target: body
        for target, body in (
            (block.split(":", 1)[0], block) for block in makefile.split("\n\n") if ":" in block
        )
    }
    synth = next(body for target, body in recipes.items() if target.strip() == "synth")
    deploy = next(body for target, body in recipes.items() if target.strip() == "deploy")
    assert "$(CDK) synth" in synth and "$(CDK_ARGS)" in synth
    assert "$(CDK_ARGS)" in deploy
