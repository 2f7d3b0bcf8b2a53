"""Request and response models of the search API (SPEC section 6, contract).

Requests are strict (``"10"`` is not an int, an object is not a string) and refuse
unknown fields, so a typo is an error instead of a silently ignored filter. The
OpenAPI document served at ``GET /openapi.json`` is generated from these models.
Pure pydantic: no AWS, numpy or Pillow imports here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from imagesearch.ports import MAX_TOP_K
from imagesearch.records import IMAGE_ID_PATTERN
from imagesearch.resources import MAX_KEY_BYTES

MAX_TEXT_CHARS = 1000
MAX_QUERY_PARTS = 10
MAX_CONTENT_TYPE_FILTERS = 10
MAX_FILENAME_CHARS = 512
MAX_PREFIX_CHARS = 1024
MAX_LIST_LIMIT = 100
DEFAULT_LIST_LIMIT = 50
DEFAULT_TOP_K = 10

# The image types the ingest path accepts (SPEC section 5): JPEG and PNG go to the
# model as they are, the others are converted.
UploadContentType = Literal[
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/gif",
    "image/bmp",
    "image/tiff",
    "image/heic",
    "image/heif",
]
UPLOAD_CONTENT_TYPES: tuple[str, ...] = get_args(UploadContentType)
ListStatus = Literal["indexed", "rejected", "failed"]

ImageId = Annotated[
    str,
    StringConstraints(pattern=IMAGE_ID_PATTERN.pattern),
    Field(description="32 hex characters, derived from the object key", examples=["0" * 32]),
]
QueryText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS),
    Field(description="Free text (English), 1 to 1000 characters"),
]
Base64Image = Annotated[
    str,
    StringConstraints(min_length=1),
    Field(
        description=(
            "Base64 of a JPEG, PNG, WebP, GIF, BMP, TIFF or HEIC image (a 'data:image/...;base64,'"
            " prefix is accepted). Request bodies are limited to 5 MB: search larger images by"
            " image_id after uploading them."
        ),
        json_schema_extra={"contentEncoding": "base64"},
    ),
]
ContentTypeFilter = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9.+-]+/[A-Za-z0-9.+-]+$", max_length=100),
]

Weight = Annotated[
    float,
    Field(allow_inf_nan=False, description="Non-zero; negative weights steer away"),
]


def _invalid(message: str) -> PydanticCustomError:
    # A custom error type keeps the message free of pydantic's "Value error, " prefix.
    return PydanticCustomError("invalid_request", message)


def _check_text(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise _invalid("text must not be blank")
    return value


def utf8_size(value: str, what: str) -> int:
    """Bytes of ``value`` in UTF-8, as S3 and DynamoDB count their limits; a lone
    surrogate (``"\\ud800"`` in JSON) cannot be encoded at all and is refused."""
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise _invalid(f"{what} must be valid Unicode (no lone surrogates)") from None


def _fits_a_key(value: str) -> str:
    size = utf8_size(value, "prefix")
    if size > MAX_KEY_BYTES:
        raise _invalid(
            f"prefix is {size} bytes in UTF-8; object keys are at most {MAX_KEY_BYTES} bytes"
        )
    return value


KeyPrefix = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_PREFIX_CHARS),
    AfterValidator(_fits_a_key),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class QueryPart(_Request):
    """One part of a weighted multi-part query: exactly one input and a weight."""

    text: QueryText | None = None
    image: Base64Image | None = None
    image_id: ImageId | None = None
    weight: Weight = 1.0

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        return _check_text(value)

    @model_validator(mode="after")
    def _one_input(self) -> QueryPart:
        given = [name for name in ("text", "image", "image_id") if getattr(self, name) is not None]
        if len(given) != 1:
            raise _invalid("each query part needs exactly one of text, image or image_id")
        if self.weight == 0:
            raise _invalid("weight must not be zero")
        return self


class SearchRequest(_Request):
    """Body of ``POST /search``."""

    text: QueryText | None = None
    image: Base64Image | None = None
    image_id: ImageId | None = None
    queries: Annotated[list[QueryPart], Field(min_length=1, max_length=MAX_QUERY_PARTS)] | None = (
        Field(
            default=None,
            description="Weighted multi-part query: weighted sum of unit vectors, renormalised",
        )
    )
    top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K)] = DEFAULT_TOP_K
    min_score: Annotated[float, Field(ge=-1.0, le=1.0, allow_inf_nan=False)] | None = None
    prefix: KeyPrefix | None = Field(
        default=None,
        description=(
            "Only keys starting with this prefix; a prefix outside the upload prefix is"
            " taken relative to it ('shoes/' means 'uploads/shoes/')"
        ),
    )
    content_type: (
        Annotated[list[ContentTypeFilter], Field(min_length=1, max_length=MAX_CONTENT_TYPE_FILTERS)]
        | None
    ) = Field(default=None, description="Only images of these content types")

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        return _check_text(value)

    @model_validator(mode="after")
    def _inputs(self) -> SearchRequest:
        direct = [name for name in ("text", "image", "image_id") if getattr(self, name) is not None]
        if self.queries is not None and direct:
            raise _invalid(
                f"queries cannot be combined with {', '.join(direct)}: put every input in queries"
            )
        if self.queries is None and not direct:
            raise _invalid("give at least one of text, image, image_id or queries")
        if self.image_id is not None and direct != ["image_id"]:
            raise _invalid(
                "image_id cannot be combined with text or image: use queries to mix them"
            )
        return self


class UploadRequest(_Request):
    """Body of ``POST /uploads``."""

    filename: Annotated[str, StringConstraints(min_length=1, max_length=MAX_FILENAME_CHARS)] = (
        Field(description="Path below the upload prefix, e.g. 'shoes/red.jpg'")
    )
    content_type: UploadContentType
    size: Annotated[int, Field(ge=1)] = Field(
        description=(
            "Exact size in bytes (required): Content-Length is signed into the URL, so S3"
            " refuses a body of any other size. At most the deployment's upload limit."
        ),
    )
    overwrite: bool = Field(
        default=False,
        description=(
            "Replace an existing object at this key. Without it the URL signs"
            " 'If-None-Match: *': S3 answers 412 if the key exists, so the URL writes once."
        ),
    )

    @field_validator("filename")
    @classmethod
    def _safe_filename(cls, value: str) -> str:
        # The signed key must be the key clients end up writing: anything a client,
        # shell or file system would normalise ('./', '/./', '..', '//') is refused.
        if value.startswith("/"):
            raise _invalid("filename must be relative (no leading '/')")
        if "\\" in value:
            raise _invalid("filename must use '/' as separator, not '\\'")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise _invalid("filename must not contain control characters")
        segments = value.split("/")
        if any(segment in (".", "..") for segment in segments):
            raise _invalid("filename must not contain '.' or '..' path segments")
        if "" in segments:
            raise _invalid("filename must not have empty path segments")
        size = utf8_size(value, "filename")
        if size > MAX_KEY_BYTES:
            raise _invalid(
                f"filename is {size} bytes in UTF-8; S3 keys are at most {MAX_KEY_BYTES} bytes"
            )
        return value


# --- Responses ------------------------------------------------------------------
# Not strict: they are built by our own code, and they document the contract.


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchResult(_Response):
    image_id: str
    key: str
    score: float = Field(description="Cosine similarity, -1..1, higher is closer")
    url: str = Field(description="Presigned GET of the original (valid for at least 15 minutes)")
    thumbnail_url: str = Field(description="Presigned GET of the 256-px JPEG thumbnail")
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    size: int | None = None
    uploaded_at: str | None = None
    caption: str | None = None


class SearchResponse(_Response):
    results: list[SearchResult]
    count: int
    model_id: str
    dimension: int
    took_ms: float


class ImageOut(_Response):
    """An image record as the API shows it: no vector, plus presigned URLs."""

    image_id: str
    key: str
    status: str = Field(description="indexed, rejected, or failed (not embedded yet: retried)")
    reason: str | None = Field(
        default=None, description="Why the image was rejected, or the last cause of failure"
    )
    etag: str | None = None
    size: int | None = None
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    uploaded_at: str | None = None
    indexed_at: str | None = None
    model_id: str | None = None
    dimension: int | None = None
    caption: str | None = None
    url: str
    thumbnail_url: str | None = Field(default=None, description="Only for indexed images")


class ImagePage(_Response):
    items: list[ImageOut]
    cursor: str | None = Field(description="Pass back to get the next page; null at the end")


class DeleteAccepted(_Response):
    image_id: str
    key: str
    status: Literal["deleting"] = "deleting"


class UploadResponse(_Response):
    key: str
    url: str = Field(description="Presigned PUT URL")
    headers: dict[str, str] = Field(
        description="Headers the PUT must send exactly (signed; If-None-Match unless overwrite)"
    )


class ModelState(_Response):
    """Whether the embedding model is usable; when not, why, the fix (may be empty)
    and since when (ISO 8601, UTC)."""

    state: Literal["ok", "unusable"] = "ok"
    cause: str | None = None
    fix: str | None = None
    since: str | None = None


class HealthResponse(_Response):
    # degraded: something this instance knows is broken; ``cause`` says what.
    status: Literal["ok", "degraded"] = "ok"
    cause: str | None = None
    model: ModelState = ModelState()
    # At constant cost (no Query or Scan, docs/decisions.md entry 39): the newer of the
    # instance's loaded index count (embedded tier) and the count the maintenance
    # function publishes (embedded tier: each minute; scale tier: the catalog's indexed
    # records, recounted every 10 minutes). Null until the first count is published.
    images: int | None = Field(
        description="Searchable images, as of images_as_of (null: no count published yet)"
    )
    images_as_of: str | None = Field(
        default=None,
        description="When images was counted (ISO 8601 UTC): at most about 1 minute old "
        "on the embedded tier, about 11 minutes on the scale tier, while maintenance runs",
    )
    model_id: str
    dimension: int
    # The embedded tier's capacity (embeddedMaxImages) and whether images reached 80 %
    # of it (beyond it: vectorStore=s3vectors). Null for other vector stores.
    capacity: int | None = None
    near_capacity: bool = False


class ErrorResponse(_Response):
    message: str


def error_summary(errors: Sequence[Mapping[str, Any]], *, limit: int = 5) -> str:
    """One readable line from pydantic errors: ``top_k: Input should be ...; text: ...``."""
    parts: list[str] = []
    for error in errors[:limit]:
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
        message = str(error.get("msg") or error.get("type") or "invalid value")
        parts.append(f"{'.'.join(loc)}: {message}" if loc else message)
    if len(errors) > limit:
        parts.append(f"and {len(errors) - limit} more")
    return "; ".join(parts) or "invalid request"
