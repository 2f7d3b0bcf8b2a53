"""The AWS side of local mode: an in-process moto server holding the same
bucket, table, queues and S3 -> SQS notification as the stack.

Only S3, SQS and DynamoDB are redirected to moto (service-specific endpoint
environment variables). Bedrock keeps the standard AWS configuration, so
``AWS_PROFILE``, credentials and ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` work as usual.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import boto3

from imagesearch import resources as r
from imagesearch.local.hosts import LOOPBACK_HOSTS, host_name

logger = logging.getLogger(__name__)

# The services local mode redirects, with the botocore service-specific endpoint
# variables that do it for every client in the process (the handlers' included).
MOTO_SERVICES = {
    "s3": "AWS_ENDPOINT_URL_S3",
    "sqs": "AWS_ENDPOINT_URL_SQS",
    "dynamodb": "AWS_ENDPOINT_URL_DYNAMODB",
}
# SPEC section 3: a message goes to the DLQ after five receives.
MAX_RECEIVE_COUNT = r.INGEST_MAX_RECEIVE_COUNT
# Short, so a failed message is retried within seconds on a laptop (the stack uses
# a multiple of the function timeout). One worker thread processes one batch at a
# time, so a slow batch is never redelivered to a second consumer meanwhile.
VISIBILITY_TIMEOUT_SECONDS = 5
DEFAULT_REGION = "us-east-1"
_DUMMY_KEY = "local-mode-moto"
_NOTIFIED_EVENTS = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")


class LocalModeError(RuntimeError):
    """Local mode cannot start; the message tells the user what to do."""


@dataclass(frozen=True)
class LocalNames:
    bucket: str = "imagesearch-local"
    table: str = "imagesearch-local-images"
    queue: str = "imagesearch-local-ingest"
    dead_letter_queue: str = "imagesearch-local-ingest-dlq"
    retry_queue: str = "imagesearch-local-ingest-retry"
    upload_prefix: str = r.CONTEXT_DEFAULTS["uploadPrefix"]
    noncurrent_version_days: int = r.CONTEXT_DEFAULTS["noncurrentVersionDays"]


@dataclass(frozen=True)
class LocalResources:
    """Where everything lives; served at ``GET /local/resources`` for the CLI."""

    endpoint_url: str
    region: str
    bucket: str
    table: str
    queue_url: str
    queue_arn: str
    dlq_url: str
    upload_prefix: str
    retry_queue_url: str  # messages back from a failed receive, retried alone (decision 43)

    def public(self) -> dict[str, str]:
        data = asdict(self)
        del data["queue_arn"]
        del data["retry_queue_url"]
        return data


@dataclass(frozen=True)
class AwsClients:
    s3: Any
    sqs: Any
    dynamodb: Any


def create_resources(clients: AwsClients, names: LocalNames, *, region: str) -> LocalResources:
    """Create the stack's storage and ingest resources on ``clients`` (moto).

    Shapes come from ``imagesearch.resources`` like the stack's, so local mode
    and tests cannot drift from what ``cdk deploy`` creates.
    """
    # Idempotent: local mode restores a saved state first, and only what is missing
    # is created (queues, versioning, lifecycle and the notification are the same calls
    # either way).
    if not _bucket_exists(clients.s3, names.bucket):
        bucket_args: dict[str, Any] = {"Bucket": names.bucket}
        if region != "us-east-1":
            bucket_args["CreateBucketConfiguration"] = {"LocationConstraint": region}
        clients.s3.create_bucket(**bucket_args)
    # Versioned with the stack's lifecycle rules: deletes leave delete markers and
    # ingest sees the same ObjectRemoved:DeleteMarkerCreated events as in AWS.
    notify_delete_markers()
    clients.s3.put_bucket_versioning(
        Bucket=names.bucket, VersioningConfiguration={"Status": "Enabled"}
    )
    clients.s3.put_bucket_lifecycle_configuration(
        Bucket=names.bucket,
        LifecycleConfiguration={
            "Rules": r.images_bucket_lifecycle_rules(names.noncurrent_version_days)
        },
    )

    if not _table_exists(clients.dynamodb, names.table):
        clients.dynamodb.create_table(**r.table_definition(names.table))
        clients.dynamodb.update_time_to_live(
            TableName=names.table,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": r.ATTR_EXPIRES_AT},
        )

    dlq_url = clients.sqs.create_queue(QueueName=names.dead_letter_queue)["QueueUrl"]
    dlq_arn = _queue_arn(clients.sqs, dlq_url)
    queue_url = clients.sqs.create_queue(
        QueueName=names.queue, Attributes=queue_attributes(dlq_arn)
    )["QueueUrl"]
    queue_arn = _queue_arn(clients.sqs, queue_url)
    retry_queue_url = clients.sqs.create_queue(
        QueueName=names.retry_queue, Attributes=retry_queue_attributes(dlq_arn)
    )["QueueUrl"]

    # Real S3 -> SQS notifications (moto delivers them, starting with s3:TestEvent).
    prefix_filter = {"Key": {"FilterRules": [{"Name": "prefix", "Value": names.upload_prefix}]}}
    clients.s3.put_bucket_notification_configuration(
        Bucket=names.bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": "ingest",
                    "QueueArn": queue_arn,
                    "Events": list(_NOTIFIED_EVENTS),
                    "Filter": prefix_filter,
                }
            ]
        },
    )
    return LocalResources(
        endpoint_url=clients.s3.meta.endpoint_url,
        region=region,
        bucket=names.bucket,
        table=names.table,
        queue_url=queue_url,
        queue_arn=queue_arn,
        dlq_url=dlq_url,
        upload_prefix=names.upload_prefix,
        retry_queue_url=retry_queue_url,
    )


def resources_fingerprint(names: LocalNames, region: str) -> str:
    """A short hash of everything ``create_resources`` sets up: a state saved with the
    same one holds these resources exactly as this version would make them."""
    text = json.dumps(
        [
            asdict(names),
            region,
            r.table_definition(names.table),
            r.images_bucket_lifecycle_rules(names.noncurrent_version_days),
            queue_attributes("dead-letter-queue"),
            retry_queue_attributes("dead-letter-queue"),
            _NOTIFIED_EVENTS,
            "versioned, delete markers announced, TTL on " + r.ATTR_EXPIRES_AT,
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def existing_resources(clients: AwsClients, names: LocalNames, *, region: str) -> LocalResources:
    """The resources ``create_resources`` made, as restored from a saved state with the
    same ``resources_fingerprint``: looked up, nothing written (three reads instead of
    nine requests, and no change that the state saver would save again). Raises
    ClientError when one is missing."""
    notify_delete_markers()
    dlq_url = clients.sqs.get_queue_url(QueueName=names.dead_letter_queue)["QueueUrl"]
    queue_url = clients.sqs.get_queue_url(QueueName=names.queue)["QueueUrl"]
    retry_queue_url = clients.sqs.get_queue_url(QueueName=names.retry_queue)["QueueUrl"]
    return LocalResources(
        endpoint_url=clients.s3.meta.endpoint_url,
        region=region,
        bucket=names.bucket,
        table=names.table,
        queue_url=queue_url,
        queue_arn=_queue_arn(clients.sqs, queue_url),
        dlq_url=dlq_url,
        upload_prefix=names.upload_prefix,
        retry_queue_url=retry_queue_url,
    )


def notify_delete_markers() -> None:
    """Make moto announce delete markers as S3 does.

    In a versioned bucket a plain DeleteObject adds a delete marker and S3 sends
    ``ObjectRemoved:DeleteMarkerCreated``; moto (5.2) adds the marker silently, so
    nothing would ever leave the index. Wraps moto's (in-process) S3 backend once.
    """
    from moto.s3 import models, notifications

    original = models.S3Backend._set_delete_marker
    if getattr(original, "_sends_notification", False):
        return

    def set_delete_marker(self: Any, bucket_name: str, key_name: str) -> Any:
        bucket = self.get_bucket(bucket_name)
        current = bucket.keys.get(key_name)
        marker = original(self, bucket_name, key_name)
        if isinstance(current, models.FakeKey):
            notifications.send_event(
                self.account_id,
                notifications.S3NotificationEvent.OBJECT_REMOVED_DELETE_MARKER_CREATED_EVENT,
                bucket,
                current,
            )
        return marker

    set_delete_marker._sends_notification = True  # type: ignore[attr-defined]
    models.S3Backend._set_delete_marker = set_delete_marker  # type: ignore[method-assign]


def queue_attributes(dlq_arn: str) -> dict[str, str]:
    """The ingest queue's attributes (part of what a saved state must match)."""
    return {
        "VisibilityTimeout": str(VISIBILITY_TIMEOUT_SECONDS),
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT}
        ),
    }


