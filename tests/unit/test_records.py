"""Record identity, vector codec and event ordering tokens."""

from __future__ import annotations

import numpy as np
import pytest

from imagesearch.ingest import MAX_CAPTION_EMBED_CHARS, caption_for_embedding
from imagesearch.records import (
    decode_vector,
    decode_vectors,
    encode_vector,
    image_id_for_key,
    is_valid_image_id,
    ordering_token,
)


def test_image_id_is_stable_hex_and_differs_per_key() -> None:
    a = image_id_for_key("uploads/a.jpg")
    assert a == image_id_for_key("uploads/a.jpg")
    assert a != image_id_for_key("uploads/b.jpg")
    assert is_valid_image_id(a)
    assert not is_valid_image_id("../../etc/passwd")
    assert not is_valid_image_id(a.upper())


def test_vector_codec_is_little_endian_float32() -> None:
    vector = np.array([1.0, -0.5, 0.25], dtype=np.float32)
    data = encode_vector(vector)
    assert data == b"\x00\x00\x80?\x00\x00\x00\xbf\x00\x00\x80>"
    np.testing.assert_array_equal(decode_vector(data), vector)


def test_decode_many_vectors_into_one_matrix() -> None:
    rows = np.arange(12, dtype=np.float32).reshape(3, 4)
    matrix = decode_vectors([encode_vector(row) for row in rows], 4)
    np.testing.assert_array_equal(matrix, rows)
    assert decode_vectors([], 4).shape == (0, 4)


@pytest.mark.parametrize(
    ("older", "newer"),
    [("0A", "0B"), ("FF", "0100"), ("0055AED6DCD9028C0A", "0055AED6DCD9028C0B"), ("9", "a")],
)
def test_sequencer_tokens_order_like_hex_numbers(older: str, newer: str) -> None:
    assert ordering_token(older, None) < ordering_token(newer, None)


def test_event_time_is_the_fallback_without_sequencer() -> None:
    earlier = ordering_token(None, "2026-11-22T10:00:00.001Z")
    later = ordering_token(None, "2026-11-22T10:00:00.002Z")
    assert earlier < later


def test_malformed_sequencer_is_refused() -> None:
    with pytest.raises(ValueError, match="sequencer"):
        ordering_token("not-hex!", None)


def test_caption_is_cut_at_a_word_boundary() -> None:
    caption = "word " * 300
    cut = caption_for_embedding(caption)
    assert len(cut) <= MAX_CAPTION_EMBED_CHARS
    assert cut.endswith("word")
    assert caption_for_embedding("  a   red\nshoe ") == "a red shoe"
