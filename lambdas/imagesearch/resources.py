"""One source of truth for resource shapes shared by the CDK stack, the Lambda
runtime, local mode and the tests: env var names, table keys and indexes,
prefixes, model facts and configuration defaults.

Pure constants and small pure functions only: this module is imported by the
CDK app, which must not pull in runtime dependencies.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Final

# --- Configuration (CDK context keys, SPEC section 4) -----------------------

CONTEXT_DEFAULTS: Final[dict[str, Any]] = {
    "modelId": "amazon.titan-embed-image-v1",
    "embeddingDimension": 1024,
    "uploadPrefix": "uploads/",
    "vectorStore": "dynamodb",
    "ingestMaxConcurrency": 5,
    # Reserved concurrency of the search function: a flood of searches (or of /health)
    # cannot take the account's concurrency from ingest; also caps its cost.
    "searchMaxConcurrency": 50,
    "captionMode": "none",
    "retainData": True,
    # API Gateway stage throttling (requests per second, steady and burst): a cost guard.
    "apiRateLimit": 50,
    "apiBurstLimit": 100,
    # Browser origins allowed to call the bucket (presigned PUT/GET); none by default.
    "corsOrigins": [],
    # Overwritten and deleted images stay recoverable this many days (bucket versioning).
    "noncurrentVersionDays": 30,
    # Regions to accept for modelId beyond the table below (MODELS / INFERENCE_PROFILES),
    # for regions AWS added after this release: a list, or comma-separated on the command
    # line. The model is then granted there too (a profile: as a source region).
    "modelRegions": [],
    # Regions to accept for vectorStore=s3vectors beyond S3VECTORS_REGIONS (regions where
    # AWS has made S3 Vectors available after this release), like modelRegions.
    "vectorStoreRegions": [],
    # The embedded tier's capacity: sizes the search function's memory; status, /health
    # and an alarm warn at EMBEDDED_CAPACITY_WARNING of it. Beyond: vectorStore=s3vectors.
    "embeddedMaxImages": 250_000,
    # Upgrading a stack created before the sharded change index: keep the old by_change
    # index for one deploy (CloudFormation adds or deletes one GSI per update).
    "keepLegacyChangeIndex": False,
    # Switching models without downtime (docs/decisions.md entry 22): deploy the new
    # modelId/embeddingDimension with the serving ones here; deploy again without them
    # once `imagesearch status` says the switch is complete. None: no switch.
    "previousModelId": None,
    # None: the same as embeddingDimension.
    "previousEmbeddingDimension": None,
}

# --- Embedding models ----------------------------------------------------------
#
# One row per model we have an adapter for. ``regions``: where the model is offered
# on demand in-region. Sources (read 2026-11): the Bedrock model pages linked in
# docs/models.md. Region lists go stale as AWS adds regions: the ``modelRegions``
# context key adds regions without a code change.

TITAN_MODEL_ID: Final = "amazon.titan-embed-image-v1"
NOVA_MODEL_ID: Final = "amazon.nova-2-multimodal-embeddings-v1:0"
COHERE_MODEL_ID: Final = "cohere.embed-v4:0"


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    kind: str  # "titan" | "nova" | "cohere": which adapter speaks its wire format
    dimensions: tuple[int, ...]
    regions: tuple[str, ...]


MODELS: Final[dict[str, ModelSpec]] = {
    spec.model_id: spec
    for spec in (
        ModelSpec(
            TITAN_MODEL_ID,
            "titan",
            (256, 384, 1024),
            (
                "us-east-1",
                "us-west-2",
                "ap-south-1",
                "ap-southeast-2",
                "ca-central-1",
                "eu-central-1",
                "eu-west-1",
                "eu-west-2",
                "eu-west-3",
                "sa-east-1",
            ),
        ),
        ModelSpec(NOVA_MODEL_ID, "nova", (256, 384, 1024, 3072), ("us-east-1",)),
        ModelSpec(
            COHERE_MODEL_ID,
            "cohere",
            (256, 512, 1024, 1536),
            ("us-east-1", "eu-west-1", "ap-northeast-1"),
        ),
    )
}

# --- Cross-region inference profiles -------------------------------------------
#
# The prefixes of system-defined profile ids (``us.cohere.embed-v4:0``). A prefix is
# recognised for every model so that a profile AWS does not offer gets a clear refusal.
PROFILE_GEOGRAPHIES: Final = ("us", "eu", "apac", "global")

# Where a geography's profiles may be called from, as this release accepts it (the
# synth region check): the previous release's per-geography table, kept because AWS
# gives source regions per profile on each model's card and this release could not
# confirm them per profile (docs/models.md marks them unverified). -c modelRegions adds.
GEO_SOURCE_REGIONS: Final[dict[str, tuple[str, ...]]] = {
    "us": ("us-east-1", "us-east-2", "us-west-2"),
    "eu": ("eu-central-1", "eu-north-1", "eu-south-1", "eu-west-1", "eu-west-3"),
    "apac": (
        "ap-northeast-1",
        "ap-northeast-2",
        "ap-south-1",
        "ap-southeast-1",
        "ap-southeast-2",
    ),
}

# The region field of a foundation-model ARN that IAM must allow for a profile's
# destinations when they are not a list of regions:
ANY_COMMERCIAL_REGION: Final = ""  # global profiles: how IAM names "any commercial region"
ANY_REGION: Final = "*"  # AWS publishes no destination list: that one model in any region


@dataclass(frozen=True)
class InferenceProfile:
    """A system-defined cross-region inference profile of one model (one table row).

    ``destinations``: the region fields of the foundation-model ARNs the profile routes
    to, as AWS publishes them, or ``(ANY_REGION,)`` where this release has no published
    list, or ``(ANY_COMMERCIAL_REGION,)`` for a global profile. ``source``: where the
    row was read (docs/models.md has the table with its links).
    """

    profile_id: str
    source_regions: tuple[str, ...]
    destinations: tuple[str, ...]
    source: str

    @property
    def geography(self) -> str:
        return self.profile_id.partition(".")[0]

    @property
    def model_id(self) -> str:
        return self.profile_id.partition(".")[2]


COHERE_MODEL_CARD: Final = (
    "https://docs.aws.amazon.com/bedrock/latest/userguide/model-card-cohere-embed-v4.html"
)

# Every profile AWS offers for a model we support, and no other: a profile id not in
# this table is refused at synth. Titan Multimodal G1 and Nova 2 multimodal embeddings
# have none here: no profile for them could be sourced (docs/models.md).
INFERENCE_PROFILES: Final[dict[str, InferenceProfile]] = {
    profile.profile_id: profile
    for profile in (
        # The model card lists us., eu. and global. (no apac.) but not where the geo
        # profiles route: IAM gets the model in any region (decision 34).
        InferenceProfile(
            f"us.{COHERE_MODEL_ID}", GEO_SOURCE_REGIONS["us"], (ANY_REGION,), COHERE_MODEL_CARD
        ),
        InferenceProfile(
            f"eu.{COHERE_MODEL_ID}", GEO_SOURCE_REGIONS["eu"], (ANY_REGION,), COHERE_MODEL_CARD
        ),
        InferenceProfile(
            f"global.{COHERE_MODEL_ID}",
            tuple(
                sorted(
                    {region for regions in GEO_SOURCE_REGIONS.values() for region in regions}
                    | set(MODELS[COHERE_MODEL_ID].regions)
                )
            ),
            (ANY_COMMERCIAL_REGION,),
            COHERE_MODEL_CARD,
        ),
    )
}

# --- Amazon S3 Vectors (vectorStore=s3vectors) -------------------------------------
#
# Regions where S3 Vectors is available, as this release knows them: the 14 Regions of
# its general availability on 2025-12-02 (sources and how sure: docs/decisions.md entry
# 35). AWS has added regions since; -c vectorStoreRegions=<region> accepts one.
S3VECTORS_REGIONS: Final = (
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-south-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ca-central-1",
    "eu-central-1",
    "eu-north-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "us-east-1",
    "us-east-2",
    "us-west-2",
)
EMBEDDED_MAX_IMAGES_LIMIT: Final = 1_000_000  # 4 GB of float32 at 1024-d: past Lambda's CPU
EMBEDDED_CAPACITY_WARNING: Final = 0.8

# Models we have an adapter for, with the output dimensions each supports.
SUPPORTED_MODELS: Final[dict[str, tuple[int, ...]]] = {
    model_id: spec.dimensions for model_id, spec in MODELS.items()
}


def split_model_id(model_id: str) -> tuple[str | None, str]:
    """(inference profile prefix or None, foundation model id):
    ``us.cohere.embed-v4:0`` -> ``("us", "cohere.embed-v4:0")``."""
    head, _, rest = model_id.partition(".")
    if head in PROFILE_GEOGRAPHIES and rest:
        return head, rest
    return None, model_id


def model_spec(model_id: str) -> ModelSpec | None:
    """The table row of a model or inference profile id, or None when unknown."""
    return MODELS.get(split_model_id(model_id)[1])


def model_kind(model_id: str) -> str | None:
    spec = model_spec(model_id)
    return spec.kind if spec else None


def model_profiles(model_id: str) -> tuple[str, ...]:
    """The inference profile ids AWS offers for a (foundation) model, by our table."""
    base = split_model_id(model_id)[1]
    return tuple(p.profile_id for p in INFERENCE_PROFILES.values() if p.model_id == base)


def model_regions(model_id: str) -> tuple[str, ...]:
    """Regions a model or inference profile id can be called from (by our table).

    In-region ids: where the model is offered. Profiles: their source regions. A
    profile AWS does not offer (or an unknown model): none.
    """
    spec = model_spec(model_id)
    if spec is None:
        return ()
    if split_model_id(model_id)[0] is None:
        return spec.regions
    profile = INFERENCE_PROFILES.get(model_id)
    return profile.source_regions if profile else ()


# Local-only embedder (never deployed): sentence-transformers CLIP.
CLIP_MODEL_ID: Final = "clip-ViT-B-32"

VECTOR_STORES: Final = ("dynamodb", "s3vectors")  # embedded tier, scale tier (SPEC 10)
CAPTION_MODES: Final = ("none", "joint")

# S3 Vectors metadata keys declared non-filterable at index creation (stack, local
# mode, tests): the object key, returned with each hit but never filtered on.
S3VECTORS_NON_FILTERABLE_KEYS: Final = ("key",)


def vector_index_name(model_id: str, dimension: int) -> str:
    """The S3 Vectors index of a model and dimension (3-63 of ``a-z0-9-.``): an index's
    dimension cannot change, so a model change gets a new index, rebuilt by reindex."""
    import hashlib

    slug = "".join(c if c.isascii() and c.isalnum() else "-" for c in model_id.lower())
    slug = "-".join(part for part in slug.split("-") if part)
    name = f"{slug}-{dimension}"
    if len(name) > 63:
        digest = hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:8]
        name = f"{slug[: 63 - len(str(dimension)) - 10].rstrip('-')}-{digest}-{dimension}"
    return name


# --- Object layout -----------------------------------------------------------

THUMBNAIL_PREFIX: Final = "thumbnails/"
# The embedded index's snapshots (index/snapshot.py): immutable objects plus a pointer.
SNAPSHOT_PREFIX: Final = "index-snapshots/"
# A snapshot object replaced or left behind is removed by the writer; versions it
# leaves in the versioned bucket go after a day, and a snapshot nobody rewrote for
# this many days (maintenance stopped) expires: readers then use the Scan path.
SNAPSHOT_NONCURRENT_DAYS: Final = 1
SNAPSHOT_EXPIRATION_DAYS: Final = 14
# The maintenance function checks every minute (a pointer GET and COUNT queries of the
# change log) and writes a new snapshot once this many changes have accumulated since
# the current one, or once it is this old with any change: a cold start catches up at
# most about that many changes (docs/decisions.md).
SNAPSHOT_AFTER_CHANGES: Final = 1000
SNAPSHOT_MAX_LAG_SECONDS: Final = 600
# S3's limit on an object key, in UTF-8 bytes; also the limit of a DynamoDB sort key.
MAX_KEY_BYTES: Final = 1024
# Receives of one ingest message before the queue parks it in the dead-letter queue.
INGEST_MAX_RECEIVE_COUNT: Final = 5
# Receives on the retry queue (messages retried alone after a failed receive on the
# ingest queue, decision 43): one there + these four = five, as before.
INGEST_RETRY_MAX_RECEIVE_COUNT: Final = INGEST_MAX_RECEIVE_COUNT - 1
# Hand-backs (time budget) re-sent to the ingest queue before one goes to the retry queue.
INGEST_MAX_HAND_BACKS: Final = 3
THUMBNAIL_LONG_SIDE: Final = 256

# --- Environment variable names read by the handlers -------------------------

ENV_BUCKET: Final = "IMAGES_BUCKET"
ENV_TABLE: Final = "IMAGES_TABLE"
ENV_UPLOAD_PREFIX: Final = "UPLOAD_PREFIX"
ENV_MODEL_ID: Final = "MODEL_ID"
ENV_EMBEDDING_DIMENSION: Final = "EMBEDDING_DIMENSION"
ENV_CAPTION_MODE: Final = "CAPTION_MODE"
ENV_VECTOR_STORE: Final = "VECTOR_STORE"
ENV_VECTOR_BUCKET: Final = "VECTOR_BUCKET"  # s3vectors only: the vector bucket's name
ENV_VECTOR_INDEX: Final = "VECTOR_INDEX"  # s3vectors only: the index's name
ENV_BEDROCK_CONNECT_TIMEOUT: Final = "BEDROCK_CONNECT_TIMEOUT_S"
ENV_BEDROCK_READ_TIMEOUT: Final = "BEDROCK_READ_TIMEOUT_S"
ENV_BEDROCK_MAX_ATTEMPTS: Final = "BEDROCK_MAX_ATTEMPTS"
ENV_BEDROCK_RETRY_MODE: Final = "BEDROCK_RETRY_MODE"
ENV_INDEX_REFRESH_SECONDS: Final = "INDEX_REFRESH_SECONDS"
ENV_INDEX_REFRESH_OVERLAP: Final = "INDEX_REFRESH_OVERLAP_SECONDS"
ENV_INDEX_REFRESH_BACKGROUND: Final = "INDEX_REFRESH_BACKGROUND"  # local mode: "true"
ENV_MAX_UPLOAD_BYTES: Final = "MAX_UPLOAD_BYTES"
ENV_EMBEDDED_MAX_IMAGES: Final = "EMBEDDED_MAX_IMAGES"
ENV_SNAPSHOT_PREFIX: Final = "INDEX_SNAPSHOT_PREFIX"  # unset: no snapshot (Scan cold start)
ENV_PREVIOUS_MODEL_ID: Final = "PREVIOUS_MODEL_ID"  # during a model switch only
ENV_PREVIOUS_EMBEDDING_DIMENSION: Final = "PREVIOUS_EMBEDDING_DIMENSION"
# Ingest: hand-backs are re-sent to it; maintenance, during a switch: re-embeds.
ENV_INGEST_QUEUE_URL: Final = "INGEST_QUEUE_URL"
ENV_INGEST_RETRY_QUEUE_URL: Final = "INGEST_RETRY_QUEUE_URL"  # ingest: retried alone there
ENV_CLIP_MODEL: Final = "IMAGESEARCH_CLIP_MODEL"  # local mode only: path of CLIP weights

# --- Images table -------------------------------------------------------------
#
# One item per object key under the upload prefix (image_id = hash of the key).
# Deletes leave a tombstone (status "deleted", TTL set) so that warm search
# instances see the removal through the change index before TTL removes it.

ATTR_IMAGE_ID: Final = "image_id"
ATTR_KEY: Final = "key"
ATTR_STATUS: Final = "status"
ATTR_VECTOR: Final = "vector"
ATTR_SEQUENCER: Final = "sequencer"
ATTR_CHANGED_AT: Final = "changed_at"  # N, epoch milliseconds of the last write
ATTR_CHANGE_DAY: Final = "change_day"  # S, UTC day of changed_at (legacy GSI partition)
ATTR_CHANGE_SHARD: Final = "change_shard"  # S, "<UTC day>#<shard>" (change-log partition)
ATTR_EXPIRES_AT: Final = "expires_at"  # N, epoch seconds (TTL, tombstones only)
ATTR_REVISION: Final = "revision"  # S, random per write (readers detect any rewrite)

# During a model switch a record holds a second vector: the primary slot (``vector``,
# ``model_id``, ``dimension``) is the newest model's, this one the model it replaces.
# Readers take whichever slot is of their model (never projected into the GSIs).
ATTR_ALT_VECTOR: Final = "alt_vector"
ATTR_ALT_MODEL_ID: Final = "alt_model_id"
ATTR_ALT_DIMENSION: Final = "alt_dimension"

# The model switch's state: one item in the images table under an id no image can have
# (image ids are 32 hex digits). It has no status and no change shard, so it is in
# neither GSI: listings, counts and the change log never see it.
MODEL_STATE_ID: Final = "#model-state"
# Prefix of the item that remembers when an unfinished `imagesearch reindex` of an S3
# Vectors index began ("#reindex#<index name>"): a resumed run re-syncs from then.
REINDEX_RUN_PREFIX: Final = "#reindex#"
# GET /health's image count, published by the maintenance function (decision 39): one
# item, like the switch state in no GSI, read by one GetItem (never a Query or Scan).
IMAGE_COUNT_ID: Final = "#image-count"
# A search instance reads the published count at most once per this many seconds.
IMAGE_COUNT_READ_SECONDS: Final = 60.0
# The scale tier recounts its indexed records (COUNT query on by_status: it reads every
# indexed entry of that GSI) at most this often; the embedded tier publishes each run.
SCALE_COUNT_INTERVAL_SECONDS: Final = 600
# Re-embed messages the maintenance function sends per run (every minute; none while
# the queue still holds this many); ingestMaxConcurrency sets how fast they are worked off.
SWITCH_ENQUEUE_PER_RUN: Final = 1000
# During a switch, a record whose re-embed by the new model failed this many times is
# given up: it stays searchable under the serving model with the cause as its reason, no
# longer holds the flip back, and ends `failed` after it (docs/decisions.md 42). Each
# failed receive of a re-embed message counts (a message is received up to 5 times)
# when the model's answer may be about the image (a ValidationException no rule knows).
SWITCH_MAX_REEMBED_FAILURES: Final = 10
# The switch flips without given-up records only while they are this few (of the indexed
# records: the larger); more halts it in the `switching` phase until an operator acts.
SWITCH_MAX_GIVEN_UP: Final = 10
SWITCH_MAX_GIVEN_UP_FRACTION: Final = 0.01
# After the flip, the previous model's vectors stay this long before they are removed,
# so that every search instance has changed over (they read the state every few s).
SWITCH_REMOVAL_GRACE_SECONDS: Final = 300
# How long a search instance serves its last known state before reading it again.
SWITCH_STATE_TTL_SECONDS: Final = 5.0

STATUS_INDEXED: Final = "indexed"
STATUS_REJECTED: Final = "rejected"
STATUS_DELETED: Final = "deleted"
# The model could not embed the image (yet): the last cause is the reason; retried
# through the queue, and a later success (or any newer state) replaces it.
STATUS_FAILED: Final = "failed"
STATUSES: Final = (STATUS_INDEXED, STATUS_REJECTED, STATUS_FAILED, STATUS_DELETED)

TOMBSTONE_TTL_SECONDS: Final = 7 * 24 * 3600

# Record fields returned by the API (everything but the vector and bookkeeping).
RECORD_FIELDS: Final = (
    "image_id",
    "key",
    "etag",
    "size",
    "content_type",
    "width",
    "height",
    "uploaded_at",
    "indexed_at",
    "model_id",
    "dimension",
    "status",
    "reason",
    "caption",
)

# The change log (GSI) for incremental index refresh: everything changed since a
# watermark, WITHOUT the vector (a reader fetches vectors by BatchGetItem only for the
# rows it does not hold at that revision; the 4 KB copy cost ~11 write units per
# write). Partitioned by "<day>#<shard>" so that one day's writes spread over
# CHANGE_SHARDS partitions; an image always lands in the same shard.
INDEX_CHANGES: Final = "changes_by_shard"
CHANGE_SHARDS: Final = 4
# Each refresh re-reads this much before its watermark: GSIs are eventually consistent
# and writers' clocks differ (re-applying a change is harmless; it is not fetched again).
INDEX_REFRESH_OVERLAP_SECONDS: Final = 30.0
# A write's changed_at is stamped before its PutItem is sent; the catalog's client may
# take at most CATALOG_MAX_ATTEMPTS x (connect + read timeout) plus its retry delays
# (botocore "standard" mode: rand(0, 1) x 2**i s for throttling, i = 0, 1, raised by an
# x-amz-retry-after header by at most 5 s) to have it committed:
# catalog_write_lead_seconds() = 28 s, under the 30 s re-read window, so each refresh
# that could have missed an acknowledged write re-reads it. A write whose outcome stayed
# unknown (every attempt timed out) is left to the reconciliation below.
CATALOG_CONNECT_TIMEOUT_SECONDS: Final = 1.0
CATALOG_READ_TIMEOUT_SECONDS: Final = 4.0
CATALOG_MAX_ATTEMPTS: Final = 3
_RETRY_AFTER_EXTRA_SECONDS: Final = 5.0
# The maintenance function compares the snapshot with the catalog this often (a Scan of
# the change log's GSI: ids, statuses and revisions, no vectors) and re-announces in the
# change log whatever the snapshot holds wrongly; docs/decisions.md entry 41.
RECONCILE_INTERVAL_SECONDS: Final = 3600
# The attributes a re-announcement touches (its key, condition and stamp): the
# maintenance role's UpdateItem is limited to them.
REANNOUNCED: Final = (
    ATTR_IMAGE_ID,
    ATTR_REVISION,
    ATTR_CHANGED_AT,
    ATTR_CHANGE_SHARD,
    ATTR_CHANGE_DAY,
)


def catalog_write_lead_seconds() -> float:
    """The longest a committed catalog write can follow its ``changed_at`` stamp when
    its writer saw it succeed: every attempt's timeouts plus the largest backoffs."""
    attempts = CATALOG_MAX_ATTEMPTS
    backoffs = sum(min(2.0**i, 20.0) + _RETRY_AFTER_EXTRA_SECONDS for i in range(attempts - 1))
    return attempts * (CATALOG_CONNECT_TIMEOUT_SECONDS + CATALOG_READ_TIMEOUT_SECONDS) + backoffs


