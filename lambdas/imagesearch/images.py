"""Image pipeline of the ingest path: validate, normalise and downscale what goes to
the embedding model, and make thumbnails (SPEC section 5, "Formats" and "Limits").

- JPEG and PNG already within the model limits are passed to the model byte for
  byte, after reading only their headers.
- Everything else accepted (WebP, GIF first frame, BMP, TIFF first page,
  HEIC/HEIF, and JPEG/PNG that are too large, rotated by EXIF, or in another
  mode) is decoded, oriented, normalised to 8-bit L/RGB (transparency flattened
  on white), fitted within 2048x2048 without upscaling and encoded as JPEG.
- Anything else, and empty, corrupt, truncated or oversized (decompression bomb)
  input, raises ``ImageRejected`` with a reason a person can act on.

Converted images are always JPEG (quality 90, lower only when needed to fit the
byte limit): the model sees decoded pixels either way, and JPEG keeps encoding
fast and the request small. Pass-through means a corrupt JPEG/PNG body is only
noticed when it is decoded, which ``make_thumbnail`` always does; the ingest
service calls both (``prepare_with_thumbnail`` does both from one open).
"""

from __future__ import annotations

import io
import itertools
import math
import os
import struct
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Final

import pillow_heif
from PIL import Image, ImageFile, UnidentifiedImageError

from imagesearch.errors import ImageRejected
from imagesearch.resources import THUMBNAIL_LONG_SIDE

__all__ = [
    "ACCEPTED_FORMATS",
    "MAX_DECODE_BYTES",
    "MAX_MODEL_BYTES",
    "MAX_PIXELS",
    "MAX_SIDE",
    "PreparedImage",
    "estimate_decode_bytes",
    "make_thumbnail",
    "prepare_image",
    "prepare_with_thumbnail",
]

# Titan Multimodal G1 limits, the conservative reading of the model docs.
MAX_SIDE: Final = 2048
MAX_MODEL_BYTES: Final = 5_000_000
# Checked on the header size before any pixel is decoded. Below Pillow's own
# warning threshold (~89.5 MP), so our clearer message normally comes first; it
# still covers 48-61 MP phone and camera photos.
MAX_PIXELS: Final = 80_000_000
# Memory one decode may take, estimated from the header before any pixel is decoded
# (format, mode, bit depth, JPEG scans, TIFF strips: see ``estimate_decode_bytes``).
# Pixels alone say little: 80 MP is 80 MB as a GIF and 1.3 GB as a lossless WebP.
# 512 MiB keeps a decode plus the runtime inside the 1024 MB ingest function and
# passes 61 MP camera JPEGs, 80 MP RGBA PNGs and 48 MP HEICs (docs/decisions.md).
MAX_DECODE_BYTES: Final = 512 * 1024 * 1024

MODEL_JPEG_QUALITY: Final = 90
_FALLBACK_QUALITIES: Final = (80, 70, 60, 50, 40)
THUMBNAIL_JPEG_QUALITY: Final = 85
# Model input: JPEGs are first DCT-scaled to at most 2x the target while decoding,
# so the remaining ratio is small and bicubic is as good as Lanczos there at ~2/3
# of the cost (the model itself samples far below 2048 px). Thumbnails are for
# people and small: Lanczos.
MODEL_RESAMPLE: Final = Image.Resampling.BICUBIC
THUMBNAIL_RESAMPLE: Final = Image.Resampling.LANCZOS
_WHITE: Final = 255

ACCEPTED_FORMATS: Final = "JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF"
# Formats a model may read as they are (ModelLimits.native_formats), by Pillow format.
_MODEL_FORMATS: Final = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}
NATIVE_FORMATS: Final = frozenset({"jpeg", "png"})  # Titan's

# Pillow plugins we let Image.open try: nothing else is ever parsed (no EPS via
# Ghostscript, no header-less formats such as TGA that match random bytes). MPO
# (camera JPEGs with a multi-picture extension) comes through the JPEG opener.
_PILLOW_FORMATS: Final = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF")
_LABELS: Final = {
    "JPEG": "JPEG",
    "MPO": "JPEG",
    "PNG": "PNG",
    "GIF": "GIF",
    "WEBP": "WebP",
    "BMP": "BMP",
    "TIFF": "TIFF",
    "HEIF": "HEIC/HEIF",
}
_CONTENT_TYPES: Final = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",  # camera JPEGs with a multi-picture extension
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "HEIF": "image/heif",
}
_DRAFTABLE: Final = frozenset({"JPEG", "MPO"})  # DCT scaling while decoding

_ORIENTATION_TAG: Final = 0x0112
# The table of ImageOps.exif_transpose, applied to the already downscaled image.
_TRANSPOSE: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES: Final = frozenset({5, 6, 7, 8})

