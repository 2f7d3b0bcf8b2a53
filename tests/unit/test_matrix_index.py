"""MatrixIndex: exact cosine top-k with filters, against hand-made and brute-force answers."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from imagesearch.index.matrix import MatrixIndex
from imagesearch.ports import MAX_TOP_K, QueryFilters, ScoredId

JPEG, PNG, WEBP = "image/jpeg", "image/png", "image/webp"


def unit(values: list[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float32)
    return array / np.linalg.norm(array)


@pytest.fixture
def small() -> MatrixIndex:
    """Four items in 3-d with known cosines to the query (1, 0, 0)."""
    index = MatrixIndex(3)
    index.upsert("a", "uploads/cats/a.jpg", JPEG, np.array([1, 0, 0], dtype=np.float32))
    index.upsert("b", "uploads/cats/b.png", PNG, np.array([1, 1, 0], dtype=np.float32))
    index.upsert("c", "uploads/dogs/c.jpg", JPEG, np.array([0, 3, 0], dtype=np.float32))
    index.upsert("d", "uploads/catalog/d.jpg", None, np.array([-2, 0, 0], dtype=np.float32))
    return index


def ids_of(results: list[ScoredId]) -> list[str]:
    return [result.image_id for result in results]


# -- ranking ---------------------------------------------------------------------


def test_ranks_by_cosine_with_exact_scores(small: MatrixIndex) -> None:
    # When querying along the x axis
    results = small.query(np.array([1, 0, 0], dtype=np.float32), 4)

    # Then the order and the scores are the cosines, as Python floats
    assert ids_of(results) == ["a", "b", "c", "d"]
    assert [r.score for r in results] == pytest.approx([1.0, math.sqrt(0.5), 0.0, -1.0], abs=1e-6)
    assert all(type(r.score) is float for r in results)


def test_query_vector_is_normalised(small: MatrixIndex) -> None:
    scaled = small.query(np.array([7, 0, 0], dtype=np.float32), 4)
    assert scaled == small.query(np.array([1, 0, 0], dtype=np.float32), 4)


def test_stored_vectors_are_normalised(small: MatrixIndex) -> None:
    vector = small.vector("c")
    assert vector is not None
    np.testing.assert_allclose(vector, [0, 1, 0], atol=1e-7)
    assert small.vector("zzz") is None


def test_top_k_cuts_and_larger_top_k_returns_everything(small: MatrixIndex) -> None:
    query = np.array([0, 1, 0], dtype=np.float32)
    assert ids_of(small.query(query, 2)) == ["c", "b"]
    everything = small.query(query, MAX_TOP_K)
    assert len(everything) == 4
    assert ids_of(everything)[:2] == ["c", "b"]


@pytest.mark.parametrize("top_k", [0, -1, MAX_TOP_K + 1])
def test_top_k_out_of_range_is_refused(small: MatrixIndex, top_k: int) -> None:
    with pytest.raises(ValueError, match="top_k"):
        small.query(np.array([1, 0, 0], dtype=np.float32), top_k)


@pytest.mark.parametrize(
    ("vector", "message"),
    [([1.0, 0.0], "dimensions"), ([0.0, 0.0, 0.0], "norm"), ([np.nan, 1.0, 0.0], "norm")],
)
def test_bad_vectors_are_refused(small: MatrixIndex, vector: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        small.query(np.array(vector, dtype=np.float32), 3)
    with pytest.raises(ValueError, match=message):
        small.upsert("e", "uploads/e.jpg", JPEG, np.array(vector, dtype=np.float32))
    assert len(small) == 4


def test_empty_index_returns_nothing() -> None:
    assert MatrixIndex(3).query(np.array([1, 0, 0], dtype=np.float32), 5) == []


def test_ties_are_ordered_by_id_also_at_the_top_k_boundary() -> None:
    # Given five identical vectors inserted in a shuffled order, and a better one
    index = MatrixIndex(2)
    for image_id in ["t3", "t1", "t5", "t2", "t4"]:
        index.upsert(image_id, f"k/{image_id}", JPEG, np.array([1, 1], dtype=np.float32))
    index.upsert("best", "k/best", JPEG, np.array([1, 0], dtype=np.float32))

    # When the cut falls inside the tie, the smallest ids win, in id order
    results = index.query(np.array([1, 0], dtype=np.float32), 3)
    assert ids_of(results) == ["best", "t1", "t2"]
    assert ids_of(index.query(np.array([0, 1], dtype=np.float32), 5)) == [
        "t1",
        "t2",
        "t3",
        "t4",
        "t5",
    ]


# -- filters ---------------------------------------------------------------------


def test_prefix_filter_matches_only_keys_that_start_with_it(small: MatrixIndex) -> None:
    query = np.array([1, 0, 0], dtype=np.float32)
    # "uploads/cat" matches cats/ and catalog/, "uploads/cats/" only cats/
    assert ids_of(small.query(query, 10, QueryFilters(prefix="uploads/cat"))) == ["a", "b", "d"]
    assert ids_of(small.query(query, 10, QueryFilters(prefix="uploads/cats/"))) == ["a", "b"]
    assert small.query(query, 10, QueryFilters(prefix="uploads/zebras/")) == []
    assert len(small.query(query, 10, QueryFilters(prefix=""))) == 4


def test_prefix_ending_in_the_largest_code_point() -> None:
    top = chr(0x10FFFF)
    index = MatrixIndex(2)
    index.upsert("in", f"a{top}b", JPEG, np.array([1, 0], dtype=np.float32))
    index.upsert("out", "b", JPEG, np.array([1, 0], dtype=np.float32))
    index.upsert("before", "a", JPEG, np.array([1, 0], dtype=np.float32))
    query = np.array([1, 0], dtype=np.float32)
    assert ids_of(index.query(query, 5, QueryFilters(prefix=f"a{top}"))) == ["in"]
    assert ids_of(index.query(query, 5, QueryFilters(prefix=top))) == []


def test_content_type_filter(small: MatrixIndex) -> None:
    query = np.array([1, 0, 0], dtype=np.float32)
    assert ids_of(small.query(query, 10, QueryFilters(content_types=(JPEG,)))) == ["a", "c"]
    assert ids_of(small.query(query, 10, QueryFilters(content_types=(PNG, JPEG)))) == [
        "a",
        "b",
        "c",
    ]
    # A type no item has, and an empty list, match nothing (the item without a type neither)
    assert small.query(query, 10, QueryFilters(content_types=(WEBP,))) == []
    assert small.query(query, 10, QueryFilters(content_types=())) == []


def test_prefix_and_content_type_combine(small: MatrixIndex) -> None:
    filters = QueryFilters(prefix="uploads/cat", content_types=(PNG,))
    assert ids_of(small.query(np.array([1, 0, 0], dtype=np.float32), 10, filters)) == ["b"]


def test_min_score_is_inclusive(small: MatrixIndex) -> None:
    query = np.array([1, 0, 0], dtype=np.float32)
    assert ids_of(small.query(query, 10, QueryFilters(min_score=0.0))) == ["a", "b", "c"]
    assert ids_of(small.query(query, 10, QueryFilters(min_score=0.71))) == ["a"]
    assert small.query(query, 10, QueryFilters(min_score=1.01)) == []


def test_exclude_ids_with_and_without_other_filters(small: MatrixIndex) -> None:
    query = np.array([1, 0, 0], dtype=np.float32)
    excluded = QueryFilters(exclude_ids=("a", "unknown"))
    assert ids_of(small.query(query, 10, excluded)) == ["b", "c", "d"]
    both = QueryFilters(prefix="uploads/cats/", exclude_ids=("a",))
    assert ids_of(small.query(query, 10, both)) == ["b"]
    # The query image itself is not excluded unless the caller asks
    assert ids_of(small.query(small.vector("c"), 1)) == ["c"]


def test_exclusion_does_not_shrink_top_k_below_what_is_available(small: MatrixIndex) -> None:
    results = small.query(
        np.array([1, 0, 0], dtype=np.float32), 2, QueryFilters(exclude_ids=("a",))
    )
    assert ids_of(results) == ["b", "c"]


# -- mutation --------------------------------------------------------------------


def test_upsert_replaces_vector_type_and_key(small: MatrixIndex) -> None:
    # When "a" changes its vector, type and key
    small.upsert("a", "uploads/dogs/a.webp", WEBP, np.array([0, 0, 5], dtype=np.float32))

    # Then it keeps one row and every filter sees the new values
    assert len(small) == 4
    np.testing.assert_allclose(small.vector("a"), [0, 0, 1], atol=1e-7)
    query = np.array([0, 0, 1], dtype=np.float32)
    assert ids_of(small.query(query, 1)) == ["a"]
    assert ids_of(small.query(query, 10, QueryFilters(content_types=(WEBP,)))) == ["a"]
    assert "a" in ids_of(small.query(query, 10, QueryFilters(prefix="uploads/dogs/")))
    assert "a" not in ids_of(small.query(query, 10, QueryFilters(prefix="uploads/cats/")))


def test_remove_moves_the_last_row_and_keeps_everything_consistent(small: MatrixIndex) -> None:
    before = {image_id: small.vector(image_id) for image_id in "abcd"}
    # Prime the key order so that removal has to patch it
    small.query(np.array([1, 0, 0], dtype=np.float32), 1, QueryFilters(prefix="uploads/"))

    # When a middle row goes ("d", the last row, takes its place)
    assert small.remove("b") is True

    # Then the others keep their vectors, types and keys
    assert len(small) == 3
    assert "b" not in small
    assert small.vector("b") is None
    for image_id in "acd":
        np.testing.assert_array_equal(small.vector(image_id), before[image_id])
    query = np.array([1, 0, 0], dtype=np.float32)
    assert ids_of(small.query(query, 10)) == ["a", "c", "d"]
    assert ids_of(small.query(query, 10, QueryFilters(prefix="uploads/catalog/"))) == ["d"]
    assert ids_of(small.query(query, 10, QueryFilters(content_types=(JPEG,)))) == ["a", "c"]
    assert small.remove("b") is False

    # And removing everything leaves an empty, usable index
    for image_id in "acd":
        assert small.remove(image_id)
    assert len(small) == 0
    assert small.query(query, 3, QueryFilters(prefix="uploads/")) == []
    small.upsert("n", "uploads/n.jpg", JPEG, query)
    assert ids_of(small.query(query, 3, QueryFilters(prefix="uploads/"))) == ["n"]


def test_growth_keeps_every_vector() -> None:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((1000, 8)).astype(np.float32)
    index = MatrixIndex(8)
    for n, vector in enumerate(vectors):
        index.upsert(f"id{n:04d}", f"k/{n:04d}", JPEG, vector)
    assert len(index) == 1000
    for n in (0, 63, 64, 65, 500, 999):
        np.testing.assert_allclose(
            index.vector(f"id{n:04d}"), vectors[n] / np.linalg.norm(vectors[n]), rtol=1e-6
        )
        assert index.query(vectors[n], 1)[0].image_id == f"id{n:04d}"


def test_build_normalises_and_accepts_further_changes() -> None:
    index = MatrixIndex.build(
        ["x", "y"], ["k/x", "k/y"], [JPEG, None], np.array([[3, 4], [0, 2]], dtype=np.float32)
    )
    assert len(index) == 2
    np.testing.assert_allclose(index.vector("x"), [0.6, 0.8], atol=1e-7)
    index.upsert("z", "k/z", PNG, np.array([1, 0], dtype=np.float32))
    assert index.remove("x")
    assert ids_of(index.query(np.array([1, 0], dtype=np.float32), 5)) == ["z", "y"]


@pytest.mark.parametrize(
    ("ids", "keys", "types", "rows", "message"),
    [
        (["x", "x"], ["a", "b"], [None, None], [[1, 0], [0, 1]], "duplicate"),
        (["x"], ["a", "b"], [None], [[1, 0]], "differ"),
        (["x", "y"], ["a", "b"], [None, None], [[1, 0], [0, 0]], "norm"),
        (["x"], ["a"], [None], [1, 0], "two-dimensional"),
    ],
)
def test_build_refuses_inconsistent_input(
    ids: list[str], keys: list[str], types: list[str | None], rows: list, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        MatrixIndex.build(ids, keys, types, np.array(rows, dtype=np.float32))


# -- against a brute-force reference ---------------------------------------------


class Reference:
    """The obvious implementation: a dict and a Python loop over every item."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[str, str | None, np.ndarray]] = {}

    def upsert(self, image_id: str, key: str, content_type: str | None, vector: np.ndarray) -> None:
        self.items[image_id] = (key, content_type, vector / np.linalg.norm(vector))

    def remove(self, image_id: str) -> None:
        self.items.pop(image_id, None)

    def scores(self, query: np.ndarray, filters: QueryFilters) -> dict[str, float]:
        query = query / np.linalg.norm(query)
        found = {}
        for image_id, (key, content_type, vector) in self.items.items():
            if filters.prefix and not key.startswith(filters.prefix):
                continue
            if filters.content_types is not None and content_type not in filters.content_types:
                continue
            if image_id in filters.exclude_ids:
                continue
            score = float(np.dot(vector.astype(np.float64), query.astype(np.float64)))
            if filters.min_score is not None and score < filters.min_score:
                continue
            found[image_id] = score
        return found


