"""The composition root wires the embedded tier's refresh from settings."""

from __future__ import annotations

from imagesearch import resources as r
from imagesearch.composition import build_vector_index
from imagesearch.index.embedded import EmbeddedIndex
from imagesearch.settings import IngestSettings, SearchSettings, load_settings

ENV = {r.ENV_BUCKET: "images", r.ENV_TABLE: "images-table"}


def test_lambda_refreshes_inline_with_the_default_overlap() -> None:
    index = build_vector_index(load_settings(SearchSettings, ENV), catalog=None)  # type: ignore[arg-type]

    assert isinstance(index, EmbeddedIndex)
    assert index._overlap == r.INDEX_REFRESH_OVERLAP_SECONDS == 30.0
    assert index._background is False


def test_local_mode_settings_refresh_in_the_background_with_a_short_overlap() -> None:
    env = {
        **ENV,
        r.ENV_INDEX_REFRESH_OVERLAP: "10",
        r.ENV_INDEX_REFRESH_BACKGROUND: "true",
        r.ENV_INDEX_REFRESH_SECONDS: "2",
    }
    index = build_vector_index(load_settings(SearchSettings, env), catalog=None)  # type: ignore[arg-type]

    assert isinstance(index, EmbeddedIndex)
    assert (index._overlap, index._background, index._refresh_interval) == (10.0, True, 2.0)


def test_ingest_builds_no_background_refresher() -> None:
    env = {**ENV, r.ENV_INDEX_REFRESH_BACKGROUND: "true"}
    index = build_vector_index(load_settings(IngestSettings, env), catalog=None)  # type: ignore[arg-type]

    assert isinstance(index, EmbeddedIndex)
    assert index._background is False
