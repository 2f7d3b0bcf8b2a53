"""The composition root: the one place that turns settings and clients into services.

The Lambda handlers, local mode, the CLI and the tests build their catalog, vector
index, embedder, object store and services here, so a choice such as the vector store
is made once. Clients are injectable (tests pass moto clients, stubs or fakes); those
not given are built lazily from the standard AWS configuration, so a route that never
needs a client never pays for it at cold start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imagesearch.embedders.base import EmbedInput, ModelLimits, Purpose, Vector, embed_images
from imagesearch.errors import EmbedderConfigurationError
from imagesearch.resources import METRIC_SNAPSHOT_FALLBACKS, vector_index_name
from imagesearch.settings import CommonSettings, IngestSettings, SearchSettings, SettingsError
from imagesearch.switch import ServingSpaces, Space

if TYPE_CHECKING:  # the runtime imports are deferred to keep cold starts short
    from imagesearch.catalog.dynamodb import DynamoDBCatalog
    from imagesearch.embedders.base import Embedder
    from imagesearch.ingest import IngestService
    from imagesearch.objectstore import S3ObjectStore
    from imagesearch.ports import VectorIndex, VectorSync
    from imagesearch.search import SearchService, SpaceView
    from imagesearch.switch import SwitchOrchestrator


@dataclass
class Clients:
    """boto3 clients to use instead of default ones (None: built on first use)."""

    s3: Any | None = None
    dynamodb: Any | None = None
    bedrock: Any | None = None
    s3vectors: Any | None = None
    # An embedder to use as is (local mode shares one, with its embedding cache).
    embedder: Any | None = None
    # Wraps every catalog built here (None: the DynamoDB catalog as is). Local mode
    # reads moto's table in its own process (``local/moto_catalog.py``).
    wrap_catalog: Callable[[DynamoDBCatalog], DynamoDBCatalog] | None = None


def s3_client() -> Any:
    import boto3
    from botocore.config import Config

    # SigV4 presigned URLs: S3 refuses SigV2 on buckets created since mid-2020 and on
    # KMS-encrypted objects, and botocore may still presign with SigV2.
    return boto3.client("s3", config=Config(signature_version="s3v4"))


def build_catalog(settings: CommonSettings, clients: Clients | None = None) -> DynamoDBCatalog:
    from imagesearch.catalog.dynamodb import DynamoDBCatalog

    clients = clients or Clients()
    catalog = DynamoDBCatalog(settings.table, client=clients.dynamodb)
    return catalog if clients.wrap_catalog is None else clients.wrap_catalog(catalog)


def build_object_store(settings: CommonSettings, clients: Clients | None = None) -> S3ObjectStore:
    from imagesearch.objectstore import S3ObjectStore

    client = (clients or Clients()).s3
    return S3ObjectStore(settings.bucket, client=client if client is not None else s3_client())


def vector_index_of(settings: CommonSettings, space: Space) -> str:
    """The S3 Vectors index of a model space: the configured one for the deployed space,
    else the one named after the model and dimension (as the stack names them)."""
    if space == settings.deployed_space and settings.vector_index:
        return settings.vector_index
    return vector_index_name(space.model_id, space.dimension)


def build_vector_index(
    settings: CommonSettings,
    catalog: DynamoDBCatalog,
    clients: Clients | None = None,
    space: Space | None = None,
) -> VectorIndex:
    """The vector index of the configured store (``vectorStore``) for ``space`` (default:
    the deployed model's)."""
    if space is not None and space != settings.deployed_space:
        index_name = vector_index_of(settings, space)
        settings = settings.for_space(space).model_copy(update={"vector_index": index_name})
    if settings.vector_store == "dynamodb":
        from imagesearch.index.embedded import EmbeddedIndex

        options: dict[str, Any] = {}
        if isinstance(settings, SearchSettings):
            options = {
                "refresh_interval": settings.index_refresh_seconds,
                "refresh_overlap": settings.index_refresh_overlap_seconds,
                "background_refresh": settings.index_refresh_background,
            }
        return EmbeddedIndex(
            catalog,
            model_id=settings.model_id,
            dimension=settings.dimension,
            **options,
            snapshots=build_snapshot_store(settings, clients),
            on_fallback=_count_snapshot_fallback,
        )
    if settings.vector_store == "s3vectors":
        from imagesearch.index.s3vectors import S3VectorsIndex

        if not settings.vector_bucket:
            raise SettingsError("vector store 's3vectors' needs the vector bucket's name")
        client = (clients or Clients()).s3vectors
        return S3VectorsIndex(
            client if client is not None else s3vectors_client(),
            bucket=settings.vector_bucket,
            index=settings.vector_index or vector_index_name(settings.model_id, settings.dimension),
            dimension=settings.dimension,
        )
    raise SettingsError(f"vector store {settings.vector_store!r} is not available")


def s3vectors_client() -> Any:
    import boto3

    return boto3.client("s3vectors")


def build_snapshot_store(settings: CommonSettings, clients: Clients | None = None) -> Any:
    """The embedded index's ``SnapshotStore`` (None when the deployment has none)."""
    prefix = settings.snapshot_prefix if isinstance(settings, SearchSettings) else None
    if not prefix:
        return None
    from imagesearch.index.snapshot import SnapshotStore

    return SnapshotStore(settings.bucket, prefix, client=(clients or Clients()).s3)


def _count_snapshot_fallback(reason: str) -> None:  # the index logs the reason
    from imagesearch.metrics import count

    count(METRIC_SNAPSHOT_FALLBACKS)


def build_vector_sync(
    settings: CommonSettings, catalog: DynamoDBCatalog, clients: Clients | None = None
) -> VectorSync:
    """How ingest makes the configured vector index follow the catalog."""
    from imagesearch.index.sync import FollowsCatalog, ReadAfterWriteSync

    if settings.vector_store == "dynamodb":
        return FollowsCatalog()
    previous = settings.previous_space
    # During a model switch the previous model's index follows too (its vectors are in
    # the records' second slot), until the switch's cleanup empties it.
    also = (
        [
            (
                build_vector_index(settings, catalog, clients, previous),
                previous.model_id,
                previous.dimension,
            )
        ]
        if previous is not None
        else []
    )
    return ReadAfterWriteSync(
        catalog,
        build_vector_index(settings, catalog, clients),
        model_id=settings.model_id,
        dimension=settings.dimension,
        also=also,
    )


def build_embedder(settings: CommonSettings, clients: Clients | None = None) -> Embedder:
    from imagesearch.embedders import build_embedder_for

    if clients is not None and clients.embedder is not None:
        given: Embedder = clients.embedder
        return given
    return build_embedder_for(settings, client=(clients or Clients()).bedrock)


class LazyEmbedder:
    """Builds the embedder on the first embed: routes that never embed (health, images,
    uploads, "more like this") do not pay for the Bedrock client at cold start."""

    def __init__(self, settings: CommonSettings, clients: Clients | None = None) -> None:
        self._settings = settings
        self._clients = clients
        self._embedder: Embedder | None = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self._settings.model_id

    @property
    def dimension(self) -> int:
        return self._settings.dimension

    @property
    def limits(self) -> ModelLimits:
        return self._built().limits

    def embed(
        self, *, text: str | None = None, image: bytes | None = None, purpose: Purpose = "query"
    ) -> Vector:
        return self._built().embed(text=text, image=image, purpose=purpose)

    def embed_images(self, items: Sequence[EmbedInput]) -> list[Vector]:
        """Several stored images in as few calls as the model allows."""
        return embed_images(self._built(), items)

    def _built(self) -> Embedder:
        # Building the adapter is cheap; its Bedrock client is built on its first call.
        if self._embedder is None:
            with self._lock:
                if self._embedder is None:
                    try:
                        self._embedder = build_embedder(self._settings, self._clients)
                    except ValueError as error:  # unknown model or dimension: a deployment bug
                        raise EmbedderConfigurationError(str(error)) from error
        return self._embedder


def build_ingest_service(settings: IngestSettings, clients: Clients | None = None) -> IngestService:
    from imagesearch.ingest import IngestService

    catalog = build_catalog(settings, clients)
    previous = settings.previous_space
    return IngestService(
        store=build_object_store(settings, clients),
        catalog=catalog,
        vectors=build_vector_sync(settings, catalog, clients),
        embedder=build_embedder(settings, clients),
        upload_prefix=settings.upload_prefix,
        caption_mode=settings.caption_mode,
        max_object_bytes=settings.max_upload_bytes,
        # During a model switch: the previous model and the switch's state.
        previous_embedder=(
            LazyEmbedder(settings.for_space(previous), _without_embedder(clients))
            if previous is not None
            else None
        ),
        switch_state=catalog.model_state if previous is not None else None,
    )


def build_search_service(settings: SearchSettings, clients: Clients | None = None) -> SearchService:
    import time

    from imagesearch.health import PublishedCount
    from imagesearch.resources import SWITCH_STATE_TTL_SECONDS
    from imagesearch.search import SearchService, SpaceView

    catalog = build_catalog(settings, clients)

    def view_of(space: Space) -> SpaceView:
        # Local mode's shared embedder (clients.embedder) is the deployed model's.
        embedder_clients = (
            clients if space == settings.deployed_space else _without_embedder(clients)
        )
        return SpaceView(
            space,
            build_vector_index(settings, catalog, clients, space),
            LazyEmbedder(settings.for_space(space), embedder_clients),
        )

    def load(view: SpaceView) -> None:
        refresh = getattr(view.index, "refresh", None)  # the embedded tier loads its matrix
        if callable(refresh):
            refresh()

    # Without previousModelId nothing reads the switch state (ServingSpaces).
    spaces = ServingSpaces(
        deployed=settings.deployed_space,
        previous=settings.previous_space,
        build=view_of,
        read_state=catalog.model_state,
        prepare=load,
        clock=time.monotonic,
        ttl=SWITCH_STATE_TTL_SECONDS,
    )

    first = spaces.peek()[1]
    return SearchService(
        catalog,
        first.index,
        first.embedder,
        build_object_store(settings, clients),
        upload_prefix=settings.upload_prefix,
        model_id=settings.model_id,
        dimension=settings.dimension,
        max_upload_bytes=settings.max_upload_bytes,
        # /health never counts: the maintenance function publishes the count (decision 39).
        published_count=PublishedCount(catalog.published_count, clock=time.monotonic),
        capacity=settings.embedded_max_images if settings.vector_store == "dynamodb" else None,
        spaces=spaces,
    )


def _without_embedder(clients: Clients | None) -> Clients | None:
    if clients is None or clients.embedder is None:
        return clients
    from dataclasses import replace

    return replace(clients, embedder=None)


def build_switch_orchestrator(
    settings: SearchSettings,
    catalog: DynamoDBCatalog,
    clients: Clients | None = None,
    *,
    sqs: Any | None = None,
    clock: Any = None,
    grace_seconds: float | None = None,
) -> SwitchOrchestrator:
    """The maintenance function's model switch step: drives a configured switch, and
    without one finishes what the state item left unfinished (an abandoned switch)."""
    import time

    from imagesearch.queue import SqsReembed
    from imagesearch.resources import SWITCH_REMOVAL_GRACE_SECONDS
    from imagesearch.switch import SwitchOrchestrator

    previous = settings.previous_space
    reembed = (
        SqsReembed(settings.ingest_queue_url, settings.bucket, client=sqs)
        if settings.ingest_queue_url
        else None
    )
    eraser = None
    if settings.vector_store == "s3vectors" and previous is not None:
        from imagesearch.index.s3vectors import S3VectorsIndex

        old = build_vector_index(settings, catalog, clients, previous)
        assert isinstance(old, S3VectorsIndex)
        eraser = old.erase
    return SwitchOrchestrator(
        catalog,
        deployed=settings.deployed_space,
        previous=previous,
        reembed=reembed,
        erase_previous_index=eraser,
        clock=clock or time.time,
        grace_seconds=SWITCH_REMOVAL_GRACE_SECONDS if grace_seconds is None else grace_seconds,
    )