# Cheap: registers the plugin class; libheif is only used when a HEIF arrives.
pillow_heif.register_heif_opener()
# Pillow allocates big images in blocks (16 MB by default). Blocks under glibc's mmap
# threshold (at most 32 MB) come from per-thread malloc arenas that keep them after
# free: ten query images decoded one after another on four threads kept ~4 decodes
# resident (1.15 GB measured). 64 MB blocks are mmapped and go back to the OS on free.
Image.core.set_block_size(64 * 1024 * 1024)


@dataclass(frozen=True)
class PreparedImage:
    """What goes to the embedding model, and facts about the original."""

    model_bytes: bytes = field(repr=False)  # within the model's limits (max_side, max_bytes)
    model_format: str  # "jpeg" | "png" | "gif" | "webp" (the last two where native)
    content_type: str  # of the original, e.g. "image/heic"
    width: int  # of the original, after EXIF orientation
    height: int
    passed_through: bool  # model_bytes is the original, untouched


def prepare_image(
    data: bytes,
    *,
    max_side: int = MAX_SIDE,
    max_bytes: int = MAX_MODEL_BYTES,
    max_pixels: int = MAX_PIXELS,
    max_decode_bytes: int = MAX_DECODE_BYTES,
    native_formats: frozenset[str] = NATIVE_FORMATS,
    max_area: int | None = None,
) -> PreparedImage:
    """Validate ``data`` and return the bytes to embed. Compliant images in one of the
    model's ``native_formats`` are only header-parsed (pair with ``make_thumbnail``,
    which decodes). ``max_area``: pixels the model input may have (None: no limit
    beyond ``max_side``). Raises ImageRejected."""
    with _open(data, max_pixels, max_decode_bytes) as source:
        side = _side_for_area(source.image.size, max_side, max_area)
        prepared, _ = _prepare(source, data, side, max_bytes, native_formats)
        return prepared


def make_thumbnail(
    data: bytes,
    long_side: int = THUMBNAIL_LONG_SIDE,
    *,
    max_pixels: int = MAX_PIXELS,
    max_decode_bytes: int = MAX_DECODE_BYTES,
) -> bytes:
    """JPEG thumbnail with ``long_side`` pixels on its long side (never upscaled),
    EXIF orientation applied. Decodes the whole image: raises ImageRejected for
    corrupt or truncated data."""
    _check_long_side(long_side)
    with _open(data, max_pixels, max_decode_bytes) as source:
        thumbnail = _render(source, long_side, draft_gap=2, resample=THUMBNAIL_RESAMPLE)
        return _encode_thumbnail(source, thumbnail)


def prepare_with_thumbnail(
    data: bytes,
    long_side: int = THUMBNAIL_LONG_SIDE,
    *,
    max_side: int = MAX_SIDE,
    max_bytes: int = MAX_MODEL_BYTES,
    max_pixels: int = MAX_PIXELS,
    max_decode_bytes: int = MAX_DECODE_BYTES,
    native_formats: frozenset[str] = NATIVE_FORMATS,
    max_area: int | None = None,
) -> tuple[PreparedImage, bytes]:
    """``prepare_image`` and ``make_thumbnail`` from one open and at most one decode:
    a converted image's thumbnail is cut from the already downscaled model image."""
    _check_long_side(long_side)
    with _open(data, max_pixels, max_decode_bytes) as source:
        side = _side_for_area(source.image.size, max_side, max_area)
        prepared, model_image = _prepare(source, data, side, max_bytes, native_formats)
        if model_image is None:  # passed through: decode now, at thumbnail scale
            thumbnail = _render(source, long_side, draft_gap=2, resample=THUMBNAIL_RESAMPLE)
        else:
            target = _fit(model_image.size, long_side)
            thumbnail = _resize(model_image, target, THUMBNAIL_RESAMPLE)
        return prepared, _encode_thumbnail(source, thumbnail)


def estimate_decode_bytes(data: bytes, box: int = MAX_SIDE) -> int:
    """Bytes of memory that decoding ``data`` for a ``box`` x ``box`` result takes
    at its peak, from the header alone (what the decode budget is checked against).
    Raises ImageRejected for what cannot be opened."""
    with _open(data, max_pixels=math.inf, max_decode_bytes=math.inf) as source:
        target = _fit(source.image.size, box)
        if target != source.image.size and source.pillow_format in _DRAFTABLE:
            source.image.draft(None, target)
        return _decode_cost(source)


# --- Opening and classifying ---------------------------------------------------


@dataclass
class _Source:
    image: Image.Image
    pillow_format: str
    label: str
    content_type: str
    original_mode: str
    icc_profile: bytes | None
    data: bytes = field(repr=False)
    original_size: tuple[int, int]  # before JPEG draft scaling
    max_decode_bytes: float
    held: ExitStack = field(repr=False)  # closed after the image: releases its reservation
    reserved: bool = False