def retry_queue_attributes(dlq_arn: str) -> dict[str, str]:
    """The retry queue's: a message gets one receive on the ingest queue and these."""
    return {
        "VisibilityTimeout": str(VISIBILITY_TIMEOUT_SECONDS),
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": r.INGEST_RETRY_MAX_RECEIVE_COUNT}
        ),
    }


def _bucket_exists(s3: Any, bucket: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
            return False
        raise
    return True


def _table_exists(dynamodb: Any, table: str) -> bool:
    try:
        dynamodb.describe_table(TableName=table)
    except dynamodb.exceptions.ResourceNotFoundException:
        return False
    return True


def _queue_arn(sqs: Any, queue_url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    arn: str = attributes["Attributes"]["QueueArn"]
    return arn


class MotoServer:
    """moto's threaded server on 127.0.0.1 and a free port, quiet, behind a
    ``MotoGuard``; its endpoint URL ends in the guard's secret path. ``middleware``
    wraps moto's WSGI app inside the guard (local mode's state tracking)."""

    def __init__(
        self, host: str = "127.0.0.1", middleware: Callable[[Any], Any] | None = None
    ) -> None:
        self._host = host
        self._middleware = middleware
        self._server: Any = None
        self.endpoint_url = ""

    def start(self, page_origins: frozenset[str] = frozenset()) -> str:
        """``page_origins``: local mode's page, which may read presigned URLs."""
        # werkzeug logs every request at INFO (and adds its own handler when it
        # finds none): keep moto's access log out of the user's terminal.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        inner = self._middleware

        def guarded(app: Any) -> Any:
            return MotoGuard(
                inner(app) if inner is not None else app,
                secret=secret,
                page_origins=page_origins,
            )

        self._server = _wrapped_server_class(guarded)(ip_address=self._host, port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}/{secret}"
        # moto keeps its state in module globals: a second server in one process
        # (tests) would otherwise find the previous one's bucket and table.
        reset_moto()
        return self.endpoint_url

    def stop(self) -> None:
        if self._server is not None:
            reset_moto()  # frees the images held in memory
            self._server.stop()
            self._server = None


def reset_moto() -> None:
    """What ``POST /moto-api/reset`` does, in-process (the guard refuses that route)."""
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()


def _wrapped_server_class(middleware: Callable[[Any], Any]) -> Any:
    """ThreadedMotoServer serving ``middleware(moto's app)`` (moto is pinned: its
    ``_server_entry`` is the same few lines as below)."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    class Wrapped(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = middleware(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    return Wrapped


# Where moto's endpoint lives under its port: a random path only local mode's clients
# know (the endpoint variables, the CLI via GET /local/resources, presigned URLs).
_SECRET_BYTES = 18
# moto's control API (reset, state transitions, recorder): never served over HTTP here;
# local mode resets moto in-process.
_MOTO_API_PREFIX = "/moto-api"


class MotoGuard:
    """WSGI middleware in front of moto: only local mode itself gets through.

    moto answers anyone on its port with CORS ``*``: any web page the user visits
    could list, download, delete or reset everything. Here a request must address
    moto by a loopback name (DNS rebinding), carry the endpoint's secret path prefix
    (a page cannot guess it; an ``<img>`` or form aimed at the port gets a 404), and
    come from no web origin or from local mode's own page (``page_origins``, which
    fetches presigned URLs); only that origin gets CORS headers back. moto's
    ``/moto-api`` is refused.
    """

    def __init__(self, app: Callable[..., Any], *, secret: str, page_origins: frozenset[str]):
        self._app = app
        self._prefix = f"/{secret}"
        self._page_origins = page_origins

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        refusal = self._refusal(environ)
        if refusal is not None:
            status, message = refusal
            body = json.dumps({"message": message}).encode()
            start_response(
                status,
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        path = environ.get("PATH_INFO", "")
        environ["PATH_INFO"] = path[len(self._prefix) :] or "/"
        for name in ("RAW_URI", "REQUEST_URI"):
            # moto matches S3 keys against the raw (still percent-encoded) path.
            if environ.get(name, "").startswith(self._prefix + "/"):
                environ[name] = environ[name][len(self._prefix) :]
        origin = environ.get("HTTP_ORIGIN")

        def respond(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
            # moto adds CORS "*" to everything: only local mode's page may read.
            kept = [
                (n, v)
                for n, v in headers
                if not n.lower().startswith("access-control-") and n.lower() != "vary"
            ]
            # Always Vary: an <img>'s cached answer (no Origin, no CORS headers) must not
            # serve the page's later fetch() of the same presigned URL.
            kept.append(("Vary", "Origin"))
            if origin is not None:
                kept += [
                    ("Access-Control-Allow-Origin", origin),
                    ("Access-Control-Allow-Methods", "GET, HEAD"),
                ]
            return start_response(status, kept, *args)

        return self._app(environ, respond)

    def _refusal(self, environ: dict[str, Any]) -> tuple[str, str] | None:
        host = host_name(environ.get("HTTP_HOST", ""))
        if host not in LOOPBACK_HOSTS:
            return "421 Misdirected Request", "moto answers loopback names only"
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and origin.rstrip("/").lower() not in self._page_origins:
            return "403 Forbidden", "moto serves local mode only, not other web pages"
        path = environ.get("PATH_INFO", "")
        if path != self._prefix and not path.startswith(self._prefix + "/"):
            return "404 Not Found", "not found"
        rest = path[len(self._prefix) :]
        if rest == _MOTO_API_PREFIX or rest.startswith(_MOTO_API_PREFIX + "/"):
            return "403 Forbidden", "moto's control API is not served in local mode"
        if origin is not None and environ.get("REQUEST_METHOD") not in ("GET", "HEAD", "OPTIONS"):
            return "403 Forbidden", "the page may only read from moto (presigned URLs)"
        return None


def page_origins(hosts: frozenset[str], port: int) -> frozenset[str]:
    """The web origins of local mode's page (``hosts`` it answers to on ``port``)."""
    return frozenset(
        f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}" for host in hosts
    )


