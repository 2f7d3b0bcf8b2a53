"""Deployment configuration: the CDK context keys of SPEC section 4, coerced and validated.

Values given with ``cdk -c key=value`` arrive as strings, values from cdk.json keep their
JSON types: both are accepted. Every problem raises ``ConfigError`` at synth time with a
message that names the key and what would be accepted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from imagesearch import resources as r
from stacks.sizing import LAMBDA_MAX_MEMORY_MB, max_images_that_fit, needed_memory_mb

# SQS event source mappings accept MaximumConcurrency between 2 and 1000.
MIN_INGEST_CONCURRENCY = 2
MAX_INGEST_CONCURRENCY = 1000
# Reserved concurrency of the search function: the default account quota is 1000
# concurrent executions, of which Lambda keeps 100 unreserved.
MAX_SEARCH_CONCURRENCY = 1000
# S3 notification filter values and key prefixes are at most 1024 bytes.
MAX_PREFIX_BYTES = 1024
# API Gateway's default account-level quotas per region: stage limits above them never apply.
MAX_API_RATE_LIMIT = 10_000
MAX_API_BURST_LIMIT = 5_000
MAX_NONCURRENT_VERSION_DAYS = 36_500
# A browser origin: scheme, host and optional port, nothing else (no path, no wildcard).
_ORIGIN = re.compile(
    r"https?://[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?"
)

_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]")

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


class ConfigError(ValueError):
    """A CDK context value is missing its mark; raised at synth time."""


@dataclass(frozen=True)
class AppConfig:
    """Validated deployment settings (one field per CDK context key)."""

    model_id: str = r.CONTEXT_DEFAULTS["modelId"]
    embedding_dimension: int = r.CONTEXT_DEFAULTS["embeddingDimension"]
    upload_prefix: str = r.CONTEXT_DEFAULTS["uploadPrefix"]
    vector_store: str = r.CONTEXT_DEFAULTS["vectorStore"]
    ingest_max_concurrency: int = r.CONTEXT_DEFAULTS["ingestMaxConcurrency"]
    search_max_concurrency: int = r.CONTEXT_DEFAULTS["searchMaxConcurrency"]
    caption_mode: str = r.CONTEXT_DEFAULTS["captionMode"]
    retain_data: bool = r.CONTEXT_DEFAULTS["retainData"]
    api_rate_limit: float = r.CONTEXT_DEFAULTS["apiRateLimit"]
    api_burst_limit: int = r.CONTEXT_DEFAULTS["apiBurstLimit"]
    cors_origins: tuple[str, ...] = tuple(r.CONTEXT_DEFAULTS["corsOrigins"])
    noncurrent_version_days: int = r.CONTEXT_DEFAULTS["noncurrentVersionDays"]
    model_regions: tuple[str, ...] = tuple(r.CONTEXT_DEFAULTS["modelRegions"])
    vector_store_regions: tuple[str, ...] = tuple(r.CONTEXT_DEFAULTS["vectorStoreRegions"])
    # The region being deployed to, when known at synth (the CDK CLI's CDK_DEFAULT_REGION
    # or an explicit stack env); None for an environment-agnostic synth, where the
    # template's ModelOfferedInRegion rule checks the region at deploy time instead.
    region: str | None = None
    embedded_max_images: int = r.CONTEXT_DEFAULTS["embeddedMaxImages"]
    keep_legacy_change_index: bool = r.CONTEXT_DEFAULTS["keepLegacyChangeIndex"]
    # A model switch in progress: the model (and dimension) being replaced; None: none.
    previous_model_id: str | None = r.CONTEXT_DEFAULTS["previousModelId"]
    previous_embedding_dimension: int | None = r.CONTEXT_DEFAULTS["previousEmbeddingDimension"]

    def __post_init__(self) -> None:
        for key, regions in (
            ("modelRegions", self.model_regions),
            ("vectorStoreRegions", self.vector_store_regions),
        ):
            for region in regions:
                if not _REGION.fullmatch(region):
                    raise ConfigError(
                        f"{key} entry {region!r} is not a region name (like eu-south-2)"
                    )
        _check_model(self.model_id, self.embedding_dimension)
        _check_model_region(self.model_id, self.region, self.model_regions)
        self._check_switch()
        _check_prefix(self.upload_prefix)
        _check_vector_store(self.vector_store)
        if self.vector_store == "s3vectors":
            _check_vector_store_region(self.region, self.vector_store_regions)
        if not MIN_INGEST_CONCURRENCY <= self.ingest_max_concurrency <= MAX_INGEST_CONCURRENCY:
            raise ConfigError(
                f"ingestMaxConcurrency must be between {MIN_INGEST_CONCURRENCY} and "
                f"{MAX_INGEST_CONCURRENCY} (the SQS event source limits), got "
                f"{self.ingest_max_concurrency}"
            )
        if not 1 <= self.search_max_concurrency <= MAX_SEARCH_CONCURRENCY:
            raise ConfigError(
                f"searchMaxConcurrency must be between 1 and {MAX_SEARCH_CONCURRENCY} (the "
                "search function's reserved concurrency), got "
                f"{self.search_max_concurrency}"
            )
        if self.caption_mode not in r.CAPTION_MODES:
            raise ConfigError(
                f"captionMode must be one of {', '.join(r.CAPTION_MODES)}, "
                f"got {self.caption_mode!r}"
            )
        if not 0 < self.api_rate_limit <= MAX_API_RATE_LIMIT:
            raise ConfigError(
                f"apiRateLimit must be above 0 and at most {MAX_API_RATE_LIMIT} requests per "
                f"second (API Gateway's account quota), got {self.api_rate_limit}"
            )
        if not 1 <= self.api_burst_limit <= MAX_API_BURST_LIMIT:
            raise ConfigError(
                f"apiBurstLimit must be between 1 and {MAX_API_BURST_LIMIT} requests "
                f"(API Gateway's account quota), got {self.api_burst_limit}"
            )
        for origin in self.cors_origins:
            _check_origin(origin)
        if not 1 <= self.noncurrent_version_days <= MAX_NONCURRENT_VERSION_DAYS:
            raise ConfigError(
                "noncurrentVersionDays must be between 1 and "
                f"{MAX_NONCURRENT_VERSION_DAYS} days, got {self.noncurrent_version_days}"
            )
        if not 1_000 <= self.embedded_max_images <= r.EMBEDDED_MAX_IMAGES_LIMIT:
            raise ConfigError(
                f"embeddedMaxImages must be between 1000 and {r.EMBEDDED_MAX_IMAGES_LIMIT}, "
                f"got {self.embedded_max_images}; beyond that use vectorStore=s3vectors"
            )
        if self.vector_store == "dynamodb":
            self._check_embedded_memory()

    def _check_embedded_memory(self) -> None:
        """The embedded index at embeddedMaxImages must fit its functions' memory: a
        function capped at Lambda's maximum would run out of memory below capacity."""
        previous = self.previous_space
        # Search holds both models' matrices during a switch; maintenance the serving one's.
        search_dimensions = self.embedding_dimension + (previous[1] if previous else 0)
        serving = max(self.embedding_dimension, previous[1] if previous else 0)
        needed = needed_memory_mb(self.embedded_max_images, serving, search_dimensions)
        if needed > LAMBDA_MAX_MEMORY_MB:
            fits = max_images_that_fit(serving, search_dimensions)
            during = " during a model switch" if previous else ""
            raise ConfigError(
                f"embeddedMaxImages {self.embedded_max_images} at {search_dimensions} "
                f"dimensions{during} needs {needed} MB of function memory, above Lambda's "
                f"{LAMBDA_MAX_MEMORY_MB} MB: at most {fits} fit; beyond that use "
                "vectorStore=s3vectors"
            )

    def _check_switch(self) -> None:
        if self.previous_model_id is None:
            if self.previous_embedding_dimension is not None:
                raise ConfigError(
                    "previousEmbeddingDimension is set without previousModelId: name the "
                    "model being replaced too, or leave both out when not switching models"
                )
            return
        previous = self.previous_space
        assert previous is not None
        try:
            _check_model(previous[0], previous[1])
        except ConfigError as error:
            raise ConfigError(
                str(error)
                .replace("modelId", "previousModelId", 1)
                .replace("embeddingDimension", "previousEmbeddingDimension", 1)
            ) from None
        if previous == (self.model_id, self.embedding_dimension):
            raise ConfigError(
                f"previousModelId {previous[0]} with dimension {previous[1]} is the deployed "
                "modelId and embeddingDimension: there is nothing to switch from. To switch, "
                "deploy the new model as modelId and the serving one as previousModelId; "
                "when `imagesearch status` says the switch is complete, deploy without "
                "previousModelId"
            )
        _check_model_region(previous[0], self.region, self.model_regions)

    @property
    def previous_space(self) -> tuple[str, int] | None:
        """(model, dimension) being switched from; None when no switch is configured."""
        if self.previous_model_id is None:
            return None
        dimension = self.previous_embedding_dimension or self.embedding_dimension
        return self.previous_model_id, dimension

    @property
    def model_ids(self) -> tuple[str, ...]:
        """Every model the functions call: the deployed one and, during a switch, the
        one being replaced."""
        previous = self.previous_space
        if previous is None or previous[0] == self.model_id:
            return (self.model_id,)
        return (self.model_id, previous[0])

    @property
    def allowed_model_regions(self) -> tuple[str, ...]:
        """Regions every model id can be called from: our table plus ``modelRegions``."""
        allowed = set.intersection(*(set(r.model_regions(m)) for m in self.model_ids))
        return tuple(sorted(allowed | set(self.model_regions)))

    @property
    def allowed_vector_store_regions(self) -> tuple[str, ...]:
        """Regions with Amazon S3 Vectors: our table plus ``vectorStoreRegions``."""
        return tuple(sorted(set(r.S3VECTORS_REGIONS) | set(self.vector_store_regions)))

    @classmethod
    def from_context(
        cls, get: Callable[[str], Any] | Mapping[str, Any], *, region: str | None = None
    ) -> AppConfig:
        """Build from CDK context: ``get`` is ``node.try_get_context`` or a plain mapping.

        Missing keys fall back to ``resources.CONTEXT_DEFAULTS``. ``region``: the
        deployment region when known (checked against the model's regions).
        """
        lookup = get.get if isinstance(get, Mapping) else get

        def value(key: str) -> Any:
            found = lookup(key)
            return r.CONTEXT_DEFAULTS[key] if found is None else found

        return cls(
            model_id=_as_str("modelId", value("modelId")),
            embedding_dimension=_as_int("embeddingDimension", value("embeddingDimension")),
            upload_prefix=_as_str("uploadPrefix", value("uploadPrefix"), strip=False),
            vector_store=_as_str("vectorStore", value("vectorStore")),
            ingest_max_concurrency=_as_int("ingestMaxConcurrency", value("ingestMaxConcurrency")),
            search_max_concurrency=_as_int("searchMaxConcurrency", value("searchMaxConcurrency")),
            caption_mode=_as_str("captionMode", value("captionMode")),
            retain_data=_as_bool("retainData", value("retainData")),
            api_rate_limit=_as_number("apiRateLimit", value("apiRateLimit")),
            api_burst_limit=_as_int("apiBurstLimit", value("apiBurstLimit")),
            cors_origins=_as_origins("corsOrigins", value("corsOrigins")),
            noncurrent_version_days=_as_int(
                "noncurrentVersionDays", value("noncurrentVersionDays")
            ),
            model_regions=_as_list("modelRegions", value("modelRegions")),
            vector_store_regions=_as_list("vectorStoreRegions", value("vectorStoreRegions")),
            region=region or None,
            embedded_max_images=_as_int("embeddedMaxImages", value("embeddedMaxImages")),
            keep_legacy_change_index=_as_bool(
                "keepLegacyChangeIndex", value("keepLegacyChangeIndex")
            ),
            previous_model_id=_as_optional_str("previousModelId", value("previousModelId")),
            previous_embedding_dimension=(
                None
                if _as_optional_str("x", value("previousEmbeddingDimension")) is None
                else _as_int("previousEmbeddingDimension", value("previousEmbeddingDimension"))
            ),
        )