@contextmanager
def _open(data: bytes, max_pixels: float, max_decode_bytes: float) -> Iterator[_Source]:
    """Open ``data`` (header only) as one of the accepted formats, enforce the pixel
    limit, and turn every decoding failure inside the block into ImageRejected. The
    decode budget is enforced where a decode happens (``_render``), at its scale."""
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    sniffed = _sniff(data)
    if sniffed is not None and not sniffed[1]:
        raise ImageRejected(f"unsupported format: {sniffed[0]} (accepted: {ACCEPTED_FORMATS})")
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Partial images must never be indexed; something in the process flipped this.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES must stay False")
    with _decoding_errors(sniffed[0] if sniffed else "image"):
        try:
            image = Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS)
        except UnidentifiedImageError:
            raise ImageRejected(_unidentified_reason(data, sniffed)) from None
    # The decode reservation (see _render) is released only after the image is closed:
    # a decoded image still held while its model JPEG is encoded counts too.
    with ExitStack() as held, image:
        pillow_format = image.format or ""
        width, height = image.size
        if width * height > max_pixels:
            raise ImageRejected(
                f"too many pixels: {width}x{height} is {width * height / 1e6:.1f} "
                f"megapixels, the limit is {max_pixels / 1e6:g} megapixels"
            )
        content_type = _CONTENT_TYPES[pillow_format]
        if pillow_format == "HEIF":
            content_type = image.get_format_mimetype() or content_type
        label = _LABELS[pillow_format]
        with _decoding_errors(label):
            yield _Source(
                image=image,
                pillow_format=pillow_format,
                label=label,
                content_type=content_type,
                original_mode=image.mode,
                icc_profile=image.info.get("icc_profile") or None,
                data=data,
                original_size=image.size,
                max_decode_bytes=max_decode_bytes,
                held=held,
            )


@contextmanager
def _decoding_errors(label: str) -> Iterator[None]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageRejected(f"too many pixels (decompression bomb protection): {error}") from error
    except Exception as error:
        # Pillow's plugins and codecs signal malformed input with many exception
        # types (OSError, SyntaxError, ValueError, struct.error, EOFError, zlib.error,
        # IndexError...); every one of them means "this file cannot be decoded".
        raise ImageRejected(f"corrupt or truncated {label} data: {_describe(error)}") from error


def _describe(error: Exception) -> str:
    text = str(error).strip()
    return text or type(error).__name__


def _sniff(data: bytes) -> tuple[str, bool] | None:
    """(label, accepted) from magic bytes, or None when unknown. Only used to name
    the format in rejection reasons; Pillow decides what really opens."""
    head = data[:64]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG", True
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG", True
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF", True
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP", True
    if head[:2] == b"BM" and len(head) >= 18 and head[14] in (12, 16, 40, 52, 56, 64, 108, 124):
        return "BMP", True  # the DIB header size, so text starting with "BM" is not a BMP
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF", True
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF", False
        if brand in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"):
            return "HEIC/HEIF", True
        return "MP4/QuickTime media", False
    for magic, label in _UNSUPPORTED_MAGIC:
        if head.startswith(magic):
            return label, False
    lowered = head.lstrip().lower()
    if lowered.startswith((b"<svg", b"<?xml")) and b"<svg" in data[:4096].lower():
        return "SVG", False
    if lowered.startswith((b"<!doctype html", b"<html")):
        return "HTML document", False
    if _looks_like_text(data):
        return "text", False
    return None


_UNSUPPORTED_MAGIC: Final = (
    (b"%PDF", "PDF document"),
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"8BPS", "Photoshop PSD"),
    (b"\x00\x00\x01\x00", "ICO icon"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"PK\x03\x04", "ZIP archive"),
    (b"\x1f\x8b", "gzip archive"),
    (b"RIFF", "RIFF audio/video"),
    (b"\x1a\x45\xdf\xa3", "Matroska/WebM video"),
    (b"OggS", "Ogg media"),
    (b"ID3", "MP3 audio"),
    (b"\x7fELF", "ELF executable"),
)


def _looks_like_text(data: bytes) -> bool:
    sample = data[:4096]
    if b"\x00" in sample:
        return False
    decoded = sample.decode("utf-8", errors="replace")
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in decoded)
    return printable >= 0.95 * len(decoded)


def _unidentified_reason(data: bytes, sniffed: tuple[str, bool] | None) -> str:
    if sniffed is not None:  # looked like an accepted format, but Pillow cannot parse it
        return f"corrupt or truncated {sniffed[0]} data: the header cannot be read"
    return (
        f"not an image: unrecognised file format ({len(data)} bytes, accepted: {ACCEPTED_FORMATS})"
    )


# --- Preparing for the model ---------------------------------------------------