CHANGES_PROJECTION: Final = (
    ATTR_KEY,
    ATTR_STATUS,
    ATTR_REVISION,
    "content_type",
    "model_id",
    "dimension",
)
# The previous change index (day partition, vector copied): only in the table while
# an existing stack upgrades (context keepLegacyChangeIndex, docs/decisions.md).
INDEX_BY_CHANGE: Final = "by_change"
BY_CHANGE_PROJECTION: Final = (
    ATTR_KEY,
    ATTR_STATUS,
    ATTR_VECTOR,
    "content_type",
    "model_id",
    "dimension",
)
# GSI for listing by status, ordered by key (so prefix listing is a Query).
INDEX_BY_STATUS: Final = "by_status"
BY_STATUS_PROJECTION: Final = tuple(
    f for f in RECORD_FIELDS if f not in (ATTR_IMAGE_ID, ATTR_KEY, ATTR_STATUS)
)


def change_shard(image_id: str, changed_ms: int) -> str:
    """The change-log partition of a write of ``image_id`` at ``changed_ms``."""
    from datetime import UTC, datetime

    day = datetime.fromtimestamp(changed_ms / 1000, tz=UTC).strftime("%Y-%m-%d")
    return f"{day}#{zlib.crc32(image_id.encode('utf-8')) % CHANGE_SHARDS}"


