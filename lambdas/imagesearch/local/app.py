"""Local mode (SPEC section 8): the whole product on one machine.

An in-process moto server holds the stack's bucket, table and queues; the real
ingest handler runs on the real S3 -> SQS notifications; the real API handler
answers on ``http://127.0.0.1:PORT`` next to the web page; a mirror keeps the
drop folder and the bucket's upload prefix in step. Bedrock is the only AWS
service reached for real, through the standard AWS configuration.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TextIO, cast

from botocore.exceptions import BotoCoreError, ClientError

from imagesearch import resources as r
from imagesearch.catalog.dynamodb import DynamoDBCatalog
from imagesearch.local.embedding_cache import CACHE_NAME, CachedEmbedder, EmbeddingCache
from imagesearch.local.gateway import Gateway, GatewayServer, allowed_hosts
from imagesearch.local.lambda_runtime import trace_nothing
from imagesearch.local.mirror import POLL_SECONDS, DropboxMirror
from imagesearch.local.moto_env import (
    VISIBILITY_TIMEOUT_SECONDS,
    AwsClients,
    DefaultSession,
    EnvironPatch,
    LocalModeError,
    LocalNames,
    LocalResources,
    MotoServer,
    create_resources,
    ensure_credentials,
    existing_resources,
    moto_endpoint_environ,
    page_origins,
    redirected_clients,
    resolve_region,
    resources_fingerprint,
)
from imagesearch.local.probe import ProbeFailure, probe_bedrock, probe_clip_weights
from imagesearch.local.state import (
    Saver,
    Snapshot,
    StateError,
    StateStore,
    WriteGate,
    shape_fingerprint,
)
from imagesearch.local.worker import IngestWorker
from imagesearch.settings import IngestSettings, load_settings
from imagesearch.switch import Space, state_fields
from imagesearch.switch import describe as describe_switch

logger = logging.getLogger("imagesearch.local")

EMBEDDERS = ("bedrock", "clip")
LOOPBACK = "127.0.0.1"
DEBUG_ENV = "IMAGESEARCH_DEBUG"
# While the model is broken it is probed again this often; when it answers again, the
# files parked in the dead-letter queue meanwhile are sent back to ingest.
REPROBE_SECONDS = 20.0
DEFAULT_STATE_DIR = Path(".imagesearch")
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104  (names, not binds)
# sentence-transformers' clip-ViT-B-32 produces 512-dimensional vectors.
CLIP_DIMENSION = 512
LOCAL_VECTOR_BUCKET = "imagesearch-local-vectors"
# The embedded index's refresh here: moto writes an item and its change-log entry at
# once and every writer shares this clock, so a short re-read window suffices (the
# 30 s of Lambda re-read every second cost moto most of its time during a bulk
# ingest); and a thread refreshes every second instead of the requests (one process
# runs ingest, moto and the API: docs/decisions.md).
LOCAL_REFRESH_OVERLAP_SECONDS = 10.0
# A model switch here is stepped by a thread, as the maintenance schedule steps it in a
# deployment (every minute there); the one search instance changes over within its
# state TTL, so the removal's grace is two of those rather than five minutes.
SWITCH_STEP_SECONDS = 2.0
SWITCH_GRACE_SECONDS = 2 * r.SWITCH_STATE_TTL_SECONDS
# Handlers log JSON for CloudWatch; in a terminal only their errors are worth
# showing (local mode prints one readable line per file itself).
_POWERTOOLS_DEFAULTS = {
    "POWERTOOLS_SERVICE_NAME": "imagesearch-local",
    "POWERTOOLS_LOG_LEVEL": "ERROR",
    "POWERTOOLS_METRICS_NAMESPACE": "ImageSearchLocal",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


def embedder_settings(
    embedder: str, model_id: str | None = None, dimension: int | None = None
) -> tuple[str, int]:
    """Model id and dimension of an ``--embedder`` choice (``--model-id``/``--dimension``
    pick the Bedrock model; unset: the stack's defaults)."""
    if embedder == "bedrock":
        model = model_id or r.CONTEXT_DEFAULTS["modelId"]
        spec = r.model_spec(model)
        if spec is None:
            raise LocalModeError(
                f"unknown --model-id {model!r}: choose one of {', '.join(sorted(r.MODELS))} "
                "(or a cross-region inference profile id of one)"
            )
        size = dimension or r.CONTEXT_DEFAULTS["embeddingDimension"]
        if size not in spec.dimensions:
            raise LocalModeError(
                f"{model} produces {', '.join(map(str, spec.dimensions))}-dimensional "
                f"vectors, not {size}: pass --dimension"
            )
        return model, size
    if model_id or dimension:
        raise LocalModeError("--model-id and --dimension apply to --embedder bedrock only")
    if embedder == "clip":
        if importlib.util.find_spec("sentence_transformers") is None:
            from imagesearch.embedders.clip import INSTALL_HINT

            raise LocalModeError(f"--embedder clip needs sentence-transformers: {INSTALL_HINT}")
        return r.CLIP_MODEL_ID, CLIP_DIMENSION
    raise LocalModeError(f"unknown embedder {embedder!r}: choose one of {', '.join(EMBEDDERS)}")


class LocalMode:
    """Local mode as an object: ``start()``/``stop()`` or a context manager.

    ``port=0`` picks a free port (tests); ``url`` is where the page and API answer.
    It sets process environment variables (endpoints, handler settings) and puts
    them back on ``stop()``. One instance runs once, and one at a time per process:
    moto and the handlers keep process-wide state.
    """

    def __init__(
        self,
        *,
        port: int = 8000,
        dropbox: Path = Path("dropbox"),
        embedder: str = "bedrock",
        host: str = "127.0.0.1",
        names: LocalNames | None = None,
        poll_seconds: float = POLL_SECONDS,
        state_dir: Path | None = None,
        model_id: str | None = None,
        dimension: int | None = None,
        vector_store: str = r.CONTEXT_DEFAULTS["vectorStore"],
    ) -> None:
        """``state_dir``: where the state survives restarts (None: memory only).
        ``vector_store``: ``s3vectors`` runs the scale tier on the S3 Vectors emulator."""
        if vector_store not in r.VECTOR_STORES:
            raise LocalModeError(
                f"vector store {vector_store!r} is unknown: use {' or '.join(r.VECTOR_STORES)}"
            )
        self.vector_store = vector_store
        # s3vectors: the project's S3 Vectors emulator, on loopback like moto.
        self._vectors: Any | None = None
        self.vector_index = ""
        self.port = port
        self.dropbox = Path(dropbox).expanduser().resolve()
        self.embedder = embedder
        self.host = host
        self.names = names or LocalNames()
        self._poll_seconds = poll_seconds
        self._env = EnvironPatch()
        self._session = DefaultSession()
        self._store = StateStore(state_dir) if state_dir is not None else None
        self._saver: Saver | None = None
        self._gates: list[WriteGate] = []
        # moto stays on loopback whatever --host says: only this process talks to it.
        self._moto = MotoServer(LOOPBACK, middleware=self._gated if self._store else None)
        self.restored: Snapshot | None = None
        self._startup = _Startup()
        self._model_problem: ProbeFailure | None = None
        self._cache: EmbeddingCache | None = None
        self._watch_stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._dummy_credentials = False
        self.reindexing = 0  # objects re-enqueued because the saved table had another shape
        self._server: GatewayServer | None = None
        self._search: Any | None = None
        self._worker: IngestWorker | None = None
        self._mirror: DropboxMirror | None = None
        self._clients: AwsClients | None = None
        self.resources: LocalResources | None = None
        self._model_choice = (model_id, dimension)
        self.model_id = ""
        self.dimension = 0
        # The model the saved images were embedded with, when this run's is another: the
        # run switches from it as a deployment does (docs/decisions.md 42).
        self.switch_from: Space | None = None
        self._switch_stop = threading.Event()
        self._switcher: threading.Thread | None = None

    @property
    def model_problem(self) -> ProbeFailure | None:
        """The last probe's verdict (None: the model answers)."""
        return self._model_problem

    @model_problem.setter
    def model_problem(self, problem: ProbeFailure | None) -> None:
        # The API reports it too: /health degraded, searches name the cause.
        self._model_problem = problem
        if self._search is not None:
            self._search.model_health.checked(
                None if problem is None else f"{problem.what}: {problem.detail}",
                "" if problem is None else problem.fix,
            )

    @property
    def url(self) -> str:
        """Where this machine reaches the page and API (loopback for a wildcard --host)."""
        if self._server is None:
            raise RuntimeError("local mode is not running")
        if self.host in _WILDCARD_HOSTS:
            return f"http://{LOOPBACK}:{self._server.port}"
        return self._server.url

    @property
    def exposed(self) -> bool:
        """Listening beyond loopback: other devices can reach it (no auth)."""
        return not (self.host == "localhost" or self.host.startswith("127.") or self.host == "::1")

    def __enter__(self) -> LocalMode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> LocalMode:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self._startup.begin()
        self.model_id, self.dimension = embedder_settings(self.embedder, *self._model_choice)
        try:
            self.dropbox.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise LocalModeError(
                f"cannot use {self.dropbox} as the drop folder: {error.strerror or error}"
            ) from error
        for name, value in _POWERTOOLS_DEFAULTS.items():
            self._env.setdefault(name, value)
        import boto3

        configured = boto3.session.Session()  # the standard configuration, read once
        region = resolve_region(self._env, configured)
        self._dummy_credentials = ensure_credentials(self._env, self.embedder, configured)
        try:
            # Bound first: a busy port fails before anything else starts.
            self._server = GatewayServer(host=self.host, port=self.port)
        except OSError as error:
            raise LocalModeError(
                f"cannot listen on {self.host}:{self.port} ({error.strerror or error}):"
                " choose another port with --port or PORT"
            ) from error

        if self._store is not None:
            try:
                self._store.open()
            except StateError as error:
                raise LocalModeError(str(error)) from error
        hosts = allowed_hosts(self.host)
        # moto answers local mode's clients and its page's presigned-URL reads only.
        endpoint = self._moto.start(page_origins(hosts, self._server.port))
        self._startup.mark("moto")
        for name, value in moto_endpoint_environ(endpoint).items():
            self._env.set(name, value)
        self._clients = redirected_clients(self._session.install(region), endpoint)
        shape = shape_fingerprint(
            r.table_definition(self.names.table), self.names, VISIBILITY_TIMEOUT_SECONDS
        )
        full_restore = self._restore(region, shape)
        self._startup.mark("state")
        configured = resources_fingerprint(self.names, region)
        self.resources = self._resources(
            region,
            full_restore
            and self.restored is not None
            and self.restored.extra.get("resources") == configured,
        )
        self._startup.mark("resources")
        if self.restored is not None:
            self.switch_from = self._switch_source()
        if self.vector_store == "s3vectors":
            self._start_vectors(region)
            self._startup.mark("vectors")
        for name, value in self._handler_environ().items():
            self._env.set(name, value)
        ingest_handler, api_handler = _cold_handlers()
        self._startup.mark("handlers")
        self._configure_services()
        self._startup.mark("index")

        self._worker = IngestWorker(
            handler=ingest_handler,
            sqs=self._clients.sqs,
            catalog=DynamoDBCatalog(self.resources.table, client=self._clients.dynamodb),
            resources=self.resources,
            after_batch=self._search.refresh_soon if self._search is not None else None,
            after_states=self._after_states,
        )
        self._mirror = DropboxMirror(
            self.dropbox,
            s3=self._clients.s3,
            bucket=self.resources.bucket,
            upload_prefix=self.resources.upload_prefix,
            # The deployment's limit (what presigned uploads and ingest enforce).
            max_bytes=load_settings(IngestSettings).max_upload_bytes,
            poll_seconds=self._poll_seconds,
            backlog=self._backlog,
            uploaded=(self.restored.extra.get("mirror") if self.restored else None),
        )
        gateway = Gateway(
            api_handler,
            local_routes={"/local/resources": self.public_resources, "/local/stats": self.stats},
            region=region,
            hosts=hosts,
        )
        if self.restored is not None and full_restore:
            self._worker.restore_states(self.restored.extra.get("worker") or {})
        self._publish_count()
        self.model_problem = self.probe()
        self._startup.mark("probe")
        self._worker.start()
        if self.model_problem is None:
            # The model answers: files parked in the dead-letter queue by an earlier run
            # (a broken model then) go back to ingest now, not at the next `redrive`.
            moved = self._redrive()
            if moved:
                logger.info(
                    "%d failed file(s) from the dead-letter queue sent back to ingest", moved
                )
        if self.restored is not None and not full_restore:
            self.reindexing = self._enqueue_stored_objects()
        self._mirror.start()
        self._server.start(gateway)
        self._startup.mark("listening")
        if self._store is not None:
            mirror, worker = self._mirror, self._worker
            self._saver = Saver(
                self._store,
                self._gates[0],
                region=region,
                shape=shape,
                extra=lambda: {
                    "resources": configured,
                    "mirror": mirror.uploaded_files(),
                    "worker": worker.known_states(),
                },
            )
            self._saver.start()

        self._watcher = threading.Thread(target=self._watch_model, name="model-watch", daemon=True)
        self._watcher.start()
        orchestrator = self._switch_orchestrator()
        if self.switch_from is not None:
            orchestrator.step()  # started before the first request: the page shows it
        self._switcher = threading.Thread(
            target=self._step_switch, args=(orchestrator,), name="model-switch"
        )
        self._switcher.daemon = True
        self._switcher.start()

    # --- the model switch ----------------------------------------------------------------

    def _catalog(self) -> DynamoDBCatalog:
        assert self._clients is not None and self.resources is not None
        return DynamoDBCatalog(self.resources.table, client=self._clients.dynamodb)

    def _switch_source(self) -> Space | None:
        """The space to switch from: the unfinished switch's, or the one most saved
        images were embedded with when it is not this run's (None: nothing to switch)."""
        deployed = Space(self.model_id, self.dimension)
        catalog = self._catalog()
        state = catalog.model_state()
        if state is not None:
            if state.serving == deployed:
                return None  # done, or finishing (the switch thread completes it)
            return state.serving
        spaces: dict[Space, int] = {}
        cursor = None
        while True:
            page = catalog.list(prefix=None, status=r.STATUS_INDEXED, limit=1000, cursor=cursor)
            for record in page.items:
                if record.model_id and record.dimension:
                    space = Space(record.model_id, record.dimension)
                    spaces[space] = spaces.get(space, 0) + 1
            cursor = page.cursor
            if cursor is None:
                break
        others = {space: n for space, n in spaces.items() if space != deployed}
        if not others:
            return None
        previous = max(others, key=lambda space: (others[space], str(space)))
        if previous.model_id != r.CLIP_MODEL_ID and r.model_spec(previous.model_id) is None:
            logger.warning(
                "the saved images were embedded with %s, which this version cannot call:"
                " run `imagesearch backfill --force` to embed them with %s",
                previous,
                deployed,
            )
            return None
        logger.warning(
            "the saved images were embedded with %s: switching to %s; search answers from"
            " %s until every image has a %s vector",
            previous,
            deployed,
            previous,
            deployed,
        )
        return previous

    def _switch_orchestrator(self) -> Any:
        from imagesearch.composition import build_switch_orchestrator
        from imagesearch.settings import SearchSettings

        assert self._clients is not None
        catalog = self._catalog()
        return build_switch_orchestrator(
            load_settings(SearchSettings),
            catalog,
            sqs=self._clients.sqs,
            grace_seconds=SWITCH_GRACE_SECONDS,
        )

    def _step_switch(self, orchestrator: Any) -> None:
        """The deployment's maintenance schedule, for the model switch only."""
        while not self._switch_stop.wait(SWITCH_STEP_SECONDS):
            try:
                step = orchestrator.step()
            except (BotoCoreError, ClientError, OSError) as error:
                # moto stopping, or a passing error: the next step tries again.
                logger.warning("model switch step failed: %s", error)
                continue
            if step.action not in ("no switch", "switch complete") and step.action != (
                "waiting for search instances to change over"
            ):
                logger.info("model switch: %s (%s)", step.action, describe_switch(step.state))

    def switch_stats(self) -> dict[str, Any] | None:
        """The switch's progress (None: no switch ever ran on this state)."""
        state = self._catalog().model_state()
        if state is None:
            return None
        return {"text": describe_switch(state), **state_fields(state)}

    def _after_states(self) -> None:
        if self.vector_store != "s3vectors":
            return
        self._publish_count()
        if self._search is not None:
            self._search.forget_published_count()  # /health reads the new one at once

    def _publish_count(self) -> None:
        """What the maintenance function does for GET /health on the scale tier (the
        embedded tier's /health counts the index this process keeps loaded): publish
        the worker's count of indexed images, exact here (see ``status_counts``)."""
        if self.vector_store != "s3vectors" or self._worker is None or self.resources is None:
            return
        from imagesearch.catalog.dynamodb import DynamoDBCatalog
        from imagesearch.health import ImageCount

        assert self._clients is not None
        indexed = self._worker.status_counts()[r.STATUS_INDEXED]
        DynamoDBCatalog(self.resources.table, client=self._clients.dynamodb).publish_count(
            ImageCount(indexed, int(time.time() * 1000))
        )

    def _resources(self, region: str, restored: bool) -> LocalResources:
        """The stack's resources in moto: looked up when the restored state holds them
        as this version makes them, else created (idempotent over a restored state)."""
        assert self._clients is not None
        if restored:
            try:
                return existing_resources(self._clients, self.names, region=region)
            except ClientError as error:
                logger.warning("the saved state lacks a resource (%s): creating it", error)
        return create_resources(self._clients, self.names, region=region)

    def _configure_services(self) -> None:
        """The handlers' services as composition builds them, sharing one embedder
        behind the embedding cache (same bytes or text: no second model call)."""
        from imagesearch.composition import (
            Clients,
            LazyEmbedder,
            build_ingest_service,
            build_search_service,
        )
        from imagesearch.handlers import api as api_handler
        from imagesearch.handlers import ingest as ingest_handler
        from imagesearch.settings import IngestSettings, SearchSettings, load_settings

        ingest_settings = load_settings(IngestSettings)
        embedder: Any = LazyEmbedder(ingest_settings)
        if self._store is not None:
            self._cache = EmbeddingCache(self._store.directory / CACHE_NAME)
            embedder = CachedEmbedder(embedder, self._cache)
        clients = Clients(embedder=embedder)
        if self.resources is not None:
            # moto runs in this process: the services read its table in memory (records
            # by key, the index's full load) instead of through its HTTP API.
            from imagesearch.local.moto_catalog import MotoTableCatalog

            gate = self._gates[0] if self._gates else None
            region = self.resources.region
            clients.wrap_catalog = lambda catalog: MotoTableCatalog.over(
                catalog, gate=gate, region=region
            )
        ingest_handler.configure(build_ingest_service(ingest_settings, clients))
        search = build_search_service(load_settings(SearchSettings), clients)
        # No snapshot writer runs here (the index loads by a Scan or the in-process read
        # above, docs/decisions.md), and GET /health never loads the index: load it now
        # so /health counts from the start.
        search.warm()
        api_handler.configure(search)
        self._search = search

    def probe(self) -> ProbeFailure | None:
        """One free call that tells whether the model works (see local/probe.py)."""
        if self.embedder == "clip":
            problem = probe_clip_weights()
            if problem is not None:
                # Fail fast in the loader too, rather than retrying the hub for minutes.
                self._env.set("HF_HUB_OFFLINE", "1")
            return problem
        if self.embedder != "bedrock":
            return None
        if self._dummy_credentials:
            return ProbeFailure(
                "AWS credentials",
                "none found (no AWS_PROFILE, environment variables or ~/.aws files)",
                "set AWS_PROFILE (aws sso login for SSO profiles) or run aws configure;"
                " or run without AWS: imagesearch local --embedder clip"
                " (make local EMBEDDER=clip)",
            )
        import boto3
        from botocore.config import Config

        assert self.resources is not None
        client = boto3.client(
            "bedrock-runtime",
            region_name=self.resources.region,
            config=Config(
                connect_timeout=3, read_timeout=10, retries={"max_attempts": 1, "mode": "standard"}
            ),
        )
        return probe_bedrock(client, self.model_id, region=self.resources.region)

    def _watch_model(self) -> None:
        """While the model is broken: probe again now and then; once it answers, send
        the dead letters back to ingest (the files that failed meanwhile)."""
        while not self._watch_stop.wait(REPROBE_SECONDS):
            if self.model_problem is None:
                continue
            try:
                problem = self.probe()
                if problem is not None:
                    self.model_problem = problem
                    continue
                self.model_problem = None
                moved = self._redrive()
            except (BotoCoreError, ClientError) as error:
                # The watcher outlives a failed probe or redrive; the next round retries.
                logger.warning("checking the embedding model failed: %s", error)
                continue
            logger.info(
                "the embedding model answers again%s",
                f": {moved} failed file(s) sent back to ingest" if moved else "",
            )

    def _redrive(self) -> int:
        """Dead letters back to the ingest queue (receive, send, delete)."""
        assert self._clients is not None and self.resources is not None
        sqs, moved = self._clients.sqs, 0
        while True:
            messages = (
                sqs.receive_message(
                    QueueUrl=self.resources.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=60
                ).get("Messages")
                or []
            )
            if not messages:
                return moved
            sent = (
                sqs.send_message_batch(
                    QueueUrl=self.resources.queue_url,
                    Entries=[
                        {"Id": str(i), "MessageBody": m["Body"]} for i, m in enumerate(messages)
                    ],
                ).get("Successful")
                or []
            )
            done = [messages[int(entry["Id"])] for entry in sent]
            if done:
                sqs.delete_message_batch(
                    QueueUrl=self.resources.dlq_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(done)
                    ],
                )
            moved += len(done)
            if len(done) < len(messages):
                return moved

    def _gated(self, app: Any) -> WriteGate:
        gate = WriteGate(app)
        self._gates.append(gate)
        return gate

    def _restore(self, region: str, shape: str) -> bool:
        """Put the saved state back into moto; True when all of it (False: none, or
        the objects only because the table or queues changed shape)."""
        if self._store is None:
            return False
        snapshot = self._store.load()
        if snapshot is None:
            return False
        if snapshot.region != region:
            raise LocalModeError(
                f"the state in {self._store.directory} was saved in region {snapshot.region},"
                f" this run uses {region}: set AWS_REGION={snapshot.region}, or give this"
                " region its own --state-dir"
            )
        same_shape = snapshot.shape == shape
        StateStore.install(snapshot, tables_and_queues=same_shape)
        if not same_shape:
            logger.warning(
                "the saved state's table or queues have another shape than this version's:"
                " keeping the stored objects and indexing them again"
            )
        self.restored = snapshot
        return same_shape

    def _enqueue_stored_objects(self) -> int:
        """Backfill every stored object (after a shape change): the catalog is rebuilt
        from the bucket; unchanged bytes cost no model call with the embedding cache."""
        from imagesearch.cli.commands import backfill_keys, batched
        from imagesearch.events import make_backfill_message

        assert self._clients is not None and self.resources is not None
        count = 0
        keys = backfill_keys(self._clients.s3, self.resources.bucket, self.resources.upload_prefix)
        for batch in batched(keys):
            self._clients.sqs.send_message_batch(
                QueueUrl=self.resources.queue_url,
                Entries=[
                    {
                        "Id": str(number),
                        "MessageBody": make_backfill_message(
                            self.resources.bucket, key, region=self.resources.region
                        ),
                    }
                    for number, key in enumerate(batch)
                ],
            )
            count += len(batch)
        return count

    def _start_vectors(self, region: str) -> None:
        import boto3

        from imagesearch.local.s3vectors_emulator import S3VectorsEmulator, ensure_index

        self._vectors = S3VectorsEmulator().start()
        endpoint = self._vectors.endpoint_url
        self._env.set("AWS_ENDPOINT_URL_S3VECTORS", endpoint)
        self.vector_index = r.vector_index_name(self.model_id, self.dimension)
        client = boto3.client(
            "s3vectors",
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        # During a model switch both models' indexes (search serves the previous one
        # until the flip; ingest writes both).
        spaces = [Space(self.model_id, self.dimension)]
        if self.switch_from is not None:
            spaces.append(self.switch_from)
        for space in spaces:
            ensure_index(
                client,
                bucket=LOCAL_VECTOR_BUCKET,
                index=r.vector_index_name(space.model_id, space.dimension),
                dimension=space.dimension,
                non_filterable_keys=r.S3VECTORS_NON_FILTERABLE_KEYS,
            )
        if self.restored is not None and self.resources is not None:
            # The emulator keeps no state of its own: rebuild the index from the restored
            # catalog, as `imagesearch reindex` does (no model calls).
            from imagesearch.cli.vectors import reindex
            from imagesearch.index.s3vectors import S3VectorsIndex

            assert self._clients is not None
            catalog = DynamoDBCatalog(self.resources.table, client=self._clients.dynamodb)
            if self._gates:  # a restored state: read its vectors in-process (moto_catalog)
                from imagesearch.local.moto_catalog import MotoTableCatalog

                catalog = MotoTableCatalog.over(catalog, gate=self._gates[0], region=region)
            for space in spaces:
                copied = reindex(
                    catalog,
                    S3VectorsIndex(
                        client,
                        bucket=LOCAL_VECTOR_BUCKET,
                        index=r.vector_index_name(space.model_id, space.dimension),
                        dimension=space.dimension,
                    ),
                    model_id=space.model_id,
                    dimension=space.dimension,
                    resync=False,  # the worker starts later: nothing writes meanwhile
                )
                logger.info(
                    "vector index of %s rebuilt from the saved catalog: %d vectors",
                    space,
                    copied["written"],
                )

    def public_resources(self) -> dict[str, str]:
        """``GET /local/resources``: where everything lives, for the CLI."""
        assert self.resources is not None
        data = self.resources.public()
        data["vector_store"] = self.vector_store
        if self._vectors is not None:
            data["vector_bucket"] = LOCAL_VECTOR_BUCKET
            data["vector_index"] = self.vector_index
            data["vectors_endpoint_url"] = self._vectors.endpoint_url
        return data

    def _handler_environ(self) -> dict[str, str]:
        assert self.resources is not None
        vectors = {
            r.ENV_INDEX_REFRESH_OVERLAP: str(LOCAL_REFRESH_OVERLAP_SECONDS),
            r.ENV_INDEX_REFRESH_BACKGROUND: "true",
        }
        if self.vector_store == "s3vectors":
            vectors = {
                r.ENV_VECTOR_BUCKET: LOCAL_VECTOR_BUCKET,
                r.ENV_VECTOR_INDEX: self.vector_index,
            }
        return {
            **vectors,
            r.ENV_BUCKET: self.resources.bucket,
            r.ENV_TABLE: self.resources.table,
            r.ENV_UPLOAD_PREFIX: self.resources.upload_prefix,
            r.ENV_MODEL_ID: self.model_id,
            r.ENV_EMBEDDING_DIMENSION: str(self.dimension),
            r.ENV_CAPTION_MODE: r.CONTEXT_DEFAULTS["captionMode"],
            r.ENV_VECTOR_STORE: self.vector_store,
            r.ENV_INGEST_QUEUE_URL: self.resources.queue_url,  # requeues, the switch's re-embeds
            r.ENV_INGEST_RETRY_QUEUE_URL: self.resources.retry_queue_url,
            **(
                {
                    r.ENV_PREVIOUS_MODEL_ID: self.switch_from.model_id,
                    r.ENV_PREVIOUS_EMBEDDING_DIMENSION: str(self.switch_from.dimension),
                }
                if self.switch_from is not None
                else {}
            ),
        }

    def stop(self) -> None:
        """Stop the HTTP server, the mirror, the worker and moto, in that order:
        nothing new enters while what is in flight finishes."""
        self._watch_stop.set()
        self._switch_stop.set()
        if self._switcher is not None and self._switcher.is_alive():
            self._switcher.join(15)
        if self._watcher is not None and self._watcher.is_alive():
            self._watcher.join(15)
        if self._server is not None:
            self._server.stop()
        if self._mirror is not None:
            self._mirror.stop()
        if self._worker is not None:
            self._worker.stop()
        if self._search is not None:
            self._search.stop_refreshing()  # before moto goes
        try:
            if self._saver is not None:
                self._saver.stop()
                self._saver.save()  # the final state, with nothing running any more
        finally:
            self._moto.stop()
            if self._vectors is not None:
                self._vectors.stop()
                self._vectors = None
            if self._cache is not None:
                self._cache.close()
            if self._store is not None:
                self._store.close()
            _forget_services()
            self._session.restore()
            self._env.restore()

    def _state_line(self) -> str:
        return _state_line_for(self._store, self.restored, self.reindexing)

    def stats(self) -> dict[str, Any]:
        """Counts for the page: catalog by status, queue depths, drop folder, worker."""
        assert self._clients is not None and self.resources is not None
        assert self._worker is not None and self._mirror is not None
        queue = self._ingest_depths()
        dead = _queue_depths(self._clients.sqs, self.resources.dlq_url)
        return {
            "images": self._worker.status_counts(),
            "queue": queue,
            "dead_letter": dead["waiting"] + dead["in_flight"],
            "dropbox": self._mirror.stats(),
            "worker": self._worker.stats(),
            "model_id": self.model_id,
            "dimension": self.dimension,
            "state": self._state_stats(),
            "model": self._model_stats(),
            "startup": self._startup.stats(),
            "switch": self.switch_stats(),
        }

    def _model_stats(self) -> dict[str, Any]:
        problem = self.model_problem
        if problem is None:
            return {"ok": True}
        return {"ok": False, "what": problem.what, "detail": problem.detail, "fix": problem.fix}

    def _state_stats(self) -> dict[str, Any] | None:
        if self._store is None or self._saver is None:
            return None
        return {
            "dir": str(self._store.directory),
            "saves": self._saver.saves,
            "unsaved_changes": self._gates[0].changed,
        }

    def _ingest_depths(self) -> dict[str, int]:
        """The ingest queue's depths with the retry queue's (messages retried alone)."""
        assert self._clients is not None and self.resources is not None
        ingest = _queue_depths(self._clients.sqs, self.resources.queue_url)
        retry = _queue_depths(self._clients.sqs, self.resources.retry_queue_url)
        return {name: count + retry.get(name, 0) for name, count in ingest.items()}

    def _backlog(self) -> int:
        return sum(self._ingest_depths().values())

    def describe(self) -> str:
        assert self.resources is not None
        bedrock = os.environ.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
        via = (
            f"Bedrock at {bedrock}"
            if bedrock
            else f"Amazon Bedrock in {self.resources.region} (standard AWS configuration)"
        )
        if self.embedder == "clip":
            via = "local CLIP (sentence-transformers)"
        lines = [
            f"imagesearch local: {self.url}  (web page and search API, no auth)",
            f"  drop folder {self.dropbox} -> s3://{self.resources.bucket}/"
            f"{self.resources.upload_prefix}",
            f"  embeddings: {self.model_id} ({self.dimension} dimensions) via {via}",
            f"  moto (S3, SQS, DynamoDB): {self.resources.endpoint_url}, {self._state_line()}",
        ]
        if self.switch_from is not None:
            lines.append(
                f"  model switch: the saved images were embedded with {self.switch_from};"
                f" search answers from it until every image has a {self.model_id}"
                f" ({self.dimension}) vector, then changes over (progress: the page,"
                " imagesearch status)"
            )
        if self.model_problem is not None:
            lines.append("  " + self.model_problem.message().replace("\n", "\n  "))
            lines.append(
                "  files wait as failed until the model answers; local mode checks again"
                f" every {REPROBE_SECONDS:.0f} s"
            )
        if self._vectors is not None:
            lines.append(
                f"  vector index: S3 Vectors emulator {self._vectors.endpoint_url}"
                " (rebuilt from the"
                f" catalog at start), index {self.vector_index}"
            )
        if self.exposed:
            lines.append(
                f"  WARNING: listening on {self.host}: anyone who can reach this machine can"
                " search, upload and delete images (local mode has no auth)"
            )
            lan = lan_address() if self.host in _WILDCARD_HOSTS else self.host
            if lan:
                port = self._server.port if self._server is not None else self.port
                lines.append(f"  from other devices: http://{lan}:{port}")
        lines += [
            "  for the CLI in another terminal, paste:",
            f"    export IMAGESEARCH_URL={self.url}",
            "  press Ctrl-C to stop",
        ]
        return "\n".join(lines)


class _Startup:
    """How long each step of the start took (``GET /local/stats``: bench/local.py
    prints a restart's breakdown from it): seconds per step, in order, and the wall
    clock time the start began (what came before it was Python's and the imports')."""

    def __init__(self) -> None:
        self.began_at = 0.0
        self._last = 0.0
        self.steps: dict[str, float] = {}

    def begin(self) -> None:
        self.began_at = time.time()
        self._last = time.perf_counter()

    def mark(self, step: str) -> None:
        now = time.perf_counter()
        self.steps[step] = round(now - self._last, 3)
        self._last = now

    def stats(self) -> dict[str, Any]:
        return {"began_at": self.began_at, "steps": dict(self.steps)}


def _state_line_for(store: StateStore | None, restored: Snapshot | None, reindexing: int) -> str:
    if store is None:
        return "in memory: gone on exit"
    if restored is None:
        return f"state saved in {store.directory}"
    if reindexing:
        return f"objects restored from {store.directory}, {reindexing} being indexed again"
    return f"state restored from {store.directory}"


def lan_address() -> str | None:
    """This machine's address on its default route (no packet is sent), for the banner."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: connect() on UDP only picks a route
            address: str = probe.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def _cold_handlers() -> tuple[Any, Any]:
    """The real handlers, as a fresh Lambda container builds them from the
    environment just set (tracing off: no X-Ray SDK)."""
    trace_nothing()
    ingest = importlib.import_module("imagesearch.handlers.ingest")
    api = importlib.import_module("imagesearch.handlers.api")
    _forget_services()
    return ingest.handler, api.handler


def _forget_services() -> None:
    """Drop the services the handlers cached (clients bound to one moto server), so
    the next local mode or test in this process starts from its own environment."""
    ingest = sys.modules.get("imagesearch.handlers.ingest")
    api = sys.modules.get("imagesearch.handlers.api")
    if ingest is not None:
        ingest.configure(None)
    if api is not None:
        api.configure(None)


def _queue_depths(sqs: Any, queue_url: str) -> dict[str, int]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return {
        "waiting": int(attributes["ApproximateNumberOfMessages"]),
        "in_flight": int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    }


class _WithoutEmbeddedMetrics:
    """stdout minus CloudWatch embedded-metric documents.

    Handlers print metrics as EMF JSON for CloudWatch; Powertools still prints
    the cold-start metric and every 100th value with metrics disabled. Without
    CloudWatch they are noise in a terminal. Everything else passes line by line.
    """

    _MARK = '{"_aws":'

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._partial = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            *lines, self._partial = (self._partial + text).split("\n")
            for line in lines:
                if not line.startswith(self._MARK):
                    self._stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class WithoutTracebacks(logging.Filter):
    """Normal output carries no tracebacks: a logged exception becomes its one-line
    summary (``IMAGESEARCH_DEBUG=1`` keeps the tracebacks)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(error).__name__}: {error}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def configure_output(debug: bool | None = None) -> None:
    """Readable lines on stderr, unless the caller configured logging already."""
    # Powertools warns on every invocation that flushes no metrics (for example the
    # s3:TestEvent batch); metrics are off in local mode, so the warning is noise.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.WARNING,
            format="%(asctime)s %(message)s",
            datefmt="%H:%M:%S",
            stream=sys.stderr,
        )
    logging.getLogger("imagesearch.local").setLevel(logging.INFO)
    if debug is None:
        debug = bool(os.environ.get(DEBUG_ENV))
    if not debug:
        quiet = WithoutTracebacks()
        for handler in root.handlers:
            handler.addFilter(quiet)
        # The handlers' Powertools loggers print JSON to stdout with their own handler.
        service = (
            os.environ.get("POWERTOOLS_SERVICE_NAME")
            or _POWERTOOLS_DEFAULTS["POWERTOOLS_SERVICE_NAME"]
        )
        logging.getLogger(service).addFilter(quiet)