def _side_for_area(size: tuple[int, int], max_side: int, max_area: int | None) -> int:
    """The long-side bound that keeps an image of this aspect within ``max_area``."""
    width, height = size
    if max_area is None or width * height <= max_area or min(width, height) == 0:
        return max_side
    side = int(math.sqrt(max_area * max(width, height) / min(width, height)))
    return max(1, min(max_side, side))


def _prepare(
    source: _Source,
    data: bytes,
    max_side: int,
    max_bytes: int,
    native_formats: frozenset[str] = frozenset({"jpeg", "png"}),
) -> tuple[PreparedImage, Image.Image | None]:
    image = source.image
    if _can_pass_through(source, data, max_side, max_bytes, native_formats):
        width, height = image.size
        prepared = PreparedImage(
            model_bytes=data,
            model_format=_MODEL_FORMATS[source.pillow_format],
            content_type=source.content_type,
            width=width,
            height=height,
            passed_through=True,
        )
        return prepared, None
    width, height = image.size
    rendered = _render(source, max_side, draft_gap=1, resample=MODEL_RESAMPLE)
    orientation = _orientation(image)
    if orientation in _SWAPS_AXES:
        width, height = height, width
    model_bytes = _encode_within(rendered, max_bytes, _icc_for(source, rendered.mode))
    prepared = PreparedImage(
        model_bytes=model_bytes,
        model_format="jpeg",
        content_type=source.content_type,
        width=width,
        height=height,
        passed_through=False,
    )
    return prepared, rendered


def _can_pass_through(
    source: _Source,
    data: bytes,
    max_side: int,
    max_bytes: int,
    native_formats: frozenset[str] = frozenset({"jpeg", "png"}),
) -> bool:
    """True when the original bytes are fine for the model as they are. Reads headers
    only: this must stay in the microsecond range for compliant uploads."""
    image = source.image
    width, height = image.size
    if len(data) > max_bytes or width > max_side or height > max_side:
        return False
    if _MODEL_FORMATS.get(source.pillow_format) not in native_formats:
        return False
    if source.pillow_format in ("GIF", "WEBP"):
        # Models read the first frame of an animation; we send exactly that frame
        # (converted), and pass through only still images without transparency.
        return (
            not getattr(image, "is_animated", False)
            and image.mode in (("L", "P") if source.pillow_format == "GIF" else ("L", "RGB"))
            and "transparency" not in image.info
            and _orientation(image) == 1
        )
    if source.pillow_format in ("JPEG", "MPO"):
        # JPEG getexif reads the APP1 segment already parsed by open: no decode.
        return image.mode in ("L", "RGB") and _orientation(image) == 1
    if source.pillow_format == "PNG":
        # PNG getexif would decode the image (eXIf may follow IDAT): walk chunks instead.
        png = _scan_png(data)
        return (
            png is not None
            and png.bit_depth == 8
            and png.color_type in (0, 2, 3)  # L, RGB, P; alpha is flattened instead
            and not png.has_transparency
            and png.orientation == 1
        )
    return False


@dataclass
class _PngFacts:
    bit_depth: int
    color_type: int
    has_transparency: bool = False
    orientation: int = 1


_XMP_KEYWORD: Final = b"XML:com.adobe.xmp"


def _scan_png(data: bytes) -> _PngFacts | None:
    """IHDR facts, tRNS presence and EXIF/XMP orientation from the chunk headers;
    None when the chunk structure is not what it should be (then we decode)."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        return None
    bit_depth, color_type = data[24], data[25]
    facts = _PngFacts(bit_depth=bit_depth, color_type=color_type)
    pos = 8
    end = len(data)
    while pos + 8 <= end:
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = pos + 8
        if body + length + 4 > end:
            return None
        if kind == b"tRNS":
            facts.has_transparency = True
        elif kind == b"eXIf":
            facts.orientation = _exif_orientation(data[body : body + length])
        elif kind in (b"iTXt", b"zTXt", b"tEXt") and data.startswith(_XMP_KEYWORD, body):
            # XMP may carry tiff:Orientation, which Pillow honours: let the decoder decide.
            if kind == b"zTXt" or data.find(b"Orientation", body, body + length) != -1:
                facts.orientation = 0
        elif kind == b"IEND":
            return facts
        pos = body + length + 4
    return None


def _exif_orientation(exif: bytes) -> int:
    parsed = Image.Exif()
    try:
        parsed.load(exif)
        value = parsed.get(_ORIENTATION_TAG, 1)
    except (SyntaxError, ValueError, struct.error, OSError, KeyError, IndexError, TypeError):
        return 0  # unreadable EXIF: not "known to be upright", so no pass-through
    return value if isinstance(value, int) else 0


def _orientation(image: Image.Image) -> int:
    """EXIF (or XMP) orientation, 1 when absent. An unreadable EXIF block is
    treated as absent: it must not reject an otherwise decodable photo."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except (SyntaxError, ValueError, struct.error, KeyError, IndexError, TypeError):
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


# --- Decode budget ---------------------------------------------------------------

