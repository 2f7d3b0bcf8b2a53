"""Where the CLI talks to: a ``--url`` (local mode or any endpoint) or a deployed stack.

A deployed stack is found from its CloudFormation outputs (``resources.OUTPUT_*``);
local mode tells its moto endpoint and resource names at ``GET /local/resources``.
Every AWS client and the HTTP session are built lazily and can be injected (tests pass
``botocore.stub.Stubber`` clients and a fake transport).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from imagesearch import resources as r
from imagesearch.cli.errors import (
    NO_CREDENTIALS,
    NO_REGION,
    ApiError,
    CliError,
    client_error_parts,
    from_aws,
)
from imagesearch.cli.http import (
    ApiClient,
    SigV4Signer,
    check_url,
    is_local_url,
    region_from_url,
)

# Local mode's moto server accepts any key; never send real credentials to it.
_LOCAL_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
_REQUIRED_OUTPUTS = (
    r.OUTPUT_API_URL,
    r.OUTPUT_BUCKET,
    r.OUTPUT_UPLOAD_PREFIX,
    r.OUTPUT_TABLE,
    r.OUTPUT_QUEUE_URL,
    r.OUTPUT_DLQ_URL,
)


@dataclass(frozen=True)
class Backend:
    """The bucket, table and queues behind the API (for ``backfill`` and ``status``)."""

    region: str
    bucket: str
    upload_prefix: str
    table: str
    queue_url: str
    dlq_url: str
    model_id: str | None = None
    dimension: int | None = None
    endpoint_url: str | None = None  # local mode's moto server; None for real AWS
    vector_store: str = r.CONTEXT_DEFAULTS["vectorStore"]
    vector_bucket: str | None = None  # s3vectors only
    vector_index: str | None = None  # s3vectors only
    vectors_endpoint_url: str | None = None  # local mode's S3 Vectors emulator
    # The embedded index's capacity (stack output, or local mode's /health).
    embedded_max_images: int | None = None
    # Whether the model is usable (local mode's /health "model"; None: not asked).
    model_state: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Stack:
    name: str
    region: str
    api_url: str
    backend: Backend


def read_stack(cloudformation: Any, name: str, region: str) -> Stack:
    """The deployed stack ``name`` from its outputs; CliError when absent or incomplete."""
    from botocore.exceptions import ClientError

    not_found = (
        f"stack {name} not found in region {region}: deploy it with make deploy or pass --url"
    )
    try:
        response = cloudformation.describe_stacks(StackName=name)
    except ClientError as error:
        code, message = client_error_parts(error)
        if code == "ValidationError" and "does not exist" in message:
            raise CliError(not_found) from error
        raise from_aws(error) from error
    stacks = response.get("Stacks") or []
    if not stacks:
        raise CliError(not_found)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs") or []}
    missing = [key for key in _REQUIRED_OUTPUTS if not outputs.get(key)]
    if missing:
        status = stacks[0].get("StackStatus", "unknown")
        raise CliError(
            f"stack {name} in {region} (status {status}) lacks the output(s)"
            f" {', '.join(missing)}: wait for the deployment to finish or redeploy with"
            " make deploy"
        )
    dimension = outputs.get(r.OUTPUT_DIMENSION)
    capacity = outputs.get(r.OUTPUT_EMBEDDED_MAX_IMAGES)
    backend = Backend(
        region=region,
        bucket=outputs[r.OUTPUT_BUCKET],
        upload_prefix=outputs[r.OUTPUT_UPLOAD_PREFIX],
        table=outputs[r.OUTPUT_TABLE],
        queue_url=outputs[r.OUTPUT_QUEUE_URL],
        dlq_url=outputs[r.OUTPUT_DLQ_URL],
        model_id=outputs.get(r.OUTPUT_MODEL_ID) or None,
        vector_store=outputs.get(r.OUTPUT_VECTOR_STORE) or r.CONTEXT_DEFAULTS["vectorStore"],
        vector_bucket=outputs.get(r.OUTPUT_VECTOR_BUCKET) or None,
        vector_index=outputs.get(r.OUTPUT_VECTOR_INDEX) or None,
        dimension=int(dimension) if dimension and dimension.isdigit() else None,
        embedded_max_images=int(capacity) if capacity and capacity.isdigit() else None,
    )
    return Stack(name=name, region=region, api_url=outputs[r.OUTPUT_API_URL], backend=backend)


class Context:
    """Resolves the target once per command and hands out the API and AWS clients."""

    def __init__(
        self,
        *,
        url: str | None,
        stack_name: str = r.DEFAULT_STACK_NAME,
        region: str | None = None,
        profile: str | None = None,
        http: requests.Session | None = None,
        boto_session: Any | None = None,
        clients: Mapping[str, Any] | None = None,
    ) -> None:
        self.url = check_url(url) if url else None
        self.stack_name = stack_name
        self.region = region
        self.profile = profile
        self._http = http
        self._boto_session = boto_session
        self._clients: dict[str, Any] = dict(clients or {})
        self._api: ApiClient | None = None
        self._stack: Stack | None = None
        self._backend: Backend | None = None

    @property
    def is_local(self) -> bool:
        return self.url is not None and is_local_url(self.url)

    @property
    def http(self) -> requests.Session:
        if self._http is None:
            self._http = requests.Session()
        return self._http

    # --- AWS configuration -------------------------------------------------------

    def boto_session(self) -> Any:
        if self._boto_session is None:
            import boto3
            from botocore.exceptions import BotoCoreError

            try:
                self._boto_session = boto3.Session(
                    profile_name=self.profile, region_name=self.region
                )
            except BotoCoreError as error:
                raise from_aws(error) from error
        return self._boto_session

    def aws_region(self) -> str:
        region = self.region or self.boto_session().region_name
        if not region:
            raise CliError(NO_REGION)
        return str(region)

    def credentials(self) -> Any:
        credentials = self.boto_session().get_credentials()
        if credentials is None:
            raise CliError(NO_CREDENTIALS)
        return credentials

    def stack(self) -> Stack:
        if self._stack is None:
            if "cloudformation" not in self._clients:
                self.credentials()  # fail with the clear message before any call
            region = self.aws_region()
            if "cloudformation" not in self._clients:
                self._clients["cloudformation"] = self.boto_session().client(
                    "cloudformation", region_name=region
                )
            self._stack = read_stack(self._clients["cloudformation"], self.stack_name, region)
        return self._stack

    # --- The search API ----------------------------------------------------------

    def api(self) -> ApiClient:
        if self._api is None:
            if self.url is not None and self.is_local:
                self._api = ApiClient(self.url, session=self.http)
            elif self.url is not None:
                credentials = self.credentials()
                region = region_from_url(self.url) or self.aws_region()
                signer = SigV4Signer(credentials, region)
                self._api = ApiClient(self.url, session=self.http, signer=signer)
            else:
                stack = self.stack()
                signer = SigV4Signer(self.credentials(), stack.region)
                self._api = ApiClient(stack.api_url, session=self.http, signer=signer)
        return self._api

    # --- Bucket, table and queues --------------------------------------------------

    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = self._local_backend() if self.is_local else self.stack().backend
        return self._backend

    def _local_backend(self) -> Backend:
        api = self.api()
        try:
            info = api.get("/local/resources")
        except ApiError as error:
            if error.status == 404:
                raise CliError(
                    f"{self.url} has no /local/resources: backfill and status need local mode"
                    " (imagesearch local) or a deployed stack (--stack, without --url)"
                ) from error
            raise
        health = api.get("/health") or {}
        try:
            return Backend(
                region=info["region"],
                bucket=info["bucket"],
                upload_prefix=info["upload_prefix"],
                table=info["table"],
                queue_url=info["queue_url"],
                dlq_url=info["dlq_url"],
                endpoint_url=info["endpoint_url"],
                model_id=health.get("model_id"),
                dimension=health.get("dimension"),
                vector_store=info.get("vector_store") or r.CONTEXT_DEFAULTS["vectorStore"],
                vector_bucket=info.get("vector_bucket"),
                vector_index=info.get("vector_index"),
                vectors_endpoint_url=info.get("vectors_endpoint_url"),
                embedded_max_images=health.get("capacity"),
                model_state=health.get("model") or {"state": health.get("status", "unknown")},
            )
        except (KeyError, TypeError) as error:
            raise CliError(f"{self.url}/local/resources lacks {error}") from error

    def client(self, service: str) -> Any:
        """boto3 client of the backend: local mode's moto server or the stack's region."""
        if service not in self._clients:
            backend = self.backend()
            if backend.endpoint_url:
                import boto3
                import botocore.session

                # Ignore AWS_PROFILE: the emulator needs no profile, and a broken one
                # must not stop `status` or `backfill` against local mode.
                core = botocore.session.Session(session_vars={"profile": (None, None, None, None)})
                self._clients[service] = boto3.session.Session(botocore_session=core).client(
                    service,
                    endpoint_url=backend.endpoint_url,
                    region_name=backend.region,
                    **_LOCAL_CREDENTIALS,
                )
            else:
                self.credentials()
                self._clients[service] = self.boto_session().client(
                    service, region_name=backend.region
                )
        return self._clients[service]