def run(
    port: int,
    dropbox: Path,
    embedder: str,
    host: str = LOOPBACK,
    state_dir: Path | None = DEFAULT_STATE_DIR,
    model_id: str | None = None,
    dimension: int | None = None,
    vector_store: str = r.CONTEXT_DEFAULTS["vectorStore"],
) -> int:
    """``imagesearch local``: run until Ctrl-C or SIGTERM; the process exit code."""
    configure_output()
    stdout = sys.stdout
    sys.stdout = cast(TextIO, _WithoutEmbeddedMetrics(stdout))
    stop = threading.Event()
    previous = _install_signal_handlers(stop)
    try:
        mode = LocalMode(
            port=port,
            dropbox=dropbox,
            embedder=embedder,
            host=host,
            state_dir=state_dir,
            model_id=model_id,
            dimension=dimension,
            vector_store=vector_store,
        )
    except LocalModeError as error:
        _restore_signal_handlers(previous)
        sys.stdout = stdout
        logger.error("local mode could not start: %s", error)
        return 1
    try:
        try:
            mode.start()
        except LocalModeError as error:
            logger.error("local mode could not start: %s", error)
            return 1
        logger.info(mode.describe())
        wait_for_stop(stop)
        logger.info("stopping...")
        mode.stop()
        logger.info("stopped")
        return 0
    finally:
        _restore_signal_handlers(previous)
        sys.stdout = stdout


def wait_for_stop(stop: threading.Event, poll_seconds: float = 0.5) -> None:
    """Until ``stop`` is set, waking every ``poll_seconds``. Never one blocking wait:
    the kernel may hand Ctrl-C to any thread, and then CPython only notes it for the
    main thread, which runs the handler when it next runs Python code; a main thread
    blocked on a lock would never stop (seen under load: SIGINT ignored for good)."""
    while not stop.wait(poll_seconds):
        pass


def _install_signal_handlers(stop: threading.Event) -> dict[int, Any]:
    """Ctrl-C and SIGTERM ask for a clean stop; a second one exits at once."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            os._exit(128 + signum)
        stop.set()

    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, on_signal)
    return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