# Bytes per pixel of Pillow's storage: 1 for 1/L/P, 2 for I;16*, 4 for everything
# else (RGB is stored as RGBX, LA and PA in four bytes too).
_ONE_BYTE_MODES: Final = frozenset({"1", "L", "P"})
# Measured peaks of the decoders beyond Pillow's own storage (docs/decisions.md):
# libwebp's animation decoder (used for every WebP) keeps two RGBA canvases and
# hands the frame over as a copy: 16 bytes per pixel in all. libheif keeps YCbCr
# planes and an interleaved copy next to Pillow's image: 7.3 (RGB) / 8.3 (RGBA)
# bytes per pixel measured at 8 bits, 8.0 / 12.2 at 10 bits; these carry ~15 % margin.
_WEBP_BYTES_PER_PIXEL: Final = 16.0
_HEIF_BYTES_PER_PIXEL: Final = {  # (has alpha, more than 8 bits)
    (False, False): 8.5,
    (True, False): 9.5,
    (False, True): 9.5,
    (True, True): 14.0,
}
_JPEG_SOS: Final = b"\xff\xda"
_JPEG_EOI: Final = b"\xff\xd9"
_TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH, _TIFF_ROWS_PER_STRIP = 322, 323, 278
_TIFF_BITS_PER_SAMPLE, _TIFF_SAMPLES_PER_PIXEL, _TIFF_PLANAR_CONFIG = 258, 277, 284


def _storage_bytes(mode: str, size: tuple[int, int]) -> int:
    per_pixel = 1 if mode in _ONE_BYTE_MODES else 2 if mode.startswith("I;16") else 4
    return size[0] * size[1] * per_pixel


def _decode_cost(source: _Source) -> int:
    """Peak bytes the decoder of ``source`` needs at its current (draft) scale."""
    image = source.image
    pixels = image.width * image.height
    storage = _storage_bytes(image.mode, image.size)
    fmt = source.pillow_format
    if fmt == "WEBP":
        return math.ceil(pixels * _WEBP_BYTES_PER_PIXEL)
    if fmt == "HEIF":
        alpha = image.mode in ("RGBA", "LA", "RGBa")
        deep = int(image.info.get("bit_depth") or 8) > 8
        return math.ceil(pixels * _HEIF_BYTES_PER_PIXEL[(alpha, deep)])
    if fmt in _DRAFTABLE:
        return storage + _jpeg_coefficient_bytes(source)
    if fmt == "TIFF":
        return storage + _tiff_chunk_bytes(image)
    return storage  # PNG, GIF, BMP decode row by row straight into the image


def _jpeg_coefficient_bytes(source: _Source) -> int:
    """Progressive and other multi-scan JPEGs keep every DCT coefficient of the full
    image (2 bytes per sample, whatever the draft scale) until the last scan."""
    data = source.data
    first_scan = _jpeg_first_scan(data)
    if first_scan < 0:
        return 0
    end = data.find(_JPEG_EOI, first_scan)
    scans = data.count(_JPEG_SOS, first_scan, end if end >= 0 else len(data))
    if scans <= 1 and not source.image.info.get("progressive"):
        return 0  # one interleaved scan: decoded a row of blocks at a time
    layers = getattr(source.image, "layer", None) or [(0, 1, 1, 0)] * len(source.original_mode)
    h_max = max(layer[1] for layer in layers) or 1
    v_max = max(layer[2] for layer in layers) or 1
    width, height = source.original_size
    total = 0
    for _, h, v, _ in layers:
        blocks_x = math.ceil(math.ceil(width * h / h_max) / 8)
        blocks_y = math.ceil(math.ceil(height * v / v_max) / 8)
        total += blocks_x * blocks_y * 64 * 2
    return total


def _jpeg_first_scan(data: bytes) -> int:
    """Offset of the main image's first SOS marker, walking the marker segments (so
    an EXIF thumbnail inside APP1 is skipped); -1 when there is none."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return -1
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == _JPEG_SOS[1]:
            return pos
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length field
            pos += 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return -1


def _tiff_chunk_bytes(image: Image.Image) -> int:
    """libtiff decodes one strip or tile at a time into a buffer of its raw size; one
    strip may be the whole image (RowsPerStrip = height) at 16 bits per sample."""
    tags = getattr(image, "tag_v2", {})
    bits = tags.get(_TIFF_BITS_PER_SAMPLE, (8,))
    bits_per_sample = max(bits) if isinstance(bits, tuple) and bits else int(bits or 8)
    samples = int(tags.get(_TIFF_SAMPLES_PER_PIXEL, 1) or 1)
    if tags.get(_TIFF_PLANAR_CONFIG, 1) == 2:
        samples = 1  # planar: one plane per strip
    width, height = image.size
    if _TIFF_TILE_WIDTH in tags and _TIFF_TILE_LENGTH in tags:
        chunk_pixels = int(tags[_TIFF_TILE_WIDTH]) * int(tags[_TIFF_TILE_LENGTH])
    else:
        rows = int(tags.get(_TIFF_ROWS_PER_STRIP, height) or height)
        chunk_pixels = width * min(max(rows, 1), height)
    return math.ceil(chunk_pixels * samples * bits_per_sample / 8)


class _DecodeBudget:
    """Bytes of decodes in progress in this process. Decodes wait while the sum would
    exceed the capacity; one decode alone always runs (the per-image check bounds it).
    The search path decodes several query images from threads: they queue here."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._in_use = 0
        self._ready = threading.Condition()

    @contextmanager
    def reserve(self, cost: int) -> Iterator[None]:
        with self._ready:
            while self._in_use and self._in_use + cost > self._capacity:
                self._ready.wait()
            self._in_use += cost
        try:
            yield
        finally:
            with self._ready:
                self._in_use -= cost
                self._ready.notify_all()