class EnvironPatch:
    """Changes to ``os.environ`` that ``restore`` undoes (local mode can run inside
    a test process, which must get its environment back)."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def set(self, name: str, value: str) -> None:
        self._saved.setdefault(name, os.environ.get(name))
        os.environ[name] = value

    def setdefault(self, name: str, value: str) -> None:
        if name not in os.environ:
            self.set(name, value)

    def restore(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()


def resolve_region(env: EnvironPatch, session: Any) -> str:
    """The region of the standard AWS configuration (``session``: a boto3 session),
    us-east-1 when there is none."""
    region = session.region_name
    if region:
        return region
    logger.info("no AWS region configured: using %s", DEFAULT_REGION)
    env.set("AWS_DEFAULT_REGION", DEFAULT_REGION)
    return DEFAULT_REGION


def ensure_credentials(env: EnvironPatch, embedder: str, session: Any) -> bool:
    """Give moto dummy credentials when the default chain (of the boto3 ``session``)
    finds none at all (True).

    Real credentials are left alone: Bedrock needs them, and moto accepts any.
    """
    if session.get_credentials() is not None:
        return False
    env.set("AWS_ACCESS_KEY_ID", _DUMMY_KEY)
    env.set("AWS_SECRET_ACCESS_KEY", _DUMMY_KEY)
    hint = (
        " (Bedrock calls will fail: configure AWS credentials or AWS_PROFILE)"
        if embedder == "bedrock"
        else ""
    )
    logger.warning("no AWS credentials found: using dummy credentials for moto only%s", hint)
    return True


def moto_endpoint_environ(endpoint_url: str) -> dict[str, str]:
    """Endpoint variables that send the process's S3, SQS and DynamoDB clients to moto."""
    return dict.fromkeys(MOTO_SERVICES.values(), endpoint_url)


