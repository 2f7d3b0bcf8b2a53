"""Test images built in memory with Pillow and pillow-heif (no committed binaries).

Reusable by every tier: unit tests of ``imagesearch.images``, the ingest
integration tests (upload ``case.key`` with ``case.data()`` and check the
record) and the benchmarks. Expensive inputs are cached, so iterating over
``BAD_INPUT_CASES`` more than once is cheap.

``QUADRANTS`` is the reference pattern: red top-left, green top-right, blue
bottom-left, yellow bottom-right. Converted images should show the same
colours in the same places (checks orientation, flattening and mode handling).
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Literal

import pillow_heif
from PIL import Image, ImageChops

pillow_heif.register_heif_opener()

RGB = tuple[int, int, int]

RED: RGB = (220, 20, 20)
GREEN: RGB = (20, 200, 20)
BLUE: RGB = (20, 20, 220)
YELLOW: RGB = (230, 220, 20)
WHITE: RGB = (255, 255, 255)
# (top-left, top-right, bottom-left, bottom-right)
QUADRANTS: tuple[RGB, RGB, RGB, RGB] = (RED, GREEN, BLUE, YELLOW)

# Inverse of each EXIF orientation's transposition: storing
# ``upright.transpose(_STORE_FOR[o])`` with orientation ``o`` displays ``upright``.
_STORE_FOR = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


# --- Pixels -------------------------------------------------------------------


def quadrant_image(width: int = 400, height: int = 300, mode: str = "RGB") -> Image.Image:
    """The reference pattern (see module docstring)."""
    image = Image.new("RGB", (width, height))
    half_w, half_h = width // 2, height // 2
    image.paste(RED, (0, 0, half_w, half_h))
    image.paste(GREEN, (half_w, 0, width, half_h))
    image.paste(BLUE, (0, half_h, half_w, height))
    image.paste(YELLOW, (half_w, half_h, width, height))
    return image if mode == "RGB" else image.convert(mode)


def photo_image(width: int, height: int, *, seed: int = 0, noise: float = 6.0) -> Image.Image:
    """Smooth colour gradients plus mild grain: compresses and decodes roughly like a
    photograph (flat colour would make JPEG timings unrealistically fast)."""
    rng = random.Random(seed)
    coarse = Image.new("RGB", (8, 6))
    coarse.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(48)])
    image = coarse.resize((width, height), Image.Resampling.BICUBIC)
    if noise:
        grain = Image.effect_noise((width, height), noise)
        image = ImageChops.add(image, Image.merge("RGB", (grain, grain, grain)), offset=-128)
    return image


def noise_image(width: int, height: int, *, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """Uniform random pixels (incompressible), deterministic for a seed."""
    bands = len(mode)
    data = random.Random(seed).randbytes(width * height * bands)
    return Image.frombytes(mode, (width, height), data)


def encode(image: Image.Image, format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


# --- Accepted inputs ------------------------------------------------------------


def jpeg(
    width: int = 640,
    height: int = 480,
    color: RGB | None = None,
    *,
    quality: int = 90,
    mode: str = "RGB",
    exif: bytes | None = None,
    **options: object,
) -> bytes:
    """A JPEG: flat ``color``, or the quadrant pattern when ``color`` is None."""
    image = (
        quadrant_image(width, height) if color is None else Image.new("RGB", (width, height), color)
    )
    if mode != "RGB":
        image = image.convert(mode)
    if exif is not None:
        options["exif"] = exif
    return encode(image, "JPEG", quality=quality, **options)


def png(
    width: int = 640, height: int = 480, color: RGB | None = None, *, mode: str = "RGB"
) -> bytes:
    """A PNG: flat ``color``, or the quadrant pattern when ``color`` is None."""
    image = (
        quadrant_image(width, height) if color is None else Image.new("RGB", (width, height), color)
    )
    if mode != "RGB":
        image = image.convert(mode)
    return encode(image, "PNG")


def one_by_one() -> bytes:
    return png(1, 1, RED)


@cache
def compliant_jpeg() -> bytes:
    """A ~2 MP camera-like JPEG already within the model limits (pass-through)."""
    return encode(photo_image(1920, 1080, seed=1), "JPEG", quality=90)


def compliant_png() -> bytes:
    return png(800, 600)


def grayscale_jpeg() -> bytes:
    return jpeg(640, 480, mode="L")


def exif_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def exif_rotated_jpeg(orientation: int = 6, width: int = 400, height: int = 300) -> bytes:
    """Stored sideways with EXIF ``orientation``: displays as the upright
    ``width`` x ``height`` quadrant pattern once the orientation is applied."""
    stored = quadrant_image(width, height)
    if orientation in _STORE_FOR:
        stored = stored.transpose(_STORE_FOR[orientation])
    return encode(stored, "JPEG", quality=92, exif=exif_with_orientation(orientation))


def cmyk_jpeg() -> bytes:
    return jpeg(400, 300, mode="CMYK")


def png16(width: int = 256, height: int = 32) -> bytes:
    """16-bit greyscale PNG: a horizontal ramp over the full 0..65535 range."""
    row = struct.pack(f"<{width}H", *(x * 65535 // (width - 1) for x in range(width)))
    return encode(Image.frombytes("I;16", (width, height), row * height), "PNG")


def palette_png_with_transparency(width: int = 200, height: int = 100) -> bytes:
    """Palette PNG: left half transparent (hidden colour black), right half red."""
    image = Image.new("P", (width, height), 0)
    image.putpalette([0, 0, 0, *RED] + [0, 0, 0] * 254)
    image.paste(1, (width // 2, 0, width, height))
    return encode(image, "PNG", transparency=0)


def rgba_png(width: int = 200, height: int = 100) -> bytes:
    """RGBA PNG: left half fully transparent black, right half opaque blue."""
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    image.paste((*BLUE, 255), (width // 2, 0, width, height))
    return encode(image, "PNG")


def la_png(width: int = 200, height: int = 100) -> bytes:
    """Grey + alpha PNG: left half transparent black, right half opaque grey 100."""
    image = Image.new("LA", (width, height), (0, 0))
    image.paste((100, 255), (width // 2, 0, width, height))
    return encode(image, "PNG")


def animated_gif(width: int = 120, height: int = 80) -> bytes:
    """Three frames: red, green, blue. The first frame is what gets indexed."""
    frames = [Image.new("RGB", (width, height), c) for c in (RED, GREEN, BLUE)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def webp(width: int = 400, height: int = 300) -> bytes:
    return encode(quadrant_image(width, height), "WEBP", quality=90)


def tiff(width: int = 400, height: int = 300) -> bytes:
    return encode(quadrant_image(width, height), "TIFF", compression="tiff_lzw")


def bmp(width: int = 400, height: int = 300) -> bytes:
    return encode(quadrant_image(width, height), "BMP")


@cache
def heic(width: int = 400, height: int = 300) -> bytes:
    return encode(quadrant_image(width, height), "HEIF", quality=90)


@cache
def strip_5000x60() -> bytes:
    return jpeg(5000, 60)


@cache
def jpeg_24mp() -> bytes:
    """6000x4000 camera-like JPEG (a 24 MP photo)."""
    return encode(photo_image(6000, 4000, seed=24), "JPEG", quality=90)


@cache
def big_png_29mb() -> bytes:
    """~29 MB PNG: 3200x3000 RGB noise, which zlib cannot shrink."""
    return encode(noise_image(3200, 3000, seed=29), "PNG", compress_level=1)


@cache
def jpeg_over_5mb() -> bytes:
    """2048x2048 (within the pixel limit) but well over 5 MB: noise at quality 100."""
    return encode(noise_image(2048, 2048, seed=5), "JPEG", quality=100, subsampling=0)


# --- Rejected inputs --------------------------------------------------------------


def empty() -> bytes:
    return b""


@cache
def truncated_jpeg() -> bytes:
    """A valid header and the first 60 % of the scan: no end of image."""
    data = encode(photo_image(1024, 768, seed=3), "JPEG", quality=90)
    return data[: len(data) * 6 // 10]


@cache
def truncated_png() -> bytes:
    data = encode(photo_image(640, 480, seed=4), "PNG")
    return data[: len(data) * 6 // 10]


def random_bytes(size: int = 4096, seed: int = 7) -> bytes:
    data = random.Random(seed).randbytes(size)
    assert not data.startswith((b"\xff\xd8", b"\x89PNG", b"GIF", b"BM", b"II", b"MM", b"RIFF"))
    return data


def pdf_bytes() -> bytes:
    """A minimal, valid one-page PDF."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def text_bytes() -> bytes:
    return "Shopping list:\n- red suede sneakers\n- café crème\n".encode() * 20