def _as_str(key: str, raw: Any, *, strip: bool = True) -> str:
    if not isinstance(raw, str):
        raise ConfigError(f"{key} must be a string, got {raw!r}")
    return raw.strip() if strip else raw


def _as_optional_str(key: str, raw: Any) -> str | None:
    """None, or "" on the command line (``-c previousModelId=``), mean unset."""
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw.strip() or None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    raise ConfigError(f"{key} must be a string, got {raw!r}")


def _as_int(key: str, raw: Any) -> int:
    # bool is an int subclass: "true" is never a dimension or a concurrency.
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lstrip("+").isdigit():
        return int(raw.strip())
    raise ConfigError(f"{key} must be a whole number, got {raw!r}")


def _as_number(key: str, raw: Any) -> float:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        number = float(raw)
    elif isinstance(raw, str):
        try:
            number = float(raw.strip())
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {raw!r}") from None
    else:
        raise ConfigError(f"{key} must be a number, got {raw!r}")
    if number != number or number in (float("inf"), float("-inf")):  # NaN or infinite
        raise ConfigError(f"{key} must be a finite number, got {raw!r}")
    return number


def _as_origins(key: str, raw: Any) -> tuple[str, ...]:
    """A JSON list in cdk.json, a comma-separated string on the command line."""
    return _as_list(key, raw, "origins")


