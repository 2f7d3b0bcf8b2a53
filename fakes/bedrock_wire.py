"""Shared pieces of the fake Bedrock's model protocols: errors, parsed requests and
the deterministic embedding function (one vector space per model)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, UnidentifiedImageError

# HTTP status of each error code, from botocore's bedrock-runtime model (InvokeModel),
# plus the auth errors the AWS front door returns.
ERROR_STATUS: dict[str, int] = {
    "ValidationException": 400,
    "ServiceQuotaExceededException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
    "UnrecognizedClientException": 403,
    "MissingAuthenticationTokenException": 403,
    "ExpiredTokenException": 403,
    "UnknownOperationException": 404,
}
DEFAULT_MESSAGES: dict[str, str] = {
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "ModelNotReadyException": "Model is not ready to serve inference requests.",
    "ServiceQuotaExceededException": "Your request exceeds the service quota for your account.",
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
    "ResourceNotFoundException": "Could not resolve the foundation model from the provided "
    "model identifier.",
    "ModelTimeoutException": "Model has timed out in processing the request.",
    "ModelErrorException": "The model encountered an error processing the request.",
    "InternalServerException": "The server encountered an internal error.",
    "ServiceUnavailableException": "The service is temporarily unavailable.",
    "ValidationException": "Malformed input request, please reformat your input and try again.",
    "UnrecognizedClientException": "The security token included in the request is invalid.",
    "ExpiredTokenException": "The security token included in the request is expired",
}


class BedrockError(Exception):
    """An error answer: code, message and HTTP status as Bedrock sends them."""

    def __init__(self, code: str, message: str | None = None, status: int | None = None) -> None:
        self.code = code
        self.message = message if message is not None else DEFAULT_MESSAGES.get(code, code)
        self.status = status if status is not None else ERROR_STATUS.get(code, 400)
        super().__init__(f"{self.code} ({self.status}): {self.message}")


def malformed(detail: str) -> BedrockError:
    return BedrockError(
        "ValidationException",
        f"Malformed input request: {detail}, please reformat your input and try again.",
    )


def invalid(message: str) -> BedrockError:
    return BedrockError("ValidationException", message)


@dataclass(frozen=True)
class Item:
    """One input to embed: text, decoded image bytes, or both (fused)."""

    text: str | None = None
    image: bytes | None = None


@dataclass(frozen=True)
class Request:
    """A validated request: what to embed and how, for any model."""

    items: tuple[Item, ...]
    dimension: int
    purpose: str | None = None
    tokens: int = 0
    image_formats: tuple[str, ...] = ()
    image_pixels: int | None = None  # the largest image's pixel count
    extra: dict[str, object] = field(default_factory=dict)


# --- Images -------------------------------------------------------------------------

_MAGIC = {
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpeg": (b"\xff\xd8\xff",),
    "gif": (b"GIF87a", b"GIF89a"),
}


def sniff(data: bytes) -> str | None:
    for name, magics in _MAGIC.items():
        if data.startswith(magics):
            return name
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def b64decode_strict(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"Invalid image: {what} is not valid base64.") from None


def decode_image(data: bytes, formats: frozenset[str], max_bytes: int) -> tuple[str, int]:
    """(format, pixels) of an image the model accepts; BedrockError otherwise."""
    if len(data) > max_bytes:
        raise invalid(f"Image size {len(data)} bytes exceeds the maximum of {max_bytes} bytes.")
    fmt = sniff(data)
    if fmt not in formats:
        names = ", ".join(sorted(f.upper() for f in formats))
        raise invalid(f"Unsupported image format. Supported formats: {names}.")
    try:
        with Image.open(io.BytesIO(data)) as decoded:
            width, height = decoded.size
            decoded.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise invalid("Unable to process provided image.") from None
    return fmt, width * height


# --- The embedding function ------------------------------------------------------

# Palette the fake "sees" in; soft-assigned, so in-between colours share weight.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (250, 140, 20),
    "yellow": (240, 220, 40),
    "green": (40, 170, 50),
    "cyan": (30, 200, 210),
    "blue": (30, 60, 220),
    "purple": (130, 50, 170),
    "pink": (250, 150, 200),
    "brown": (130, 80, 35),
    "white": (245, 245, 245),
    "gray": (128, 128, 128),
    "black": (15, 15, 15),
}
COLOR_WORDS: dict[str, str] = {name: name for name in PALETTE} | {
    "crimson": "red",
    "scarlet": "red",
    "ruby": "red",
    "cherry": "red",
    "tangerine": "orange",
    "amber": "orange",
    "gold": "yellow",
    "golden": "yellow",
    "lemon": "yellow",
    "lime": "green",
    "emerald": "green",
    "teal": "cyan",
    "turquoise": "cyan",
    "aqua": "cyan",
    "navy": "blue",
    "azure": "blue",
    "cobalt": "blue",
    "violet": "purple",
    "lavender": "purple",
    "magenta": "pink",
    "rose": "pink",
    "chocolate": "brown",
    "tan": "brown",
    "ivory": "white",
    "snow": "white",
    "grey": "gray",
    "silver": "gray",
    "charcoal": "black",
}
_PALETTE_NAMES = tuple(PALETTE)
_PALETTE_RGB = np.array([PALETTE[n] for n in _PALETTE_NAMES], dtype=np.float64)
_HASH_BUCKETS = 64
_FEATURES = len(_PALETTE_NAMES) + 2 * _HASH_BUCKETS  # palette | text tokens | image bytes
_TEXT_TOKEN_WEIGHT = 0.35
_IMAGE_HASH_WEIGHT = 0.2
_COLOR_SIGMA = 40.0
# One projection per model: vectors of two models live in unrelated spaces, as real
# ones do, so a test that mixes them sees nonsense scores. Titan keeps the original seed.
PROJECTION_SEEDS: dict[str, int] = {"titan": 20231129, "nova": 20251028, "cohere": 20250415}


def _unit(values: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(values))
    return values / norm if norm > 0 else values


def _text_features(text: str) -> np.ndarray:
    features = np.zeros(_FEATURES)
    # Without a latin word ("0", "日本") the whole text is the token: like Titan, the fake
    # never answers a non-blank text with a zero vector.
    tokens = re.findall(r"[a-z]+", text.lower()) or [text]
    for token in tokens:
        colour = COLOR_WORDS.get(token)
        if colour is not None:
            features[_PALETTE_NAMES.index(colour)] += 1.0
        digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
        bucket = len(_PALETTE_NAMES) + digest[0] % _HASH_BUCKETS
        features[bucket] += 1.0 if digest[1] & 1 else -1.0
    palette = slice(0, len(_PALETTE_NAMES))
    words = slice(len(_PALETTE_NAMES), len(_PALETTE_NAMES) + _HASH_BUCKETS)
    features[palette] = _unit(features[palette])
    features[words] = _TEXT_TOKEN_WEIGHT * _unit(features[words])
    return features


def colour_histogram(image_bytes: bytes) -> dict[str, float]:
    """The soft palette histogram the fake sees in an image (weights sum to 1)."""
    with Image.open(io.BytesIO(image_bytes)) as image:
        small = image.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR)
    pixels = np.asarray(small, dtype=np.float64).reshape(-1, 3)
    distances = ((pixels[:, None, :] - _PALETTE_RGB[None, :, :]) ** 2).sum(axis=2)
    logits = -distances / (2 * _COLOR_SIGMA**2)
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    histogram = weights.mean(axis=0)
    return dict(zip(_PALETTE_NAMES, (float(v) for v in histogram), strict=True))


def _image_features(image_bytes: bytes) -> np.ndarray:
    features = np.zeros(_FEATURES)
    histogram = colour_histogram(image_bytes)
    features[: len(_PALETTE_NAMES)] = _unit(np.array([histogram[n] for n in _PALETTE_NAMES]))
    # Identity of the exact bytes, small: equal-coloured images still differ a little.
    seed = int.from_bytes(hashlib.sha256(image_bytes).digest()[:8], "little")
    noise = np.random.default_rng(seed).standard_normal(_HASH_BUCKETS)
    features[len(_PALETTE_NAMES) + _HASH_BUCKETS :] = _IMAGE_HASH_WEIGHT * _unit(noise)
    return features


@lru_cache(maxsize=32)
def _projection(dimension: int, space: str) -> np.ndarray:
    rng = np.random.default_rng([PROJECTION_SEEDS[space], dimension])
    return rng.standard_normal((dimension, _FEATURES)) / math.sqrt(dimension)


def fake_embedding(
    text: str | None, image_bytes: bytes | None, dimension: int, space: str
) -> list[float]:
    """The raw (not unit-norm) embedding of ``space``'s model for this input; text +
    image is the average of both unit feature vectors."""
    if text is None and image_bytes is None:
        raise ValueError("need text, image bytes or both")
    parts = []
    if text is not None:
        parts.append(_unit(_text_features(text)))
    if image_bytes is not None:
        parts.append(_unit(_image_features(image_bytes)))
    features = np.mean(parts, axis=0)
    return [float(v) for v in _projection(dimension, space) @ features]
