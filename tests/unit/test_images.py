"""The image pipeline of the ingest path: what reaches the model, thumbnails, and
every rejection (SPEC section 5, "Formats" and "Limits")."""

from __future__ import annotations

import io
import random
import threading

import pytest
from PIL import Image, ImageChops, ImageFile, WebPImagePlugin

from fakes import imagefactory as f
from fakes.imagefactory import BAD_INPUT_CASES, ImageCase
from imagesearch import images
from imagesearch.errors import ImageRejected

INDEXED = [case for case in BAD_INPUT_CASES if case.outcome == "indexed"]
REJECTED = [case for case in BAD_INPUT_CASES if case.outcome == "rejected"]


def ingest(data: bytes) -> tuple[images.PreparedImage, bytes]:
    """What the ingest service does with every object: both public functions."""
    prepared = images.prepare_image(data)
    return prepared, images.make_thumbnail(data)


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def colour_at(image: Image.Image, fx: float, fy: float) -> tuple[int, ...]:
    rgb = image.convert("RGB")
    x = min(rgb.width - 1, int(rgb.width * fx))
    y = min(rgb.height - 1, int(rgb.height * fy))
    return rgb.getpixel((x, y))  # type: ignore[return-value]


def assert_colour(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 40) -> None:
    assert all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True)), (
        f"{actual} is not close to {expected}"
    )


def assert_quadrants(image: Image.Image) -> None:
    """The reference pattern, upright: red, green / blue, yellow."""
    for (fx, fy), expected in zip(
        [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)], f.QUADRANTS, strict=True
    ):
        assert_colour(colour_at(image, fx, fy), expected)


