"""The Nova 2 query-purpose bench (decision 33) runs end to end against the fake Bedrock,
so that someone with a real account can trust the script; its figures here mean nothing."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from bench import nova_purpose
from fakes.bedrock import FakeBedrock


def write_jpeg(path: Path, color: tuple[int, int, int]) -> None:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(out, "JPEG")
    path.write_bytes(out.getvalue())


def test_the_bench_scores_each_query_purpose_on_a_captioned_catalog(
    fake_bedrock: FakeBedrock, tmp_path: Path
) -> None:
    # Given three images, two of them captioned, and two queries with their answers
    write_jpeg(tmp_path / "red.jpg", (220, 30, 30))
    write_jpeg(tmp_path / "blue.jpg", (30, 60, 220))
    write_jpeg(tmp_path / "green.jpg", (40, 170, 50))
    (tmp_path / "captions.json").write_text(
        json.dumps({"red.jpg": "a red shoe", "blue.jpg": "sky"})
    )
    queries = [
        {"text": "red", "relevant": ["red.jpg"]},
        {"text": "green", "relevant": ["green.jpg"]},
    ]
    queries_file = tmp_path.parent / "queries.json"
    queries_file.write_text(json.dumps(queries))
    # When it runs with an instruction arm, through its command line
    code = nova_purpose.cli(
        [
            "--images",
            str(tmp_path),
            "--queries",
            str(queries_file),
            "--dimension",
            "256",
            "--top-k",
            "1",
            "--instruction",
            "Find the image: ",
            "--endpoint-url",
            fake_bedrock.endpoint_url,
        ]
    )
    # Then every arm queried with its own purpose, and the catalog was stored as ingest does
    assert code == 0
    log = fake_bedrock.call_log
    assert all(call.status == 200 for call in log)
    stored = [c for c in log if c.purpose == "GENERIC_INDEX"]
    assert len(stored) == 5  # two captioned images are two calls each, one image alone
    queried = [c.purpose for c in log if c.purpose != "GENERIC_INDEX"]
    assert queried == ["IMAGE_RETRIEVAL"] * 2 + ["GENERIC_RETRIEVAL"] * 4


def test_scores_are_recall_and_reciprocal_rank(fake_bedrock: FakeBedrock, tmp_path: Path) -> None:
    write_jpeg(tmp_path / "red.jpg", (220, 30, 30))
    write_jpeg(tmp_path / "blue.jpg", (30, 60, 220))
    scores = nova_purpose.run(
        tmp_path,
        [{"text": "red", "relevant": ["red.jpg"]}],
        dimension=256,
        top_k=2,
        client=fake_bedrock.client(),
    )
    assert [s.arm for s in scores] == ["IMAGE_RETRIEVAL", "GENERIC_RETRIEVAL"]
    for s in scores:  # the fake sees colours: "red" finds the red image first
        assert (s.recall, s.mrr, s.queries) == (1.0, 1.0, 1)