def redirected_clients(session: Any, endpoint_url: str) -> AwsClients:
    """Default S3, SQS and DynamoDB clients of ``session`` (a boto3 session), which
    must resolve to moto. Refuses to run when they would still reach real AWS (for
    example with ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS``): the handlers would then
    write to an account's S3 and DynamoDB."""
    clients = {}
    for service, variable in MOTO_SERVICES.items():
        client = session.client(service)
        actual = client.meta.endpoint_url
        if actual.rstrip("/") != endpoint_url.rstrip("/"):
            raise LocalModeError(
                f"{service} clients resolve to {actual}, not the local moto server: "
                f"{variable} is being ignored (unset AWS_IGNORE_CONFIGURED_ENDPOINT_URLS "
                "and ignore_configured_endpoint_urls in your AWS config)"
            )
        clients[service] = client
    return AwsClients(**clients)


class DefaultSession:
    """One boto3 session for the whole process while local mode runs, as
    ``boto3.DEFAULT_SESSION`` (what the handlers' ``boto3.client`` calls use): a
    session reads botocore's endpoint and service data on its first client of each
    service (a quarter of a second for S3 alone), so every client of local mode, its
    handlers and its probe shares one, and so does moto, which otherwise makes a session
    of its own to list each service's regions (reading botocore's 1.2 MB endpoint file
    again). ``restore`` puts the previous ones back."""

    def __init__(self) -> None:
        self._saved: list[tuple[Any, Any]] = []

    def install(self, region: str) -> Any:
        from moto.core.base_backend import AccountSpecificBackend

        session = boto3.session.Session(region_name=region)
        self._saved.append((boto3.DEFAULT_SESSION, AccountSpecificBackend.__dict__["get_session"]))
        boto3.DEFAULT_SESSION = session
        AccountSpecificBackend.get_session = classmethod(  # type: ignore[method-assign,assignment]
            lambda cls: session
        )
        return session

    def restore(self) -> None:
        from moto.core.base_backend import AccountSpecificBackend

        while self._saved:
            default, moto_sessions = self._saved.pop()
            boto3.DEFAULT_SESSION = default
            AccountSpecificBackend.get_session = moto_sessions  # type: ignore[method-assign]