def expected_fit(width: int, height: int, box: int) -> tuple[int, int]:
    scale = min(1.0, box / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


# --- The table ---------------------------------------------------------------------


def test_table_covers_the_required_inputs() -> None:
    # Given the shared table, Then it holds every input the spec calls out, once.
    ids = [case.id for case in BAD_INPUT_CASES]
    assert len(ids) == len(set(ids)) >= 20
    required = {
        "empty",
        "truncated-jpeg",
        "random-bytes-as-jpg",
        "pdf-as-png",
        "text-file",
        "decompression-bomb",
        "one-by-one",
        "png-29mb",
        "jpeg-24mp",
        "strip-5000x60",
        "cmyk-jpeg",
        "png-16bit",
        "palette-png-transparency",
        "animated-gif",
        "webp",
        "tiff",
        "bmp",
        "heic",
        "exif-rotated-jpeg",
    }
    assert required <= set(ids)
    assert 28_000_000 <= len(f.big_png_29mb()) <= 30_000_000
    assert len(f.decompression_bomb_png()) < 100_000


@pytest.mark.parametrize("case", REJECTED, ids=lambda case: case.id)
def test_rejected_inputs_say_why(case: ImageCase) -> None:
    # Given an input that is not an indexable image
    data = case.data()
    # When the ingest path processes it, Then it is rejected with a clear reason
    with pytest.raises(ImageRejected) as rejected:
        ingest(data)
    assert case.reason is not None and case.reason in rejected.value.reason
    # And the one-open helper agrees
    with pytest.raises(ImageRejected) as again:
        images.prepare_with_thumbnail(data)
    assert case.reason in again.value.reason


@pytest.mark.parametrize("case", INDEXED, ids=lambda case: case.id)
def test_indexed_inputs_reach_the_model_within_limits(case: ImageCase) -> None:
    # Given an acceptable image
    data = case.data()
    # When the ingest path processes it
    prepared, thumbnail = ingest(data)

    # Then the facts about the original are right
    assert prepared.content_type == case.content_type
    assert (prepared.width, prepared.height) == (case.width, case.height)
    assert prepared.passed_through is case.passed_through
    assert prepared.model_format == case.model_format
    if case.passed_through:
        assert prepared.model_bytes == data

    # And the model input is a decodable JPEG/PNG within the limits, same aspect, never upscaled
    model = decode(prepared.model_bytes)
    assert model.format == prepared.model_format.upper()
    assert model.size == case.model_size
    assert model.size == expected_fit(prepared.width, prepared.height, images.MAX_SIDE)
    assert model.width <= images.MAX_SIDE and model.height <= images.MAX_SIDE
    assert len(prepared.model_bytes) <= images.MAX_MODEL_BYTES
    if not case.passed_through:
        assert model.mode in ("L", "RGB")

    # And the thumbnail is a JPEG with a 256 px long side (or the original size)
    thumb = decode(thumbnail)
    assert thumb.format == "JPEG" and thumb.mode in ("L", "RGB")
    assert thumb.size == expected_fit(prepared.width, prepared.height, 256)

    # And the one-open helper produces the same
    both, both_thumbnail = images.prepare_with_thumbnail(data)
    assert both == prepared
    assert decode(both_thumbnail).size == thumb.size


# --- Pixels: orientation, formats, modes ---------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied(orientation: int) -> None:
    # Given the 400x300 pattern stored with each EXIF orientation
    data = f.exif_rotated_jpeg(orientation)
    # When prepared and thumbnailed
    prepared, thumbnail = ingest(data)
    # Then both show the pattern upright, and the reported size is the upright one
    assert (prepared.width, prepared.height) == (400, 300)
    assert prepared.passed_through is (orientation == 1)
    assert_quadrants(decode(prepared.model_bytes))
    assert_quadrants(decode(thumbnail))
    assert decode(thumbnail).size == (256, 192)


@pytest.mark.parametrize(
    "factory", [f.webp, f.tiff, f.bmp, f.heic, f.cmyk_jpeg, f.compliant_png, f.jpeg]
)
def test_converted_formats_keep_the_picture(factory) -> None:
    # Given the pattern in some accepted format, When prepared, Then colours stay in place
    prepared, thumbnail = ingest(factory())
    assert_quadrants(decode(prepared.model_bytes))
    assert_quadrants(decode(thumbnail))


def test_large_jpeg_is_downscaled_with_the_picture_intact() -> None:
    # Given a 4000x3000 pattern JPEG (draft decoding applies)
    prepared, thumbnail = ingest(f.jpeg(4000, 3000))
    model = decode(prepared.model_bytes)
    # Then it is fitted to 2048 on the long side, upright, colours in place
    assert model.size == (2048, 1536)
    assert_quadrants(model)
    assert_quadrants(decode(thumbnail))


@pytest.mark.parametrize(
    ("factory", "left", "right"),
    [
        (f.palette_png_with_transparency, f.WHITE, f.RED),
        (f.rgba_png, f.WHITE, f.BLUE),
        (f.la_png, f.WHITE, (100, 100, 100)),
    ],
    ids=["palette-trns", "rgba", "la"],
)
def test_transparency_is_flattened_on_white(factory, left, right) -> None:
    # Given an image whose left half is transparent over black
    prepared, thumbnail = ingest(factory())
    # Then the model and the thumbnail see white there, not the hidden black
    for image in (decode(prepared.model_bytes), decode(thumbnail)):
        assert image.mode in ("L", "RGB")
        assert_colour(colour_at(image, 0.2, 0.5), left, tolerance=8)
        assert_colour(colour_at(image, 0.8, 0.5), right, tolerance=12)


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    # Given a 16-bit ramp over 0..65535
    prepared = images.prepare_image(f.png16())
    model = decode(prepared.model_bytes)
    # Then it becomes an 8-bit ramp over 0..255 (clipping would make it all white)
    assert model.mode == "L"
    assert colour_at(model, 0.01, 0.5)[0] <= 8
    assert abs(colour_at(model, 0.5, 0.5)[0] - 128) <= 8
    assert colour_at(model, 0.99, 0.5)[0] >= 247


def test_animated_gif_uses_the_first_frame() -> None:
    prepared = images.prepare_image(f.animated_gif())
    assert_colour(colour_at(decode(prepared.model_bytes), 0.5, 0.5), f.RED, tolerance=12)


def _tiff(image: Image.Image) -> bytes:
    return f.encode(image, "TIFF")


def _ramp(mode: str, low: float, high: float, width: int = 64) -> Image.Image:
    image = Image.new(mode, (width, 8))
    for x in range(width):
        value = low + (high - low) * x / (width - 1)
        for y in range(8):
            image.putpixel((x, y), int(value) if mode == "I" else value)
    return image


@pytest.mark.parametrize(
    ("name", "image", "expected_mode", "left", "right"),
    [
        pytest.param(name, image, mode, left, right, id=name)
        for name, image, mode, left, right in [
            ("int32-wide-range", _ramp("I", -1000, 100_000), "L", 0, 255),
            ("int32-8bit-range", _ramp("I", 10, 200), "L", 10, 200),
            ("int32-constant", Image.new("I", (64, 8), 1000), "L", 255, 255),
            ("float-0-1", _ramp("F", 0.0, 1.0), "L", 0, 255),
            ("float-wide-range", _ramp("F", -5.0, 5000.0), "L", 0, 255),
            ("bilevel", Image.new("1", (64, 8), 1), "L", 255, 255),
            ("cmyk", Image.new("CMYK", (64, 8), (0, 255, 255, 0)), "RGB", None, None),
            ("lab", Image.new("RGB", (64, 8), f.GREEN).convert("LAB"), "RGB", None, None),
            ("ycbcr", Image.new("RGB", (64, 8), f.BLUE).convert("YCbCr"), "RGB", None, None),
        ]
    ],
)
def test_unusual_modes_are_normalised(name, image, expected_mode, left, right) -> None:
    # Given a TIFF in a mode the model does not take
    prepared = images.prepare_image(_tiff(image))
    model = decode(prepared.model_bytes)
    # Then the model gets 8-bit L or RGB with the values mapped, not clipped or wrapped
    assert model.mode == expected_mode
    if left is not None:
        assert abs(colour_at(model, 0.0, 0.5)[0] - left) <= 4
        assert abs(colour_at(model, 0.999, 0.5)[0] - right) <= 4
    if name == "cmyk":
        assert_colour(colour_at(model, 0.5, 0.5), (255, 0, 0), tolerance=12)
    if name == "lab":
        assert_colour(colour_at(model, 0.5, 0.5), f.GREEN, tolerance=12)
    if name == "ycbcr":
        assert_colour(colour_at(model, 0.5, 0.5), f.BLUE, tolerance=12)


def test_png_exif_orientation_is_applied() -> None:
    # Given a PNG that is compliant in every way but carries EXIF orientation 8
    stored = f.quadrant_image(400, 300).transpose(Image.Transpose.ROTATE_270)
    data = f.encode(stored, "PNG", exif=f.exif_with_orientation(8))
    # When prepared, Then it is converted and shown upright
    prepared = images.prepare_image(data)
    assert not prepared.passed_through
    assert (prepared.width, prepared.height) == (400, 300)
    assert_quadrants(decode(prepared.model_bytes))


# --- Pass-through ---------------------------------------------------------------------


@pytest.mark.parametrize("factory", [f.compliant_jpeg, f.compliant_png, f.grayscale_jpeg])
def test_pass_through_reads_headers_only(factory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a compliant JPEG/PNG and a Pillow that fails any pixel decode
    data = factory()

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("prepare_image decoded pixels on the pass-through path")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    # When prepared, Then the original bytes go to the model untouched, without decoding
    prepared = images.prepare_image(data)
    assert prepared.passed_through
    assert prepared.model_bytes is data


def test_camera_mpo_jpeg_passes_through_as_jpeg() -> None:
    # Given a multi-picture JPEG (what many cameras write), within limits
    frames = [f.quadrant_image(800, 600), f.quadrant_image(800, 600)]
    data = f.encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    prepared, thumbnail = ingest(data)
    assert prepared.passed_through and prepared.content_type == "image/jpeg"
    assert_quadrants(decode(thumbnail))


@pytest.mark.parametrize(
    "factory",
    [
        pytest.param(lambda: f.png(2049, 10), id="too-wide-png"),
        pytest.param(f.rgba_png, id="rgba-png"),
        pytest.param(f.cmyk_jpeg, id="cmyk-jpeg"),
        pytest.param(lambda: f.exif_rotated_jpeg(3), id="rotated-jpeg"),
        pytest.param(f.png16, id="png-16bit"),
        pytest.param(
            lambda: f.encode(Image.new("L", (8, 8), 7), "PNG", transparency=7),
            id="grey-png-with-trns",
        ),
    ],
)
def test_non_compliant_jpeg_and_png_are_converted(factory) -> None:
    # Given a JPEG/PNG outside the pass-through rules, Then it is converted to JPEG
    prepared = images.prepare_image(factory())
    assert not prepared.passed_through
    assert decode(prepared.model_bytes).format == "JPEG"


def test_thumbnail_catches_corruption_that_pass_through_does_not_see() -> None:
    # Given a truncated JPEG whose header is fine
    data = f.truncated_jpeg()
    # Then prepare_image (header only) passes it, and make_thumbnail (decodes) rejects it
    assert images.prepare_image(data).passed_through
    with pytest.raises(ImageRejected, match="truncated"):
        images.make_thumbnail(data)


# --- Byte limit -------------------------------------------------------------------------


def test_jpeg_over_the_byte_limit_is_reencoded_at_full_size() -> None:
    # Given a 2048x2048 JPEG of noise over 5 MB
    data = f.jpeg_over_5mb()
    assert len(data) > images.MAX_MODEL_BYTES
    prepared = images.prepare_image(data)
    # Then it is re-encoded under the limit without losing pixels
    assert not prepared.passed_through
    assert len(prepared.model_bytes) <= images.MAX_MODEL_BYTES
    assert decode(prepared.model_bytes).size == (2048, 2048)


def test_lower_quality_is_used_when_quality_90_is_too_big() -> None:
    # Given noise whose quality-90 JPEG is far over a small byte limit
    image = f.noise_image(600, 400, seed=11)
    data = f.encode(image, "PNG")
    at_90 = len(f.encode(image, "JPEG", quality=images.MODEL_JPEG_QUALITY))
    limit = at_90 * 2 // 3
    # When prepared under that limit
    prepared = images.prepare_image(data, max_bytes=limit)
    # Then a lower quality fits it, at full size
    assert len(prepared.model_bytes) <= limit
    assert decode(prepared.model_bytes).size == (600, 400)


def test_size_is_reduced_when_no_quality_fits() -> None:
    # Given a limit no quality can meet at full size
    data = f.encode(f.noise_image(600, 400, seed=12), "PNG")
    prepared = images.prepare_image(data, max_bytes=20_000)
    model = decode(prepared.model_bytes)
    # Then the image shrinks (same aspect) until it fits
    assert len(prepared.model_bytes) <= 20_000
    assert model.width < 600
    assert abs(model.width / model.height - 1.5) < 0.02
    # And the facts about the original are unchanged
    assert (prepared.width, prepared.height) == (600, 400)


def test_impossible_byte_limit_is_a_rejection() -> None:
    with pytest.raises(ImageRejected, match="cannot encode"):
        images.prepare_image(f.png(100, 100), max_bytes=10)


# --- Bombs, limits, classification ---------------------------------------------------------


def test_pixel_limit_is_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("decoded a decompression bomb")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    for data in (f.over_pixel_limit_png(), f.decompression_bomb_png()):
        with pytest.raises(ImageRejected, match="too many pixels"):
            images.make_thumbnail(data)
    with pytest.raises(ImageRejected, match="too many pixels: 300x200"):
        images.prepare_image(f.jpeg(300, 200), max_pixels=50_000)


def test_pillow_bomb_warning_is_a_rejection() -> None:
    # Given our own limit lifted above Pillow's warning threshold (~89.5 MP)
    data = f.bomb_png(10_000, 9_500)
    # Then Pillow's DecompressionBombWarning still rejects the image
    with pytest.raises(ImageRejected, match="decompression bomb"):
        images.prepare_image(data, max_pixels=200_000_000)


def test_one_pixel_is_accepted_and_never_upscaled() -> None:
    prepared, thumbnail = ingest(f.one_by_one())
    assert decode(prepared.model_bytes).size == (1, 1)
    assert decode(thumbnail).size == (1, 1)
    assert decode(images.make_thumbnail(f.png(100, 50), long_side=256)).size == (100, 50)
    assert decode(images.make_thumbnail(f.png(100, 50), long_side=40)).size == (40, 20)


def test_thumbnail_rejects_a_bad_long_side() -> None:
    with pytest.raises(ValueError):
        images.make_thumbnail(f.one_by_one(), long_side=0)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"PK\x03\x04" + bytes(100), "ZIP"),
        (b"\x1f\x8b\x08" + bytes(100), "gzip"),
        (b"\x00\x00\x00\x1cftypavif" + bytes(100), "AVIF"),
        (b"\x00\x00\x00\x18ftypmp42" + bytes(100), "MP4"),
        (b"<!DOCTYPE html><html><body>hi</body></html>", "HTML"),
        (b"8BPS" + bytes(100), "Photoshop"),
        (b"\xff\xd8\xff" + bytes(10), "corrupt or truncated JPEG"),
        (b"\x89PNG\r\n\x1a\n" + bytes(10), "corrupt or truncated PNG"),
        (b"BM is how this text starts, not a bitmap at all", "text"),
    ],
    ids=["zip", "gzip", "avif", "mp4", "html", "psd", "jpeg-header-only", "png-header-only", "bm"],
)
def test_rejection_names_what_was_found(data: bytes, reason: str) -> None:
    with pytest.raises(ImageRejected) as rejected:
        ingest(data)
    assert reason in rejected.value.reason


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
@pytest.mark.filterwarnings("ignore:Truncated File Read:UserWarning")
def test_only_image_rejected_ever_escapes_for_damaged_files() -> None:
    # Given many damaged variants of valid files (cut short, bytes flipped)
    rng = random.Random(1234)
    sources = [f.jpeg(64, 48), f.png(64, 48), f.webp(64, 48), f.tiff(64, 48), f.bmp(64, 48)]
    sources += [f.animated_gif(32, 24), f.heic(64, 48), f.png16(32, 8)]
    damaged = []
    for data in sources:
        for _ in range(6):
            cut = bytearray(data[: rng.randrange(1, len(data))])
            damaged.append(bytes(cut))
            flipped = bytearray(data)
            for _ in range(rng.randrange(1, 8)):
                flipped[rng.randrange(len(flipped))] = rng.randrange(256)
            damaged.append(bytes(flipped))
    outcomes = {"ok": 0, "rejected": 0}
    for data in damaged:
        # When processed, Then the result is a valid model input or an ImageRejected
        try:
            prepared, thumbnail = images.prepare_with_thumbnail(data)
        except ImageRejected as rejected:
            assert rejected.reason
            outcomes["rejected"] += 1
            continue
        decode(prepared.model_bytes)
        decode(thumbnail)
        outcomes["ok"] += 1
    assert outcomes["rejected"] > 0


