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
import os
import struct
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

import pillow_heif
from PIL import Image, ImageFile, UnidentifiedImageError

from imagesearch.errors import ImageRejected
from imagesearch.resources import THUMBNAIL_LONG_SIDE

__all__ = [
    "ACCEPTED_FORMATS",
    "MAX_MODEL_BYTES",
    "MAX_PIXELS",
    "MAX_SIDE",
    "PreparedImage",
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


@dataclass(frozen=True)
class PreparedImage:
    """What goes to the embedding model, and facts about the original."""

    model_bytes: bytes = field(repr=False)  # JPEG or PNG, within MAX_SIDE and MAX_MODEL_BYTES
    model_format: str  # "jpeg" | "png"
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
) -> PreparedImage:
    """Validate ``data`` and return the bytes to embed. Compliant JPEG/PNG are only
    header-parsed (pair with ``make_thumbnail``, which decodes). Raises ImageRejected."""
    with _open(data, max_pixels) as source:
        prepared, _ = _prepare(source, data, max_side, max_bytes)
        return prepared


def make_thumbnail(data: bytes, long_side: int = THUMBNAIL_LONG_SIDE) -> bytes:
    """JPEG thumbnail with ``long_side`` pixels on its long side (never upscaled),
    EXIF orientation applied. Decodes the whole image: raises ImageRejected for
    corrupt or truncated data."""
    _check_long_side(long_side)
    with _open(data, MAX_PIXELS) as source:
        thumbnail = _render(source, long_side, draft_gap=2, resample=THUMBNAIL_RESAMPLE)
        return _encode_thumbnail(source, thumbnail)


def prepare_with_thumbnail(
    data: bytes,
    long_side: int = THUMBNAIL_LONG_SIDE,
    *,
    max_side: int = MAX_SIDE,
    max_bytes: int = MAX_MODEL_BYTES,
    max_pixels: int = MAX_PIXELS,
) -> tuple[PreparedImage, bytes]:
    """``prepare_image`` and ``make_thumbnail`` from one open and at most one decode:
    a converted image's thumbnail is cut from the already downscaled model image."""
    _check_long_side(long_side)
    with _open(data, max_pixels) as source:
        prepared, model_image = _prepare(source, data, max_side, max_bytes)
        if model_image is None:  # passed through: decode now, at thumbnail scale
            thumbnail = _render(source, long_side, draft_gap=2, resample=THUMBNAIL_RESAMPLE)
        else:
            target = _fit(model_image.size, long_side)
            thumbnail = _resize(model_image, target, THUMBNAIL_RESAMPLE)
        return prepared, _encode_thumbnail(source, thumbnail)


# --- Opening and classifying ---------------------------------------------------


@dataclass
class _Source:
    image: Image.Image
    pillow_format: str
    label: str
    content_type: str
    original_mode: str
    icc_profile: bytes | None


@contextmanager
def _open(data: bytes, max_pixels: int) -> Iterator[_Source]:
    """Open ``data`` (header only) as one of the accepted formats, enforce the pixel
    limit, and turn every decoding failure inside the block into ImageRejected."""
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
    with image:
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