_DECODES: Final = _DecodeBudget(MAX_DECODE_BYTES)


def _check_decode_budget(source: _Source) -> int:
    cost = _decode_cost(source)
    if cost > source.max_decode_bytes:
        width, height = source.original_size
        raise ImageRejected(
            f"too large to decode: a {width}x{height} {source.label} ({source.original_mode}) "
            f"needs about {cost / 2**20:.0f} MiB of memory to decode, the limit is "
            f"{source.max_decode_bytes / 2**20:.0f} MiB"
        )
    return cost


# --- Decoding, normalising, resizing -------------------------------------------


def _render(
    source: _Source, box: int, *, draft_gap: int, resample: Image.Resampling
) -> Image.Image:
    """Decode the (first frame of the) image into an upright 8-bit L or RGB image
    that fits in ``box`` x ``box``. JPEGs are DCT-scaled while decoding to no less
    than ``draft_gap`` times the target, then resampled with ``resample``. The only
    full-size buffer is the decoded image itself: mode conversion, flattening and the
    integer pre-reduction run strip by strip, and the resize band by band."""
    image = source.image
    target = _fit(image.size, box)
    if target != image.size and source.pillow_format in _DRAFTABLE:
        image.draft(None, (target[0] * draft_gap, target[1] * draft_gap))
    cost = _check_decode_budget(source)
    if not source.reserved:  # one reservation per open image, held until it is closed
        source.held.enter_context(_DECODES.reserve(cost))
        source.reserved = True
    image.load()
    orientation = _orientation(image)
    rendered = _downscale(image, target, resample)
    if orientation in _TRANSPOSE:
        rendered = rendered.transpose(_TRANSPOSE[orientation])
    return rendered


def _fit(size: tuple[int, int], box: int) -> tuple[int, int]:
    """Largest size within ``box`` x ``box`` with the same aspect ratio; never larger."""
    width, height = size
    if width <= box and height <= box:
        return size
    scale = box / max(width, height)
    return (
        max(1, min(box, round(width * scale))),
        max(1, min(box, round(height * scale))),
    )


# Integer box-reduce first when shrinking by more than twice this factor (Pillow's
# ``reducing_gap``): cheap, and the resampling filter then reads few pixels. 2.0 is
# the gap Pillow documents as "nearly indistinguishable" from a plain resize.
_REDUCING_GAP: Final = 2.0
# Rows of the full-size image converted at once (mode, transparency): ~16 MB each.
_STRIP_BYTES: Final = 16 * 1024 * 1024
_BANDED_RESIZE_PIXELS: Final = 1_000_000
_FILTER_SUPPORT: Final = {
    Image.Resampling.NEAREST: 0.5,
    Image.Resampling.BOX: 0.5,
    Image.Resampling.BILINEAR: 1.0,
    Image.Resampling.HAMMING: 1.0,
    Image.Resampling.BICUBIC: 2.0,
    Image.Resampling.LANCZOS: 3.0,
}

_Normaliser = Callable[[Image.Image], Image.Image]


def _resize(image: Image.Image, target: tuple[int, int], resample: Image.Resampling) -> Image.Image:
    """Resize an image that is already small and in a final mode (L or RGB)."""
    if image.size == target:
        return image
    return image.resize(target, resample, reducing_gap=_REDUCING_GAP)


def _downscale(
    image: Image.Image, target: tuple[int, int], resample: Image.Resampling
) -> Image.Image:
    """``image`` (any mode, loaded) as 8-bit L or RGB of ``target`` size, transparency
    flattened on white, without a full-size copy. Flattening commutes with resampling
    (both are linear in premultiplied colour), so flattening first is what Pillow's
    premultiplied resize followed by a flatten gives, and everything after is L/RGB."""
    normalise = _normaliser(image)
    factor_x = int(image.width / target[0] / _REDUCING_GAP) or 1
    factor_y = int(image.height / target[1] / _REDUCING_GAP) or 1
    box = (0.0, 0.0, float(image.width), float(image.height))
    if factor_x > 1 or factor_y > 1:
        image = _reduce_in_strips(image, (factor_x, factor_y), normalise)
        box = (0.0, 0.0, box[2] / factor_x, box[3] / factor_y)
        normalise = None
    if image.size == target and box == (0.0, 0.0, image.width, image.height):
        return image if normalise is None else _in_strips(image, normalise)
    return _resize_in_bands(image, target, resample, box, normalise)