def test_truncated_images_are_never_loaded_partially(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        images.make_thumbnail(f.truncated_jpeg())


def test_banded_resize_matches_a_one_piece_resize() -> None:
    # Given a photo-like image large enough for the two-core resize
    source = f.photo_image(1500, 1100, seed=9)
    target = (1200, 880)
    whole = source.resize(target, images.MODEL_RESAMPLE, reducing_gap=3.0)
    # When resized in two bands, Then the result is the same picture with no seam
    banded = images._resize_in_bands(source, target, images.MODEL_RESAMPLE)
    assert banded.size == whole.size
    difference = ImageChops.difference(banded, whole)
    assert max(high for _, high in difference.getextrema()) <= 2


def test_prepared_image_repr_has_no_image_bytes() -> None:
    prepared = images.prepare_image(f.compliant_png())
    assert "model_bytes" not in repr(prepared)
    assert "image/png" in repr(prepared)


# --- Decode budget (issue 9: no small file can exhaust a function) -------------------


def _no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Image.Image) -> None:
        raise AssertionError("decoded an image over the decode budget")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    monkeypatch.setattr(WebPImagePlugin.WebPImageFile, "load", refuse)


@pytest.mark.parametrize(
    ("factory", "found"),
    [
        (lambda: f.flat_webp(16383, 4880), "16383x4880 WebP (RGBA) needs about 1220 MiB"),
        (lambda: f.flat_tiff_one_strip(8900, 8900), "8900x8900 TIFF (RGBA) needs about 906 MiB"),
    ],
    ids=["webp-3-kb-80-mp", "tiff-one-strip-16-bit"],
)
def test_decode_budget_is_checked_before_decoding(
    factory, found: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a small file under the pixel limit whose decoder would need over 512 MiB
    data = factory()
    assert len(data) < 1_000_000
    _no_decoding(monkeypatch)
    # When it is prepared, Then it is rejected from its header, saying why
    for prepare in (images.prepare_with_thumbnail, images.make_thumbnail, ingest):
        with pytest.raises(ImageRejected) as rejected:
            prepare(data)
        assert "too large to decode" in rejected.value.reason
        assert found in rejected.value.reason
        assert "the limit is 512 MiB" in rejected.value.reason


def test_decode_budget_counts_bytes_not_pixels() -> None:
    # Given two images of the same 4 MP: a palette GIF (1 byte a pixel) and an RGBA PNG (4)
    budget = 8 * 1024 * 1024
    gif, rgba = f.flat_gif(2000, 2000), f.flat_png(2000, 2000)
    # Then the GIF fits an 8 MiB budget and the PNG does not
    images.prepare_with_thumbnail(gif, max_decode_bytes=budget)
    with pytest.raises(ImageRejected, match=r"2000x2000 PNG \(RGBA\) needs about 15 MiB"):
        images.prepare_with_thumbnail(rgba, max_decode_bytes=budget)
    # And the budget is a parameter like the other limits
    images.prepare_with_thumbnail(rgba, max_decode_bytes=16 * 1024 * 1024)


def test_jpeg_estimate_counts_draft_scaling_and_progressive_coefficients() -> None:
    # Given a 24 MP baseline JPEG: decoded DCT-scaled by 2 for the model (3000x2000)
    assert images.estimate_decode_bytes(f.jpeg_24mp()) == 3000 * 2000 * 4
    # And a progressive one: every coefficient of the full image is held (2 bytes/sample)
    progressive = f.progressive_jpeg(800, 600)
    assert images.estimate_decode_bytes(progressive) == 800 * 600 * 4 + 800 * 600 * 4 * 2
    baseline = f.encode(Image.new("CMYK", (800, 600)), "JPEG", subsampling=0)
    assert images.estimate_decode_bytes(baseline) == 800 * 600 * 4
    budget = 3 * 1024 * 1024
    images.prepare_image(baseline, max_decode_bytes=budget)
    with pytest.raises(ImageRejected, match="too large to decode"):
        images.prepare_image(progressive, max_decode_bytes=budget)


def _reference(image: Image.Image, target: tuple[int, int], mode: str) -> Image.Image:
    """The one-piece pipeline: whole-image conversion, flatten, one resize."""
    if mode == "I;16":
        whole = image.convert("I").point(lambda v: v / 257).convert("L")
    else:
        whole = image.convert(mode)
    if whole.mode in ("RGBA", "LA"):
        background = Image.new(whole.mode[:-1], whole.size, (255,) * (len(whole.mode) - 1))
        background.paste(whole.convert(whole.mode[:-1]), (0, 0), whole.getchannel("A"))
        whole = background
    return whole.resize(target, images.MODEL_RESAMPLE, reducing_gap=images._REDUCING_GAP)


@pytest.mark.parametrize(
    ("mode", "target"),
    [
        ("RGBA", (300, 200)),  # reduced in strips, then resized in bands
        ("RGBA", (700, 466)),  # no reduction: resized in bands from converted crops
        ("P", (300, 200)),
        ("LA", (500, 333)),
        ("CMYK", (640, 427)),
        ("I;16", (300, 200)),
    ],
)
def test_strip_and_band_pipeline_matches_a_whole_image_conversion(
    mode: str, target: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given pieces of a few rows only (many strips and bands, each edge a chance for a seam)
    monkeypatch.setattr(images, "_STRIP_BYTES", 60_000)
    photo = f.photo_image(1200, 800, seed=5)
    alpha = Image.linear_gradient("L").resize(photo.size)
    source = photo.convert("RGBA")
    source.putalpha(alpha)
    if mode == "P":
        source = photo.convert("P", palette=Image.Palette.ADAPTIVE)
        source.info["transparency"] = 0
    elif mode == "I;16":
        source = Image.linear_gradient("L").resize(photo.size).convert("I").point(lambda v: v * 257)
        source = source.convert("I;16")
    elif mode != "RGBA":
        source = source.convert(mode)
    # When downscaled without a full-size copy
    result = images._downscale(source, target, images.MODEL_RESAMPLE)
    # Then it is the picture of a whole-image conversion and one resize, with no seam
    expected = _reference(source, target, {"P": "RGBA", "CMYK": "RGB"}.get(mode, mode))
    assert result.mode == expected.mode and result.size == expected.size == target
    difference = ImageChops.difference(result, expected)
    bands = difference.getextrema()
    highs = [bands[1]] if isinstance(bands[0], int) else [high for _, high in bands]
    assert max(highs) <= 3


def test_decode_budget_lets_small_decodes_share_and_queues_big_ones() -> None:
    budget = images._DecodeBudget(100)
    entered = threading.Event()

    def big() -> None:
        with budget.reserve(60):
            entered.set()

    with budget.reserve(10), budget.reserve(20):  # small ones share the budget
        with budget.reserve(50):
            worker = threading.Thread(target=big)
            worker.start()
            assert not entered.wait(0.2)  # 80 in use: 60 more would exceed 100
        assert entered.wait(10)  # 30 in use: it runs
    worker.join()
    with budget.reserve(500):  # one decode alone always runs (its own check bounds it)
        pass
