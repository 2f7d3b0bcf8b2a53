"""Cohere Embed v4's fused ``image_url``: a string on the English Bedrock page, ``{"url": ...}``
in other revisions (decision 33). A mismatch must never reject captioned images: the other
shape is tried once, the one that works is kept, and a refusal in both shapes rejects the
image only when both messages say the image is at fault."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from imagesearch.embedders import CohereEmbedV4Embedder, EmbedInput
from imagesearch.errors import (
    EmbedderConfigurationError,
    InvalidEmbeddingInput,
    TransientEmbeddingError,
)
from tests.support.bedrock_stub import StubbedBedrock, stubbed_bedrock

DIMENSION = 256
SHAPE_ERROR = (
    "Malformed input request: #/inputs/0/content/1/image_url: expected type: {wanted}, "
    "please reformat your input and try again."
)
IMAGE_ERROR = "Unable to process the provided image."


def jpeg(color: tuple[int, int, int] = (200, 10, 10)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(out, "JPEG")
    return out.getvalue()


class Stubbed(StubbedBedrock):
    def ok(self, count: int = 1) -> None:
        self.respond({"embeddings": {"float": [[1.0] * DIMENSION] * count}})

    def image_urls(self) -> list[Any]:
        """The image_url of the first fused input of each call, in order."""
        return [body["inputs"][0]["content"][1]["image_url"] for body in self.sent]


@pytest.fixture
def bedrock() -> Iterator[Stubbed]:
    with stubbed_bedrock(Stubbed()) as stub:
        yield stub


def adapter(bedrock: Stubbed) -> CohereEmbedV4Embedder:
    return CohereEmbedV4Embedder(dimension=DIMENSION, client=bedrock.client, max_attempts=1)


def shapes(urls: list[Any]) -> list[str]:
    return ["object" if isinstance(url, dict) else "string" for url in urls]


def test_the_object_shape_is_tried_once_and_kept_when_the_string_is_refused(
    bedrock: Stubbed,
) -> None:
    # Given a model that takes {"url": ...} and refuses the documented string
    bedrock.refuse(SHAPE_ERROR.format(wanted="JSONObject"))
    bedrock.ok()
    bedrock.ok()
    embedder = adapter(bedrock)
    # When a captioned image is embedded, and then another one
    embedder.embed(text="a red shoe", image=jpeg(), purpose="document")
    embedder.embed(text="a blue shoe", image=jpeg((0, 0, 200)), purpose="document")
    # Then the first took the string, then the object; the second went as an object at once
    assert shapes(bedrock.image_urls()) == ["string", "object", "object"]
    assert bedrock.image_urls()[1]["url"].startswith("data:image/jpeg;base64,")
    assert embedder.image_url_shape == ("object", True)


def test_once_a_shape_has_worked_a_refusal_is_the_images_without_a_second_call(
    bedrock: Stubbed,
) -> None:
    bedrock.ok()
    bedrock.refuse(IMAGE_ERROR)
    embedder = adapter(bedrock)
    embedder.embed(text="fine", image=jpeg(), purpose="document")
    with pytest.raises(InvalidEmbeddingInput, match="Unable to process"):
        embedder.embed(text="broken", image=jpeg((1, 2, 3)), purpose="document")
    assert shapes(bedrock.image_urls()) == ["string", "string"]


def test_a_refusal_in_both_shapes_rejects_only_when_both_blame_the_image(
    bedrock: Stubbed,
) -> None:
    bedrock.refuse(IMAGE_ERROR)
    bedrock.refuse("Invalid image: the image could not be decoded.")
    with pytest.raises(InvalidEmbeddingInput, match="Unable to process"):
        adapter(bedrock).embed(text="broken", image=jpeg(), purpose="document")
    assert shapes(bedrock.image_urls()) == ["string", "object"]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # the string shape blames the image, the object shape is not the model's schema
        (IMAGE_ERROR, SHAPE_ERROR.format(wanted="String")),
        # neither shape fits (the wire format changed again): never a rejection
        (SHAPE_ERROR.format(wanted="Array"), SHAPE_ERROR.format(wanted="Array")),
    ],
)
def test_a_refusal_in_both_shapes_that_does_not_blame_the_image_is_a_configuration_error(
    bedrock: Stubbed, first: str, second: str
) -> None:
    bedrock.refuse(first)
    bedrock.refuse(second)
    embedder = adapter(bedrock)
    with pytest.raises(EmbedderConfigurationError) as caught:
        embedder.embed(text="a caption", image=jpeg(), purpose="document")
    assert "both documented shapes of image_url" in str(caught.value)
    assert first in str(caught.value) and second in str(caught.value)
    assert embedder.image_url_shape == ("string", False)  # nothing learnt


def test_a_batch_refused_in_both_shapes_is_handed_back_to_be_asked_one_by_one(
    bedrock: Stubbed,
) -> None:
    # ingest answers InvalidEmbeddingInput from a batch with one call per image, where
    # only a refusal in both shapes rejects an image
    bedrock.refuse(IMAGE_ERROR)
    bedrock.refuse(SHAPE_ERROR.format(wanted="String"))
    items = [EmbedInput(jpeg(), "one"), EmbedInput(jpeg((0, 200, 0)), "two")]
    with pytest.raises(InvalidEmbeddingInput, match="a batch of 2"):
        adapter(bedrock).embed_images(items)


def test_errors_other_than_validation_are_not_retried_in_the_other_shape(
    bedrock: Stubbed,
) -> None:
    bedrock.fail("ThrottlingException", "Too many requests", 429)
    with pytest.raises(TransientEmbeddingError):
        adapter(bedrock).embed(text="a caption", image=jpeg(), purpose="query")
    assert shapes(bedrock.image_urls()) == ["string"]


def test_images_without_text_are_not_affected(bedrock: Stubbed) -> None:
    bedrock.refuse(IMAGE_ERROR)
    with pytest.raises(InvalidEmbeddingInput):
        adapter(bedrock).embed(image=jpeg(), purpose="document")
    assert [list(body) for body in bedrock.sent] == [
        ["input_type", "embedding_types", "output_dimension", "images"]
    ]