def svg_bytes() -> bytes:
    return (
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" '
        b'height="10"><rect width="10" height="10" fill="red"/></svg>\n'
    )


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of ``width`` x ``height`` zeros: a few KB on disk,
    ``width * height`` pixels once decoded."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    chunks = []
    rows_per_step = max(1, 4_000_000 // len(row))
    for start in range(0, height, rows_per_step):
        chunks.append(compressor.compress(row * min(rows_per_step, height - start)))
    chunks.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(chunks))
        + _png_chunk(b"IEND", b"")
    )


@cache
def decompression_bomb_png() -> bytes:
    """20000x20000 = 400 megapixels in ~60 KB (beyond Pillow's own hard limit too)."""
    return bomb_png(20_000, 20_000)


@cache
def over_pixel_limit_png() -> bytes:
    """9000x9000 = 81 megapixels: just over our limit, under Pillow's warning."""
    return bomb_png(9_000, 9_000)


# --- The table ------------------------------------------------------------------

Outcome = Literal["indexed", "rejected"]


@dataclass(frozen=True)
class ImageCase:
    """One input and what the ingest path must make of it.

    For "rejected": ``reason`` is a substring of ``ImageRejected.reason``.
    For "indexed": the expected original facts (content type, upright size) and
    model input (format, size, pass-through).
    """

    id: str
    key: str
    factory: Callable[[], bytes]
    outcome: Outcome
    reason: str | None = None
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    model_format: str | None = None
    model_size: tuple[int, int] | None = None
    passed_through: bool | None = None

    def data(self) -> bytes:
        return self.factory()


