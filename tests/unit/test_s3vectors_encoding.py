"""The PutVectors fast path: vector data written as JSON text by numpy (exact float32
round trip, fixed width) and spliced into the body botocore builds for the rest."""

from __future__ import annotations

import json
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ParamValidationError

from imagesearch.index.s3vectors import (
    ENCODED_DATA_PARAM,
    FLOAT_TEXT_BYTES,
    MAX_PAYLOAD_BYTES,
    S3VectorsIndex,
    encode_float32_rows,
    metadata_for,
)
from imagesearch.ports import VectorEntry


def decoded(rows: list[bytes]) -> np.ndarray:
    return np.array([json.loads(row) for row in rows], dtype=np.float64).astype(np.float32)


def test_every_float32_survives_the_text_exactly() -> None:
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**32, size=400_000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    values = values[np.isfinite(values)]
    edges = np.array(
        [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1,
            1e-45,
            -1e-45,
            1.1754944e-38,
            3.4028235e38,
            -3.4028235e38,
            9.9999999e-1,
            9.99999999e9,
            1e10,
            1e-10,
            5e-324,
        ],
        dtype=np.float32,
    )
    values = np.concatenate([edges, values])
    values = values[: values.size // 50 * 50].reshape(-1, 50)
    rows = encode_float32_rows(values)
    assert np.array_equal(decoded(rows).view(np.uint32), values.view(np.uint32))
    assert {len(row) for row in rows} == {50 * FLOAT_TEXT_BYTES + 1}
    assert rows[0].startswith(b"[ 0.00000000e+00,-0.00000000e+00, 1.00000000e+00,-1.00000000e+00,")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        encode_float32_rows(np.array([[1.0, bad]], dtype=np.float32))


def test_one_vector_per_row() -> None:
    with pytest.raises(ValueError, match="row"):
        encode_float32_rows(np.ones(3, dtype=np.float32))


class Recorder:
    """A boto3 s3vectors client whose PutVectors requests are answered here (the
    bytes botocore would send are kept)."""

    def __init__(self) -> None:
        self.client = boto3.client(
            "s3vectors",
            region_name="us-east-1",
            endpoint_url="http://127.0.0.1:9",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        self.bodies: list[bytes] = []
        self.client.meta.events.register("before-send.s3vectors.PutVectors", self.answer)

    def answer(self, request: Any, **_: Any) -> AWSResponse:
        self.bodies.append(bytes(request.body))

        class Raw:
            def stream(self, **_: Any) -> Any:
                yield b"{}"

        return AWSResponse(request.url, 200, {"Content-Type": "application/json"}, Raw())


def entries(count: int, dimension: int) -> list[VectorEntry]:
    rng = np.random.default_rng(1)
    return [
        VectorEntry(f"id{n}", f"uploads/é/{n}.jpg", "image/jpeg" if n % 2 else None, vector)
        for n, vector in enumerate(rng.standard_normal((count, dimension), dtype=np.float32))
    ]


def test_the_body_is_the_request_botocore_would_send_with_the_data_in_it() -> None:
    recorder = Recorder()
    index = S3VectorsIndex(recorder.client, bucket="vb-1", index="ix-1", dimension=8)
    written = entries(3, 8)
    index.upsert(written)
    (body,) = recorder.bodies
    sent = json.loads(body)
    assert sent["vectorBucketName"] == "vb-1" and sent["indexName"] == "ix-1"
    assert [v["key"] for v in sent["vectors"]] == ["id0", "id1", "id2"]
    for vector, entry in zip(sent["vectors"], written, strict=True):
        assert vector["metadata"] == metadata_for(entry)
        unit = entry.vector / np.linalg.norm(entry.vector)
        np.testing.assert_allclose(vector["data"]["float32"], unit, rtol=1e-6)
        assert set(vector) == {"key", "data", "metadata"}


def test_requests_stay_within_500_vectors_and_20_mib() -> None:
    recorder = Recorder()
    index = S3VectorsIndex(recorder.client, bucket="vb-1", index="ix-1", dimension=4096)
    index.upsert(entries(700, 4096))
    counts = [len(json.loads(body)["vectors"]) for body in recorder.bodies]
    assert sum(counts) == 700 and len(counts) == 3  # 4,096-d: ~300 fit in 20 MiB
    assert all(len(body) <= MAX_PAYLOAD_BYTES for body in recorder.bodies)
    small = Recorder()
    S3VectorsIndex(small.client, bucket="vb-1", index="ix-1", dimension=8).upsert(entries(1001, 8))
    assert [len(json.loads(body)["vectors"]) for body in small.bodies] == [500, 500, 1]


def test_botocore_still_validates_keys_and_metadata() -> None:
    recorder = Recorder()
    index = S3VectorsIndex(recorder.client, bucket="vb-1", index="ix-1", dimension=4)
    with pytest.raises(ParamValidationError, match="key"):
        index.upsert([VectorEntry("", "uploads/a.jpg", None, np.ones(4))])
    assert recorder.bodies == []


def test_encoded_rows_must_match_the_vectors() -> None:
    recorder = Recorder()
    S3VectorsIndex(recorder.client, bucket="vb-1", index="ix-1", dimension=2).upsert(entries(1, 2))
    with pytest.raises(ValueError, match="one encoded row per vector"):
        recorder.client.put_vectors(
            vectorBucketName="vb-1",
            indexName="ix-1",
            vectors=[{"key": "a"}, {"key": "b"}],
            **{ENCODED_DATA_PARAM: [b"[1.0,0.0]"]},
        )


def test_a_client_without_the_adapter_refuses_our_parameter() -> None:
    client = boto3.client("s3vectors", region_name="us-east-1")
    with pytest.raises(ParamValidationError, match=ENCODED_DATA_PARAM):
        client.put_vectors(
            vectorBucketName="vb-1",
            indexName="ix-1",
            vectors=[{"key": "a", "data": {"float32": [1.0]}}],
            **{ENCODED_DATA_PARAM: [b"[1.0]"]},
        )