def _prepare(
    source: _Source, data: bytes, max_side: int, max_bytes: int
) -> tuple[PreparedImage, Image.Image | None]:
    image = source.image
    if _can_pass_through(source, data, max_side, max_bytes):
        width, height = image.size
        prepared = PreparedImage(
            model_bytes=data,
            model_format="png" if source.pillow_format == "PNG" else "jpeg",
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


def _can_pass_through(source: _Source, data: bytes, max_side: int, max_bytes: int) -> bool:
    """True when the original bytes are fine for the model as they are. Reads headers
    only: this must stay in the microsecond range for compliant uploads."""
    image = source.image
    width, height = image.size
    if len(data) > max_bytes or width > max_side or height > max_side:
        return False
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


# --- Decoding, normalising, resizing -------------------------------------------


def _render(
    source: _Source, box: int, *, draft_gap: int, resample: Image.Resampling
) -> Image.Image:
    """Decode the (first frame of the) image into an upright 8-bit L or RGB image
    that fits in ``box`` x ``box``. JPEGs are DCT-scaled while decoding to no less
    than ``draft_gap`` times the target, then resampled with ``resample``."""
    image = source.image
    target = _fit(image.size, box)
    if target != image.size and source.pillow_format in _DRAFTABLE:
        image.draft(None, (target[0] * draft_gap, target[1] * draft_gap))
    image.load()
    orientation = _orientation(image)
    rendered = _resize(_normalise_mode(image), target, resample)
    if orientation in _TRANSPOSE:
        rendered = rendered.transpose(_TRANSPOSE[orientation])
    return _flatten(rendered)


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


def _resize(image: Image.Image, target: tuple[int, int], resample: Image.Resampling) -> Image.Image:
    if image.size == target:
        return image
    if target[0] * target[1] >= _BANDED_RESIZE_PIXELS and target[1] >= 2 and _cpus() > 1:
        return _resize_in_bands(image, target, resample)
    # reducing_gap: integer box-reduce first when shrinking a lot (fast), then resample.
    return image.resize(target, resample, reducing_gap=3.0)


_BANDED_RESIZE_PIXELS: Final = 1_000_000


def _resize_in_bands(
    image: Image.Image, target: tuple[int, int], resample: Image.Resampling
) -> Image.Image:
    """Resize the top and bottom halves on two cores (Pillow releases the GIL while
    resampling). Each band maps its rows to the same source coordinates as a
    one-piece resize, and the filter reads across the band edge, so there is no seam."""
    width, height = target
    top_rows = height // 2
    split = image.height * top_rows / height
    image.load()  # both threads then only read the pixels
    with ThreadPoolExecutor(max_workers=1) as pool:
        top = pool.submit(
            image.resize, (width, top_rows), resample, (0, 0, image.width, split), 3.0
        )
        bottom = image.resize(
            (width, height - top_rows), resample, (0, split, image.width, image.height), 3.0
        )
        result = Image.new(bottom.mode, target)
        result.paste(top.result(), (0, 0))
    result.paste(bottom, (0, top_rows))
    return result


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _normalise_mode(image: Image.Image) -> Image.Image:
    """One of L, RGB, LA, RGBA: modes Lanczos resampling handles (alpha premultiplied)."""
    mode = image.mode
    transparent = "transparency" in image.info
    if mode in ("L", "RGB"):
        if not transparent:
            return image
        return image.convert("LA" if mode == "L" else "RGBA")
    if mode in ("LA", "RGBA"):
        return image
    if mode in ("P", "PA"):
        return image.convert("RGBA" if transparent or mode == "PA" else "RGB")
    if mode == "1":
        return image.convert("L")
    if mode.startswith("I;16"):
        # Full 16-bit range to 8 bits (convert("L") alone would clip at 255).
        return image.convert("I").point(lambda v: v / 257).convert("L")
    if mode in ("I", "F"):
        return _stretch_to_l(image)
    if mode == "La":
        return image.convert("LA")
    if mode == "RGBa":
        return image.convert("RGBA")
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX...


def _stretch_to_l(image: Image.Image) -> Image.Image:
    """32-bit int or float pixels have no fixed range. Floats within 0..1 are the
    usual normalised convention (x 255); values already within 0..255 are kept;
    anything else is mapped min..max onto 0..255."""
    extrema = image.getextrema()  # one band: (min, max)
    low, high = float(extrema[0]), float(extrema[1])  # type: ignore[arg-type]
    if image.mode == "F" and low >= 0 and high <= 1:
        return image.point(lambda v: v * 255.0).convert("L")
    if low >= 0 and high <= 255:
        return image.convert("L")
    if high == low:  # constant, outside 0..255
        return Image.new("L", image.size, 255 if high > 0 else 0)
    scale = 255.0 / (high - low)
    offset = -low * scale
    return image.point(lambda v: v * scale + offset).convert("L")


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