def _indexed(
    id: str,
    key: str,
    factory: Callable[[], bytes],
    content_type: str,
    size: tuple[int, int],
    model_size: tuple[int, int] | None = None,
    *,
    passed_through: bool = False,
) -> ImageCase:
    return ImageCase(
        id=id,
        key=key,
        factory=factory,
        outcome="indexed",
        content_type=content_type,
        width=size[0],
        height=size[1],
        # Converted images are always JPEG; pass-through keeps the original format.
        model_format="png" if passed_through and content_type == "image/png" else "jpeg",
        model_size=model_size or size,
        passed_through=passed_through,
    )


def _rejected(id: str, key: str, factory: Callable[[], bytes], reason: str) -> ImageCase:
    return ImageCase(id=id, key=key, factory=factory, outcome="rejected", reason=reason)


BAD_INPUT_CASES: list[ImageCase] = [
    _rejected("empty", "empty.jpg", empty, "empty file"),
    _rejected("truncated-jpeg", "truncated.jpg", truncated_jpeg, "truncated"),
    _rejected("truncated-png", "truncated.png", truncated_png, "truncated"),
    _rejected("random-bytes-as-jpg", "random.jpg", random_bytes, "not an image"),
    _rejected("pdf-as-png", "document.png", pdf_bytes, "PDF"),
    _rejected("text-file", "notes.txt", text_bytes, "text"),
    _rejected("svg-as-png", "vector.png", svg_bytes, "SVG"),
    _rejected("decompression-bomb", "bomb.png", decompression_bomb_png, "too many pixels"),
    _rejected("over-pixel-limit", "huge.png", over_pixel_limit_png, "too many pixels"),
    _indexed("one-by-one", "dot.png", one_by_one, "image/png", (1, 1), passed_through=True),
    _indexed(
        "compliant-jpeg",
        "photo.jpg",
        compliant_jpeg,
        "image/jpeg",
        (1920, 1080),
        passed_through=True,
    ),
    _indexed(
        "compliant-png", "pattern.png", compliant_png, "image/png", (800, 600), passed_through=True
    ),
    _indexed(
        "grayscale-jpeg", "grey.jpg", grayscale_jpeg, "image/jpeg", (640, 480), passed_through=True
    ),
    _indexed("png-29mb", "big.png", big_png_29mb, "image/png", (3200, 3000), (2048, 1920)),
    _indexed("jpeg-24mp", "camera.jpg", jpeg_24mp, "image/jpeg", (6000, 4000), (2048, 1365)),
    _indexed("strip-5000x60", "strip.jpg", strip_5000x60, "image/jpeg", (5000, 60), (2048, 25)),
    _indexed("jpeg-over-5mb", "noisy.jpg", jpeg_over_5mb, "image/jpeg", (2048, 2048)),
    _indexed("cmyk-jpeg", "print.jpg", cmyk_jpeg, "image/jpeg", (400, 300)),
    _indexed("png-16bit", "ramp16.png", png16, "image/png", (256, 32)),
    _indexed(
        "palette-png-transparency",
        "logo.png",
        palette_png_with_transparency,
        "image/png",
        (200, 100),
    ),
    _indexed("rgba-png", "cutout.png", rgba_png, "image/png", (200, 100)),
    _indexed("animated-gif", "anim.gif", animated_gif, "image/gif", (120, 80)),
    _indexed("webp", "pattern.webp", webp, "image/webp", (400, 300)),
    _indexed("tiff", "scan.tiff", tiff, "image/tiff", (400, 300)),
    _indexed("bmp", "paint.bmp", bmp, "image/bmp", (400, 300)),
    _indexed("heic", "phone.heic", heic, "image/heic", (400, 300)),
    _indexed("exif-rotated-jpeg", "rotated.jpg", exif_rotated_jpeg, "image/jpeg", (400, 300)),
]