def assert_matches_reference(
    results: list[ScoredId], reference: dict[str, float], top_k: int
) -> None:
    tolerance = 1e-5
    expected = sorted(reference.items(), key=lambda pair: (-pair[1], pair[0]))[:top_k]
    assert len(results) == len(expected)
    returned = ids_of(results)
    assert len(set(returned)) == len(returned)
    for result, (_, score) in zip(results, expected, strict=True):
        # Each position has the right score, and each returned id truly has its score
        assert result.score == pytest.approx(score, abs=tolerance)
        assert reference[result.image_id] == pytest.approx(result.score, abs=tolerance)
    if results:
        # Nothing left out scores better than the last one returned
        left_out = set(reference) - set(returned)
        assert all(reference[i] <= results[-1].score + tolerance for i in left_out)
    # Where no two scores are within float error of each other, the order is exact
    scores = sorted(reference.values(), reverse=True)[: top_k + 1]
    if all(a - b > 1e-4 for a, b in itertools.pairwise(scores)):
        assert returned == [image_id for image_id, _ in expected]


@pytest.mark.parametrize("seed", range(6))
def test_random_operations_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    dimension = int(rng.integers(2, 24))
    types = [JPEG, PNG, WEBP, None]
    index, reference = MatrixIndex(dimension), Reference()

    def random_key() -> str:
        # Nested prefixes of very different selectivity: both the gather and the
        # mask paths of the index get exercised.
        return f"u/{pick.choice('aab')}/{pick.choice('xyz')}/{pick.randrange(40)}"

    def random_filters() -> QueryFilters:
        present = list(reference.items)
        return QueryFilters(
            prefix=pick.choice([None, "u/", "u/a/", "u/b/", "u/a/x/", "u/b/z/1", "v/"]),
            content_types=pick.choice([None, (JPEG,), (PNG, WEBP), (WEBP,)]),
            min_score=pick.choice([None, None, -0.2, 0.1, 0.3]),
            exclude_ids=tuple(pick.sample(present, min(len(present), pick.randrange(3)))),
        )

    for _ in range(12):
        # A burst of changes, sometimes large enough to drop the patched key order
        for _ in range(pick.choice([1, 5, 40, 150])):
            roll = pick.random()
            if roll < 0.6 or not reference.items:
                image_id = f"id{pick.randrange(400):03d}"
                key = random_key()
                content_type = pick.choice(types)
                vector = rng.standard_normal(dimension).astype(np.float32) * pick.uniform(0.1, 9)
                index.upsert(image_id, key, content_type, vector)
                reference.upsert(image_id, key, content_type, vector)
            else:
                image_id = pick.choice(list(reference.items))
                assert index.remove(image_id)
                reference.remove(image_id)
        assert len(index) == len(reference.items)
        for _ in range(8):
            query = rng.standard_normal(dimension).astype(np.float32)
            top_k = pick.choice([1, 3, 10, MAX_TOP_K])
            filters = random_filters()
            results = index.query(query, top_k, filters)
            assert_matches_reference(results, reference.scores(query, filters), top_k)
