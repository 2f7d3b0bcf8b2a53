"""The image pipeline prepares each model's input from that model's limits:
native formats pass through untouched, pixel-area caps downscale, bytes and sides
bound everything (the parameters the adapters' ``ModelLimits`` feed in)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from imagesearch.embedders.cohere import COHERE_LIMITS
from imagesearch.embedders.nova import NOVA_LIMITS
from imagesearch.images import prepare_image, prepare_with_thumbnail


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def nova(data: bytes):  # type: ignore[no-untyped-def]
    return prepare_image(
        data,
        max_side=NOVA_LIMITS.max_side,
        max_bytes=NOVA_LIMITS.max_bytes,
        native_formats=NOVA_LIMITS.native_formats,
    )


def test_webp_and_still_gif_pass_through_where_the_model_reads_them() -> None:
    webp = encode(Image.new("RGB", (300, 200), (10, 200, 10)), "WEBP")
    gif = encode(Image.new("P", (300, 200), 5), "GIF")
    for data, fmt in ((webp, "webp"), (gif, "gif")):
        prepared = nova(data)
        assert prepared.passed_through and prepared.model_bytes is data
        assert prepared.model_format == fmt
        # Titan's defaults (JPEG and PNG only) convert the same bytes
        assert prepare_image(data).model_format == "jpeg"


def test_animated_gif_and_transparent_webp_are_converted_even_where_native() -> None:
    frames = [Image.new("RGB", (40, 30), c) for c in ((200, 0, 0), (0, 0, 200))]
    animated = io.BytesIO()
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:])
    alpha = encode(Image.new("RGBA", (40, 30), (200, 0, 0, 100)), "WEBP")
    for data in (animated.getvalue(), alpha):
        prepared = nova(data)
        assert not prepared.passed_through and prepared.model_format == "jpeg"


def test_nova_side_limit_downscales_larger_images() -> None:
    big = encode(Image.new("RGB", (5000, 1000), (1, 2, 3)), "PNG")
    prepared = nova(big)
    with Image.open(io.BytesIO(prepared.model_bytes)) as out:
        assert out.size == (4096, 819)
    assert (prepared.width, prepared.height) == (5000, 1000)  # of the original


@pytest.mark.parametrize("size", [(3000, 2000), (1000, 4000), (2000, 2000)])
def test_area_cap_keeps_aspect_and_lands_just_under_the_cap(size: tuple[int, int]) -> None:
    data = encode(Image.new("RGB", size, (90, 90, 90)), "JPEG", quality=80)
    prepared, thumbnail = prepare_with_thumbnail(
        data,
        max_side=COHERE_LIMITS.max_side,
        max_bytes=COHERE_LIMITS.max_bytes,
        native_formats=COHERE_LIMITS.native_formats,
        max_area=COHERE_LIMITS.max_area,
    )
    with Image.open(io.BytesIO(prepared.model_bytes)) as out:
        width, height = out.size
    assert width * height <= 2_458_624
    assert width * height > 0.97 * 2_458_624
    assert abs(width / height - size[0] / size[1]) < 0.01
    assert thumbnail


def test_images_within_the_area_cap_pass_through() -> None:
    data = encode(Image.new("RGB", (1568, 1568), (90, 90, 90)), "JPEG")
    prepared = prepare_image(data, max_area=COHERE_LIMITS.max_area)
    assert prepared.passed_through