def _as_list(key: str, raw: Any, what: str = "strings") -> tuple[str, ...]:
    """A JSON list in cdk.json, a comma-separated string on the command line."""
    if isinstance(raw, str):
        items: list[Any] = [part.strip() for part in raw.split(",") if part.strip()]
    elif isinstance(raw, list | tuple):
        items = list(raw)
    else:
        raise ConfigError(f"{key} must be a list of {what} or a comma-separated string")
    if not all(isinstance(item, str) for item in items):
        raise ConfigError(f"{key} must hold strings, got {raw!r}")
    return tuple(dict.fromkeys(item.strip() for item in items))


def _check_origin(origin: str) -> None:
    if origin == "*" or "*" in origin:
        raise ConfigError(
            "corsOrigins must not contain '*': presigned uploads would be open to any "
            "web page's scripts; list the origins of your pages (https://app.example.com)"
        )
    if not _ORIGIN.fullmatch(origin):
        raise ConfigError(
            f"corsOrigins entry {origin!r} is not an origin: use scheme://host[:port] in "
            "lower case, with http or https and no path (https://app.example.com)"
        )


def _as_bool(key: str, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ConfigError(f"{key} must be true or false, got {raw!r}")


def _check_model(model_id: str, dimension: int) -> None:
    spec = r.model_spec(model_id)
    if spec is None:
        raise ConfigError(
            f"modelId {model_id!r} is not supported; supported models: "
            f"{', '.join(sorted(r.MODELS))}, or one of their cross-region inference "
            f"profiles: {', '.join(r.INFERENCE_PROFILES)}"
        )
    geo, base = r.split_model_id(model_id)
    if geo is not None and model_id not in r.INFERENCE_PROFILES:
        offered = ", ".join(r.model_profiles(base)) or "none"
        raise ConfigError(
            f"modelId {model_id!r}: AWS offers no {geo!r} cross-region inference profile "
            f"for {base}; its profiles: {offered}; or use {base} in one of its regions "
            f"({', '.join(spec.regions)})"
        )
    if dimension not in spec.dimensions:
        raise ConfigError(
            f"embeddingDimension {dimension} is not supported by {model_id}; "
            f"use one of {', '.join(str(d) for d in spec.dimensions)}"
        )


def _region_unknown(region: str | None) -> bool:
    """An environment-agnostic synth: the template's rules check the region instead."""
    return region is None or region.startswith("${Token")


def _check_model_region(model_id: str, region: str | None, extra: tuple[str, ...]) -> None:
    """Finding 9.15: a stack in a region without its model sends every image to the DLQ."""
    if _region_unknown(region):
        return
    assert region is not None
    allowed = set(r.model_regions(model_id)) | set(extra)
    if region in allowed:
        return
    profiles = ", ".join(
        profile_id
        for profile_id in r.model_profiles(model_id)
        if region in r.INFERENCE_PROFILES[profile_id].source_regions
    )
    hint = (
        f" or a cross-region inference profile that serves {region} ({profiles})"
        if profiles
        else ""
    )
    raise ConfigError(
        f"modelId {model_id} is not offered in region {region} (by this release's table: "
        f"{', '.join(sorted(allowed))}). Deploy to one of those regions{hint}; if AWS has "
        f"added {model_id} in {region} since, pass -c modelRegions={region}"
    )


def _check_vector_store_region(region: str | None, extra: tuple[str, ...]) -> None:
    """vectorStore=s3vectors in a region without Amazon S3 Vectors cannot deploy."""
    if _region_unknown(region):
        return
    allowed = sorted(set(r.S3VECTORS_REGIONS) | set(extra))
    if region in allowed:
        return
    raise ConfigError(
        f"vectorStore=s3vectors: Amazon S3 Vectors is not available in region {region} "
        f"(by this release's table: {', '.join(allowed)}). Deploy to one of those regions "
        f"or use vectorStore=dynamodb; if AWS has added S3 Vectors in {region} since, pass "
        f"-c vectorStoreRegions={region}"
    )


def _check_prefix(prefix: str) -> None:
    problem = None
    if not prefix:
        problem = "must not be empty (the whole bucket would be the drop folder)"
    elif not prefix.endswith("/"):
        problem = "must end with '/'"
    elif prefix.startswith("/"):
        problem = "must not start with '/' (S3 keys have no leading slash)"
    elif "//" in prefix:
        problem = "must not contain '//'"
    elif any(segment in (".", "..") for segment in prefix.split("/")):
        # S3 keeps './' literally while clients and file systems normalise it away: the
        # keys written would not be the keys the grants and the ingest filter expect.
        problem = "must not contain '.' or '..' segments"
    elif any(c in prefix for c in "*?$"):
        # IAM resource ARNs are built from the prefix: '*' and '?' are IAM wildcards and
        # '${' starts a policy variable, so any of them would widen the grants.
        problem = "must not contain '*', '?' or '$'"
    elif any(ord(c) < 0x20 or ord(c) == 0x7F for c in prefix):
        problem = "must not contain control characters"
    elif len(prefix.encode()) > MAX_PREFIX_BYTES:
        problem = f"must be at most {MAX_PREFIX_BYTES} bytes"
    elif prefix.startswith(r.THUMBNAIL_PREFIX) or r.THUMBNAIL_PREFIX.startswith(prefix):
        problem = (
            f"must not overlap the thumbnail prefix {r.THUMBNAIL_PREFIX!r} "
            "(ingest would index its own thumbnails in a loop)"
        )
    elif prefix.startswith(r.SNAPSHOT_PREFIX) or r.SNAPSHOT_PREFIX.startswith(prefix):
        problem = f"must not overlap the index snapshot prefix {r.SNAPSHOT_PREFIX!r}"
    if problem:
        raise ConfigError(f"uploadPrefix {prefix!r} {problem}")


def _check_vector_store(store: str) -> None:
    if store not in r.VECTOR_STORES:
        raise ConfigError(
            f"vectorStore {store!r} is unknown; use {' or '.join(repr(s) for s in r.VECTOR_STORES)}"
        )