def table_definition(table_name: str, *, legacy_change_index: bool = False) -> dict[str, Any]:
    """`create_table` arguments for the images table.

    The CDK storage construct builds the same table from this definition, and
    local mode and the tests create their moto tables with it, so they cannot
    drift apart. ``legacy_change_index`` keeps the pre-shard ``by_change`` index
    (the first of the two upgrade deploys).
    """
    definition: dict[str, Any] = {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": ATTR_IMAGE_ID, "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": ATTR_IMAGE_ID, "AttributeType": "S"},
            {"AttributeName": ATTR_CHANGE_SHARD, "AttributeType": "S"},
            {"AttributeName": ATTR_CHANGED_AT, "AttributeType": "N"},
            {"AttributeName": ATTR_STATUS, "AttributeType": "S"},
            {"AttributeName": ATTR_KEY, "AttributeType": "S"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": INDEX_CHANGES,
                "KeySchema": [
                    {"AttributeName": ATTR_CHANGE_SHARD, "KeyType": "HASH"},
                    {"AttributeName": ATTR_CHANGED_AT, "KeyType": "RANGE"},
                ],
                "Projection": {
                    "ProjectionType": "INCLUDE",
                    "NonKeyAttributes": list(CHANGES_PROJECTION),
                },
            },
            {
                "IndexName": INDEX_BY_STATUS,
                "KeySchema": [
                    {"AttributeName": ATTR_STATUS, "KeyType": "HASH"},
                    {"AttributeName": ATTR_KEY, "KeyType": "RANGE"},
                ],
                "Projection": {
                    "ProjectionType": "INCLUDE",
                    "NonKeyAttributes": list(BY_STATUS_PROJECTION),
                },
            },
        ],
    }
    if legacy_change_index:
        definition["AttributeDefinitions"].append(
            {"AttributeName": ATTR_CHANGE_DAY, "AttributeType": "S"}
        )
        definition["GlobalSecondaryIndexes"].append(
            {
                "IndexName": INDEX_BY_CHANGE,
                "KeySchema": [
                    {"AttributeName": ATTR_CHANGE_DAY, "KeyType": "HASH"},
                    {"AttributeName": ATTR_CHANGED_AT, "KeyType": "RANGE"},
                ],
                "Projection": {
                    "ProjectionType": "INCLUDE",
                    "NonKeyAttributes": list(BY_CHANGE_PROJECTION),
                },
            }
        )
    return definition