def _strips(height: int, rows: int) -> list[tuple[int, int]]:
    return [(top, min(height, top + rows)) for top in range(0, height, rows)]


def _assemble(
    fn: Callable[[tuple[int, int]], Image.Image],
    items: list[tuple[int, int]],
    size: tuple[int, int],
    tops: list[int],
) -> Image.Image:
    """Paste ``fn(item)`` at row ``top`` for each item, in order, into one image of
    ``size``. Pillow releases the GIL while converting and resampling: on two cores,
    two pieces are computed at once (and only about two are held at a time)."""
    result: Image.Image | None = None

    def paste(piece: Image.Image, top: int) -> None:
        nonlocal result
        if result is None:
            result = Image.new(piece.mode, size)
        result.paste(piece, (0, top))

    if len(items) == 1 or _cpus() == 1:
        for item, top in zip(items, tops, strict=True):
            paste(fn(item), top)
    else:
        with ThreadPoolExecutor(max_workers=2) as pool:
            queue = iter(items)
            ahead = deque(pool.submit(fn, item) for item in itertools.islice(queue, 2))
            for top in tops:
                piece = ahead.popleft().result()
                following = next(queue, None)
                if following is not None:
                    ahead.append(pool.submit(fn, following))
                paste(piece, top)
    assert result is not None
    return result