# --- Worst cases for memory (one per format; issue 9) --------------------------------
#
# Flat content, so that each is a few KB to a few MB on disk while decoding to the
# largest buffer its format allows within the limits: the point is the decoder's
# memory, not the pixels. Builders stream or patch headers where they can, so the
# cheap ones never hold the full image in the test process.


def _zlib_of_repeats(block: bytes, times: int, tail: bytes) -> bytes:
    """zlib stream of ``block * times + tail`` without compressing it all: a deflate
    segment ending in a full flush references nothing before it, so one compressed
    copy of ``block`` can be repeated (what makes these builders take milliseconds)."""
    segment = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_RLE)
    repeated = segment.compress(block) + segment.flush(zlib.Z_FULL_FLUSH)
    last = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_RLE)
    end = last.compress(tail) + last.flush()
    checksum = 1
    for _ in range(times):
        checksum = zlib.adler32(block, checksum)
    checksum = zlib.adler32(tail, checksum)
    return b"\x78\xda" + repeated * times + end + struct.pack(">I", checksum)


def _zeros_of_rows(row_bytes: int, height: int) -> bytes:
    rows_per_block = max(1, 4_000_000 // row_bytes)
    block = b"\x00" * (row_bytes * rows_per_block)
    return _zlib_of_repeats(
        block, height // rows_per_block, b"\x00" * (row_bytes * (height % rows_per_block))
    )


def flat_png(width: int, height: int, *, color_type: int = 6, bit_depth: int = 8) -> bytes:
    """A PNG of zeros (colour type 6 = RGBA) of any size, built in milliseconds."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
    idat = _zeros_of_rows(1 + width * channels * bit_depth // 8, height)  # filter byte + row
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def flat_webp(width: int, height: int) -> bytes:
    """A lossless RGBA WebP of one colour at any size up to 16383 x 16383, in 38 bytes.

    A one-colour image codes every pixel with zero-length Huffman codes, so the
    bitstream of a small one decodes as a large one once the VP8L header says so."""
    data = bytearray(encode(Image.new("RGBA", (16, 16), (10, 20, 30, 128)), "WEBP", lossless=True))
    header = data.index(b"VP8L") + 8
    assert data[header] == 0x2F
    bits = int.from_bytes(data[header + 1 : header + 5], "little")
    bits = (bits & ~((1 << 28) - 1)) | (width - 1) | ((height - 1) << 14)
    data[header + 1 : header + 5] = bits.to_bytes(4, "little")
    return bytes(data)


def flat_tiff_one_strip(width: int, height: int) -> bytes:
    """A deflated 16-bit RGBA TIFF of zeros stored as ONE strip: libtiff decodes the
    whole strip (8 bytes a pixel) into a buffer next to Pillow's image."""
    strip = _zeros_of_rows(width * 8, height)
    count = 12
    bits_offset = 8 + 2 + count * 12 + 4
    data_offset = bits_offset + 8

    def entry(tag: int, kind: int, value: int, number: int = 1) -> bytes:
        if kind == 3 and number == 1:  # SHORT, inline
            return struct.pack("<HHIHH", tag, kind, number, value, 0)
        return struct.pack("<HHII", tag, kind, number, value)

    entries = [
        entry(256, 4, width),  # ImageWidth
        entry(257, 4, height),  # ImageLength
        entry(258, 3, bits_offset, 4),  # BitsPerSample: 16,16,16,16 (stored after the IFD)
        entry(259, 3, 8),  # Compression: deflate
        entry(262, 3, 2),  # Photometric: RGB
        entry(273, 4, data_offset),  # StripOffsets
        entry(277, 3, 4),  # SamplesPerPixel
        entry(278, 4, height),  # RowsPerStrip: all of them
        entry(279, 4, len(strip)),  # StripByteCounts
        entry(284, 3, 1),  # PlanarConfiguration: chunky
        entry(338, 3, 2),  # ExtraSamples: unassociated alpha
        entry(339, 3, 1),  # SampleFormat: unsigned
    ]
    assert len(entries) == count
    return (
        b"II*\x00"
        + struct.pack("<IH", 8, count)
        + b"".join(entries)
        + b"\x00\x00\x00\x00"
        + struct.pack("<4H", 16, 16, 16, 16)
        + strip
    )


def flat_gif(width: int, height: int) -> bytes:
    """A palette GIF with a transparent colour: 1 byte a pixel decoded, four once
    converted to RGBA (which must therefore happen a strip at a time)."""
    image = Image.new("P", (width, height), 0)
    image.putpalette([0, 0, 0, *RED] + [0, 0, 0] * 254)
    return encode(image, "GIF", transparency=0)


def progressive_jpeg(width: int, height: int, *, mode: str = "CMYK") -> bytes:
    """A progressive 4:4:4 JPEG: libjpeg keeps every DCT coefficient of the full image
    (2 bytes a sample, whatever the draft scale) until the last scan."""
    image = Image.new(mode, (width, height), (10, 20, 30, 40)[: len(mode)])
    return encode(image, "JPEG", progressive=True, quality=90, subsampling=0)


def flat_heic(width: int, height: int) -> bytes:
    """An 8-bit HEIC in 512-px grid tiles, as phones write them (fastest x265 preset)."""
    return encode(
        Image.new("RGB", (width, height), (10, 20, 30)),
        "HEIF",
        quality=10,
        tile_size=512,
        enc_params={"preset": "ultrafast", "tune": "fastdecode"},
    )


@dataclass(frozen=True)
class WorstCase:
    """The input of a format that takes the most memory to decode: the largest that
    the decode budget accepts (``outcome`` "indexed"), or one over it that must be
    turned away from its header (``outcome`` "rejected", issue 9's reproductions)."""

    id: str
    description: str
    factory: Callable[[], bytes]
    outcome: Outcome
    expensive: bool = False  # builds in seconds and hundreds of MB: build in a subprocess


# Sizes put the accepted ones just under images.MAX_DECODE_BYTES (512 MiB):
# PNG 4 B/px storage; WebP 16 B/px; TIFF 4 B/px + an 8 B/px strip; JPEG 8 B/px of
# coefficients + the draft-scaled output; HEIC 8.5 B/px. The memory tests check that.
MEMORY_WORST_CASES: list[WorstCase] = [
    WorstCase("png", "8900x8900 RGBA PNG (79 MP)", lambda: flat_png(8900, 8900), "indexed"),
    WorstCase(
        "webp", "16383x2040 lossless RGBA WebP (33 MP)", lambda: flat_webp(16383, 2040), "indexed"
    ),
    WorstCase(
        "webp-over-budget",
        "16383x4880 lossless RGBA WebP (80 MP)",
        lambda: flat_webp(16383, 4880),
        "rejected",
    ),
    WorstCase(
        "gif",
        "8900x8900 palette GIF with transparency (79 MP)",
        lambda: flat_gif(8900, 8900),
        "indexed",
    ),
    WorstCase(
        "tiff",
        "6600x6600 16-bit RGBA TIFF in one strip (44 MP)",
        lambda: flat_tiff_one_strip(6600, 6600),
        "indexed",
    ),
    WorstCase(
        "tiff-over-budget",
        "8900x8900 16-bit RGBA TIFF in one strip (79 MP)",
        lambda: flat_tiff_one_strip(8900, 8900),
        "rejected",
    ),
    WorstCase(
        "jpeg",
        "7600x7600 progressive CMYK 4:4:4 JPEG (58 MP)",
        lambda: progressive_jpeg(7600, 7600),
        "indexed",
        expensive=True,
    ),
    WorstCase(
        "heic",
        "8064x6048 8-bit HEIC in 512-px tiles (49 MP, a 48 MP phone photo)",
        lambda: flat_heic(8064, 6048),
        "indexed",
        expensive=True,
    ),
]