# --- Images bucket: versioned, so overwrites and deletes can be undone -------------

ABORT_INCOMPLETE_UPLOADS_DAYS: Final = 7


def images_bucket_lifecycle_rules(noncurrent_days: int) -> list[dict[str, Any]]:
    """`put_bucket_lifecycle_configuration` rules of the images bucket.

    The stack builds its lifecycle rules from these and local mode puts them on its
    moto bucket, so both keep old versions equally long.
    """
    return [
        {
            "ID": "AbortIncompleteUploads",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {
                "DaysAfterInitiation": ABORT_INCOMPLETE_UPLOADS_DAYS
            },
        },
        {
            # A delete only hides the object behind a delete marker; the old versions
            # (overwritten or deleted images) go after ``noncurrent_days``, and a marker
            # left with no versions behind it is removed.
            "ID": "ExpireOldVersions",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "NoncurrentVersionExpiration": {"NoncurrentDays": noncurrent_days},
            "Expiration": {"ExpiredObjectDeleteMarker": True},
        },
        {
            # Index snapshots are derived data (hundreds of MB each): old versions go fast.
            "ID": "ExpireIndexSnapshots",
            "Status": "Enabled",
            "Filter": {"Prefix": SNAPSHOT_PREFIX},
            "NoncurrentVersionExpiration": {"NoncurrentDays": SNAPSHOT_NONCURRENT_DAYS},
            "Expiration": {"Days": SNAPSHOT_EXPIRATION_DAYS},
        },
    ]