def _reduce_in_strips(
    image: Image.Image, factor: tuple[int, int], normalise: _Normaliser | None
) -> Image.Image:
    """``normalise(image).reduce(factor)``, converting one strip of rows at a time."""
    if normalise is None:
        return image.reduce(factor)  # L/RGB: read in place, the result is small
    factor_x, factor_y = factor
    rows = max(factor_y, _STRIP_BYTES // (image.width * 4) // factor_y * factor_y)
    strips = _strips(image.height, rows)
    return _assemble(
        lambda rows: normalise(image.crop((0, rows[0], image.width, rows[1]))).reduce(factor),
        strips,
        (-(-image.width // factor_x), -(-image.height // factor_y)),
        [top // factor_y for top, _ in strips],
    )


def _in_strips(image: Image.Image, normalise: _Normaliser) -> Image.Image:
    """``normalise(image)`` one strip at a time (an image already within the box)."""
    strips = _strips(image.height, max(1, _STRIP_BYTES // (image.width * 4)))
    return _assemble(
        lambda rows: normalise(image.crop((0, rows[0], image.width, rows[1]))),
        strips,
        image.size,
        [top for top, _ in strips],
    )


def _resize_in_bands(
    image: Image.Image,
    target: tuple[int, int],
    resample: Image.Resampling,
    box: tuple[float, float, float, float] | None = None,
    normalise: _Normaliser | None = None,
) -> Image.Image:
    """Resize ``normalise(image)``'s ``box`` to ``target`` band by band. A band of
    output rows maps to the same source coordinates as in a one-piece resize and its
    filter reads across the band edges, so there is no seam. Without ``normalise``
    each band reads the source in place; with it, each band converts only a crop of
    the rows it reads (plus the filter's reach). Two bands run on two cores."""
    if box is None:
        box = (0.0, 0.0, float(image.width), float(image.height))
    left, top, right, bottom = box
    width, height = target
    scale = (bottom - top) / height
    reach = _FILTER_SUPPORT.get(resample, 3.0) * max(scale, 1.0) + 2
    bands = 1
    if normalise is not None:
        bands = math.ceil(image.width * (bottom - top) * 4 / _STRIP_BYTES)
    if width * height >= _BANDED_RESIZE_PIXELS and _cpus() > 1:
        bands = max(bands, 2)
    bands = max(1, min(bands, height))
    edges = [height * i // bands for i in range(bands + 1)]

    def band(rows: tuple[int, int]) -> Image.Image:
        first, last = rows
        source_top, source_bottom = top + first * scale, top + last * scale
        if normalise is None:
            return image.resize(
                (width, last - first), resample, (left, source_top, right, source_bottom)
            )
        crop_top = max(0, math.floor(source_top - reach))
        crop_bottom = min(image.height, math.ceil(source_bottom + reach))
        piece = normalise(image.crop((0, crop_top, image.width, crop_bottom)))
        return piece.resize(
            (width, last - first),
            resample,
            (left, source_top - crop_top, right, source_bottom - crop_top),
        )

    rows = list(itertools.pairwise(edges))
    if len(rows) == 1:
        return band(rows[0])
    return _assemble(band, rows, target, edges[:-1])


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _normaliser(image: Image.Image) -> _Normaliser | None:
    """A function taking a piece of ``image`` to 8-bit L or RGB with transparency
    flattened on white; None when the image is L or RGB already."""
    mode = image.mode
    transparent = "transparency" in image.info
    if mode in ("L", "RGB") and not transparent:
        return None
    if mode.startswith("I;16"):
        # Full 16-bit range to 8 bits (convert("L") alone would clip at 255).
        return lambda piece: piece.convert("I").point(lambda v: v / 257).convert("L")
    if mode in ("I", "F"):
        return _stretch_to_l(image)
    if mode in ("L", "RGB"):  # with a transparent colour
        target = "LA" if mode == "L" else "RGBA"
    elif mode in ("P", "PA"):
        target = "RGBA" if transparent or mode == "PA" else "RGB"
    elif mode == "1":
        target = "L"
    elif mode in ("LA", "La"):
        target = "LA"
    elif mode in ("RGBA", "RGBa"):
        target = "RGBA"
    else:
        target = "RGB"  # CMYK, YCbCr, LAB, HSV, RGBX...
    return lambda piece: _flatten(piece if piece.mode == target else piece.convert(target))


def _stretch_to_l(image: Image.Image) -> _Normaliser:
    """32-bit int or float pixels have no fixed range. Floats within 0..1 are the
    usual normalised convention (x 255); values already within 0..255 are kept;
    anything else is mapped min..max onto 0..255. The range is the whole image's."""
    extrema = image.getextrema()  # one band: (min, max)
    low, high = float(extrema[0]), float(extrema[1])  # type: ignore[arg-type]
    if image.mode == "F" and low >= 0 and high <= 1:
        return lambda piece: piece.point(lambda v: v * 255.0).convert("L")
    if low >= 0 and high <= 255:
        return lambda piece: piece.convert("L")
    if high == low:  # constant, outside 0..255
        return lambda piece: Image.new("L", piece.size, 255 if high > 0 else 0)
    scale = 255.0 / (high - low)
    offset = -low * scale
    return lambda piece: piece.point(lambda v: v * scale + offset).convert("L")


def _flatten(image: Image.Image) -> Image.Image:
    """Composite transparency on white: what a person sees on a web page, and a
    deterministic input for the model (hidden colour under alpha 0 is arbitrary)."""
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (_WHITE, _WHITE, _WHITE))
        background.paste(image, (0, 0), image)
        return background
    if image.mode == "LA":
        background = Image.new("L", image.size, _WHITE)
        background.paste(image.getchannel("L"), (0, 0), image.getchannel("A"))
        return background
    return image


# --- Encoding ------------------------------------------------------------------


def _colour_family(mode: str) -> str | None:
    if mode in ("RGB", "RGBA", "RGBX", "RGBa", "P", "PA"):
        return "RGB"
    if mode in ("1", "L", "LA", "La", "F") or mode.startswith("I"):
        return "L"
    return None  # CMYK, YCbCr, LAB...


def _icc_for(source: _Source, output_mode: str) -> bytes | None:
    """Keep the colour profile when it still describes the output (RGB stays RGB,
    grey stays grey); a CMYK profile on converted RGB pixels would be wrong."""
    if _colour_family(source.original_mode) == output_mode:
        return source.icc_profile
    return None


def _encode_jpeg(image: Image.Image, quality: int, icc_profile: bytes | None) -> bytes:
    buffer = io.BytesIO()
    options: dict[str, object] = {"quality": quality}
    if icc_profile:
        options["icc_profile"] = icc_profile
    image.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def _encode_within(image: Image.Image, max_bytes: int, icc_profile: bytes | None) -> bytes:
    """JPEG at MODEL_JPEG_QUALITY, then lower qualities, then smaller sizes, until it
    fits ``max_bytes`` (only pathological content such as noise gets past q90)."""
    current = image
    while True:
        for quality in (MODEL_JPEG_QUALITY, *_FALLBACK_QUALITIES):
            encoded = _encode_jpeg(current, quality, icc_profile)
            if len(encoded) <= max_bytes:
                return encoded
        if max(current.size) <= 64:
            raise ImageRejected(
                f"cannot encode the image within {max_bytes} bytes for the embedding model"
            )
        smaller = _fit(current.size, max(1, int(max(current.size) * 0.75)))
        current = _resize(current, smaller, MODEL_RESAMPLE)


def _encode_thumbnail(source: _Source, image: Image.Image) -> bytes:
    return _encode_jpeg(image, THUMBNAIL_JPEG_QUALITY, _icc_for(source, image.mode))


def _check_long_side(long_side: int) -> None:
    if long_side < 1:
        raise ValueError("long_side must be at least 1")
