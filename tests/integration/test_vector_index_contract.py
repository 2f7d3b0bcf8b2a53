"""One contract for every ``VectorIndex`` adapter: the same cases and the same expected
results for the embedded tier (in memory, over an empty catalog) and S3 Vectors (the
real adapter and boto3 client on the project's emulator)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from fakes.catalog import EmptyCatalogFeed
from imagesearch.index.embedded import EmbeddedIndex
from imagesearch.local.s3vectors_emulator import S3VectorsEmulator
from imagesearch.ports import QueryFilters, VectorEntry, VectorIndex
from tests.support.s3vectors import s3vectors_index

DIM = 4
ALL = QueryFilters()


@pytest.fixture(scope="module")
def emulator() -> Iterator[S3VectorsEmulator]:
    with S3VectorsEmulator() as running:
        yield running


def _embedded(_: S3VectorsEmulator, dimension: int) -> VectorIndex:
    return EmbeddedIndex(
        EmptyCatalogFeed(), model_id="m", dimension=dimension, refresh_interval=3600.0
    )


def _s3vectors(emulator: S3VectorsEmulator, dimension: int) -> VectorIndex:
    return s3vectors_index(emulator, dimension)


@pytest.fixture(params=[_embedded, _s3vectors], ids=["embedded", "s3vectors"])
def make_index(
    request: pytest.FixtureRequest, emulator: S3VectorsEmulator
) -> Callable[[int], VectorIndex]:
    factory = request.param
    return lambda dimension=DIM: factory(emulator, dimension)


@pytest.fixture
def index(make_index: Callable[..., VectorIndex]) -> VectorIndex:
    return make_index()


def vec(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def entry(
    image_id: str, key: str, vector: np.ndarray, content_type: str | None = "image/jpeg"
) -> VectorEntry:
    return VectorEntry(image_id, key, content_type, vector)


def ids(results: list) -> list[str]:
    return [hit.image_id for hit in results]


@pytest.fixture
def gallery(index: VectorIndex) -> VectorIndex:
    """Six images in three folders, two types; scores against X fall from a to f."""
    index.upsert(
        [
            entry("a", "uploads/cats/a.jpg", vec(1, 0, 0, 0)),
            entry("b", "uploads/cats/b.png", vec(1, 0.2, 0, 0), "image/png"),
            entry("c", "uploads/cars/c.jpg", vec(1, 0.5, 0, 0)),
            entry("d", "uploads/cats/kittens/d.jpg", vec(1, 1, 0, 0)),
            entry("e", "uploads/dogs/e.png", vec(0, 1, 0, 0), "image/png"),
            entry("f", "uploads/f.jpg", vec(-1, 0.1, 0, 0), None),
        ]
    )
    return index


X = vec(1, 0, 0, 0)


def test_an_empty_index_answers_nothing(index: VectorIndex) -> None:
    assert index.query(X, 10, ALL) == []
    assert index.get_vectors(["a"]) == {}
    assert index.count() == 0
    index.delete(["never-stored"])
    assert index.count() == 0


def test_results_are_best_first_with_cosine_scores(gallery: VectorIndex) -> None:
    results = gallery.query(X, 10, ALL)
    assert ids(results) == ["a", "b", "c", "d", "e", "f"]
    expected = [1.0, 1 / np.sqrt(1.04), 1 / np.sqrt(1.25), 1 / np.sqrt(2), 0.0, -1 / np.sqrt(1.01)]
    assert [hit.score for hit in results] == pytest.approx(expected, abs=1e-5)
    assert gallery.count() == 6


def test_top_k_bounds(gallery: VectorIndex) -> None:
    assert ids(gallery.query(X, 2, ALL)) == ["a", "b"]
    assert len(gallery.query(X, 100, ALL)) == 6
    for bad in (0, -1, 101):
        with pytest.raises(ValueError, match="top_k"):
            gallery.query(X, bad, ALL)


def test_equal_scores_are_ordered_by_id(index: VectorIndex) -> None:
    index.upsert(
        [
            entry("t3", "uploads/t3.jpg", vec(0, 0, 1, 0)),
            entry("t1", "uploads/t1.jpg", vec(0, 0, 2, 0)),
            entry("t2", "uploads/t2.jpg", vec(0, 0, 3, 0)),
            entry("z", "uploads/z.jpg", vec(0, 0, 0, 1)),
        ]
    )
    assert ids(index.query(vec(0, 0, 1, 0), 10, ALL)) == ["t1", "t2", "t3", "z"]
    assert ids(index.query(vec(0, 0, 1, 0), 2, ALL)) == ["t1", "t2"]


def test_folder_prefix(gallery: VectorIndex) -> None:
    assert ids(gallery.query(X, 10, QueryFilters(prefix="uploads/cats/"))) == ["a", "b", "d"]
    assert ids(gallery.query(X, 10, QueryFilters(prefix="uploads/cats/kittens/"))) == ["d"]
    assert ids(gallery.query(X, 10, QueryFilters(prefix="uploads/"))) == list("abcdef")
    assert gallery.query(X, 10, QueryFilters(prefix="uploads/birds/")) == []


def test_prefix_ending_mid_name(gallery: VectorIndex) -> None:
    # "uploads/ca" covers cats/ and cars/; "uploads/cats/b" one file; "upl" everything.
    assert ids(gallery.query(X, 10, QueryFilters(prefix="uploads/ca"))) == ["a", "b", "c", "d"]
    assert ids(gallery.query(X, 10, QueryFilters(prefix="uploads/cats/b"))) == ["b"]
    assert ids(gallery.query(X, 2, QueryFilters(prefix="upl"))) == ["a", "b"]
    assert gallery.query(X, 10, QueryFilters(prefix="uploads/cow")) == []


def test_content_types(gallery: VectorIndex) -> None:
    png = QueryFilters(content_types=("image/png",))
    assert ids(gallery.query(X, 10, png)) == ["b", "e"]
    both = QueryFilters(content_types=("image/png", "image/jpeg"))
    assert ids(gallery.query(X, 10, both)) == ["a", "b", "c", "d", "e"]
    assert gallery.query(X, 10, QueryFilters(content_types=("image/webp",))) == []
    assert gallery.query(X, 10, QueryFilters(content_types=())) == []


def test_min_score_and_excluded_ids(gallery: VectorIndex) -> None:
    assert ids(gallery.query(X, 10, QueryFilters(min_score=0.75))) == ["a", "b", "c"]
    assert ids(gallery.query(X, 2, QueryFilters(exclude_ids=("a", "zz")))) == ["b", "c"]
    assert gallery.query(X, 10, QueryFilters(min_score=1.01)) == []


def test_filters_combine(gallery: VectorIndex) -> None:
    filters = QueryFilters(
        prefix="uploads/cats/", content_types=("image/jpeg",), min_score=0.5, exclude_ids=("a",)
    )
    assert ids(gallery.query(X, 10, filters)) == ["d"]
    mid_name = QueryFilters(prefix="uploads/ca", content_types=("image/jpeg",))
    assert ids(gallery.query(X, 10, mid_name)) == ["a", "c", "d"]


def test_deletes(gallery: VectorIndex) -> None:
    gallery.delete(["a", "e", "unknown"])
    assert ids(gallery.query(X, 10, ALL)) == ["b", "c", "d", "f"]
    assert gallery.get_vectors(["a", "b"]).keys() == {"b"}
    assert gallery.count() == 4


def test_overwrites_replace_vector_key_and_type(gallery: VectorIndex) -> None:
    gallery.upsert([entry("a", "uploads/dogs/a.png", vec(0, 1, 0, 0), "image/png")])
    assert gallery.count() == 6
    assert ids(gallery.query(X, 1, ALL)) == ["b"]
    assert ids(gallery.query(vec(0, 1, 0, 0), 10, QueryFilters(prefix="uploads/dogs/"))) == [
        "a",
        "e",
    ]
    assert "a" not in ids(gallery.query(X, 10, QueryFilters(prefix="uploads/cats/")))
    assert ids(gallery.query(X, 10, QueryFilters(content_types=("image/png",))))[-1] == "e"


def test_stored_vectors_are_unit_vectors(gallery: VectorIndex) -> None:
    found = gallery.get_vectors(["d", "missing"])
    assert found.keys() == {"d"}
    assert found["d"] == pytest.approx(vec(1, 1, 0, 0) / np.sqrt(2), abs=1e-6)


def test_dimension_mismatch(gallery: VectorIndex) -> None:
    with pytest.raises(ValueError, match="dimensions"):
        gallery.query(vec(1, 0, 0), 10, ALL)
    with pytest.raises(ValueError, match="dimensions"):
        gallery.upsert([entry("x", "uploads/x.jpg", vec(1, 0, 0, 0, 0))])
    with pytest.raises(ValueError, match="norm"):
        gallery.query(vec(0, 0, 0, 0), 10, ALL)
    assert gallery.count() == 6


def test_batches_past_the_service_limits(index: VectorIndex) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(1201, DIM)).astype(np.float32)
    index.upsert(
        [entry(f"i{n:04d}", f"uploads/n/{n}.jpg", vector) for n, vector in enumerate(vectors)]
    )
    assert index.count() == 1201
    assert len(index.get_vectors([f"i{n:04d}" for n in range(250)])) == 250
    best = ids(index.query(vectors[5], 3, ALL))
    assert best[0] == "i0005"
    index.delete([f"i{n:04d}" for n in range(1100)])
    assert index.count() == 101


def test_deep_keys(index: VectorIndex) -> None:
    deep = "uploads/" + "d/" * 100
    index.upsert([entry("deep", deep + "x.jpg", X), entry("flat", "uploads/x.jpg", X)])
    assert ids(index.query(X, 10, QueryFilters(prefix=deep))) == ["deep"]
    assert ids(index.query(X, 10, QueryFilters(prefix="uploads/d/d/"))) == ["deep"]
    assert ids(index.query(X, 10, ALL)) == ["deep", "flat"]