def thumbnail_key(image_id: str) -> str:
    return f"{THUMBNAIL_PREFIX}{image_id}.jpg"


# --- Stack outputs (read by the CLI to find a deployed stack) -----------------

DEFAULT_STACK_NAME: Final = "ImageSearch"
OUTPUT_API_URL: Final = "ApiUrl"
OUTPUT_BUCKET: Final = "BucketName"
OUTPUT_UPLOAD_PREFIX: Final = "UploadPrefix"
OUTPUT_TABLE: Final = "TableName"
OUTPUT_QUEUE_URL: Final = "IngestQueueUrl"
OUTPUT_DLQ_URL: Final = "DeadLetterQueueUrl"
OUTPUT_MODEL_ID: Final = "ModelId"
OUTPUT_DIMENSION: Final = "EmbeddingDimension"
OUTPUT_VECTOR_STORE: Final = "VectorStore"
OUTPUT_VECTOR_BUCKET: Final = "VectorBucketName"  # vectorStore=s3vectors only
OUTPUT_VECTOR_INDEX: Final = "VectorIndexName"  # vectorStore=s3vectors only

# --- Search API routes (SPEC section 6): (resource path, method, IAM-authorised) ----
# The stack creates exactly these methods; local mode maps requests onto them.

API_ROUTES: Final[tuple[tuple[str, str, bool], ...]] = (
    ("/search", "POST", True),
    ("/images", "GET", True),
    ("/images/{image_id}", "GET", True),
    ("/images/{image_id}", "DELETE", True),
    ("/uploads", "POST", True),
    ("/health", "GET", False),
    ("/openapi.json", "GET", True),
)

# What a synchronous Lambda invoke carries (the whole proxy event): API Gateway takes
# bodies up to 10 MB, but larger ones than this never reach the search function.
API_PAYLOAD_LIMIT_BYTES: Final = 6 * 1024 * 1024
API_PAYLOAD_LIMIT_TEXT: Final = "6 MB"

# --- Lambda entry points (one asset, two handlers) -----------------------------

INGEST_HANDLER: Final = "imagesearch.handlers.ingest.handler"
MAINTENANCE_HANDLER: Final = "imagesearch.handlers.maintenance.handler"
API_HANDLER: Final = "imagesearch.handlers.api.handler"
# Dev-only subpackages left out of the Lambda asset.
NOT_IN_LAMBDA_ASSET: Final = ("cli", "local")

METRICS_NAMESPACE: Final = "ImageSearch"
METRIC_CONFIGURATION_ERRORS: Final = "EmbedderConfigurationErrors"
# Search instances that loaded by Scan because the snapshot was missing, corrupt or of
# another model/dimension (dimension "reason").
METRIC_SNAPSHOT_FALLBACKS: Final = "IndexSnapshotFallbacks"
# Indexed images of the deployment's model, emitted by the maintenance handler per run.
METRIC_INDEXED_IMAGES: Final = "IndexedImages"
# Snapshot rows the reconciliation found disagreeing with the catalog (re-announced or
# without a record): a write that no change-log reader saw (docs/decisions.md 41).
METRIC_CATALOG_DIFFERENCES: Final = "IndexCatalogDifferences"
# The one dimension of the embedded tier's metrics (the stack's alarm matches it).
EMBEDDED_METRIC_DIMENSIONS: Final = {"index": "embedded"}
OUTPUT_EMBEDDED_MAX_IMAGES: Final = "EmbeddedMaxImages"
