"""Records every AWS API call made by a Lambda function's code, to JSON lines.

A call belongs to a function when a frame of its handler module
(``imagesearch/handlers/<name>.py``) is on the stack, or when the thread was started,
or the pool task submitted, from such a call (snapshot range GETs, s3transfer's
multipart parts, the search instance's background refresher). Calls made by the tests
themselves, by local mode's set-up or by the CLI belong to no function and are left
out: only the deployed functions' roles are checked.

Each line holds the function, the service, the operation, the request parameters
needed to name the resource (never bodies, images or vectors), the client's region and
the deployment environment the call ran under (the settings the stack derives its
policies from). One file per process, appended to, so xdist workers and local-mode
subprocesses write side by side.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import botocore.client
import botocore.signers

from imagesearch import resources as r

ENV_RECORD_DIR = "IMAGESEARCH_IAM_RECORD"  # where to append calls; unset: record nothing

# handlers/<module>.py -> the function (construct) whose role runs it
HANDLER_FUNCTIONS = {"ingest": "ingest", "api": "search", "maintenance": "maintenance"}
# The settings a function's policy depends on, with everything that names a resource.
DEPLOYMENT_ENV = (
    r.ENV_BUCKET,
    r.ENV_TABLE,
    r.ENV_UPLOAD_PREFIX,
    r.ENV_MODEL_ID,
    r.ENV_EMBEDDING_DIMENSION,
    r.ENV_CAPTION_MODE,
    r.ENV_VECTOR_STORE,
    r.ENV_VECTOR_BUCKET,
    r.ENV_VECTOR_INDEX,
    r.ENV_SNAPSHOT_PREFIX,
    r.ENV_PREVIOUS_MODEL_ID,
    r.ENV_PREVIOUS_EMBEDDING_DIMENSION,
    r.ENV_INGEST_QUEUE_URL,
    r.ENV_INGEST_RETRY_QUEUE_URL,
)
# Parameters that name what a call acts on (and the S3 ones that change its action).
NAMING_PARAMS = frozenset(
    {
        "Bucket",
        "Key",
        "Prefix",
        "VersionId",
        "CopySource",
        "TableName",
        "IndexName",
        "QueueUrl",
        "modelId",
        "vectorBucketName",
        "indexName",
        "indexArn",
        "vectorBucketArn",
        "filter",
        "returnMetadata",
    }
)

_SEP = os.sep
_HANDLER_MARK = f"{_SEP}imagesearch{_SEP}handlers{_SEP}"
_local = threading.local()
_lock = threading.Lock()
_installed = False


def current_function() -> str | None:
    """The function whose code is running on this thread, if any."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if _HANDLER_MARK in filename:
            module = Path(filename).stem
            if module in HANDLER_FUNCTIONS:
                return HANDLER_FUNCTIONS[module]
        frame = frame.f_back
    return getattr(_local, "function", None)


_PACKAGE_MARK = f"{_SEP}imagesearch{_SEP}"


def call_site() -> str:
    """The innermost product frame making the call: ``index/sync.py:VectorSync.sync``."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if _PACKAGE_MARK in filename and f"{_SEP}tests{_SEP}" not in filename:
            module = filename.rsplit(_PACKAGE_MARK, 1)[1].replace(_SEP, "/")
            return f"{module}:{frame.f_code.co_qualname}"
        frame = frame.f_back
    return getattr(_local, "site", None) or "?"


def _run_as(origin: tuple[str, str], target: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``target`` as the function (and call site) that handed it to this thread."""
    previous = (getattr(_local, "function", None), getattr(_local, "site", None))
    _local.function, _local.site = origin
    try:
        return target(*args, **kwargs)
    finally:
        _local.function, _local.site = previous


def _record(line: dict[str, Any]) -> None:
    directory = os.environ.get(ENV_RECORD_DIR)
    if not directory:
        return
    path = Path(directory) / f"calls-{os.getpid()}.jsonl"
    text = json.dumps(line, sort_keys=True, default=str) + "\n"
    with _lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            out.write(text)


# The images table's partition key (resources.ATTR_IMAGE_ID; this module imports no
# product code: local mode's subprocesses load it at start-up).
_TABLE_KEY = "image_id"


def _call_line(client: Any, function: str, operation: str, params: dict[str, Any]) -> dict:
    model = client.meta.service_model
    naming = {key: value for key, value in params.items() if key in NAMING_PARAMS}
    if operation in ("BatchGetItem", "BatchWriteItem"):
        naming["RequestItems"] = sorted(params.get("RequestItems", {}))
    if operation == "TransactWriteItems":
        naming["TransactItems"] = sorted(
            {
                part.get("TableName", "")
                for item in params.get("TransactItems", [])
                for part in item.values()
            }
        )
    if operation == "PutItem" and _TABLE_KEY in params.get("Item", {}):
        # Only the item's key (what dynamodb:LeadingKeys names), never its attributes.
        naming["Key"] = {_TABLE_KEY: params["Item"][_TABLE_KEY]}
    if operation == "DeleteObjects":
        naming["Keys"] = [o.get("Key") for o in params.get("Delete", {}).get("Objects", [])]
    if operation == "QueryVectors":
        naming["filter"] = "filter" in params
    return {
        "function": function,
        "site": call_site(),
        "service": model.signing_name or model.endpoint_prefix,
        "operation": operation,
        "params": naming,
        "region": client.meta.region_name,
        "env": {name: os.environ[name] for name in DEPLOYMENT_ENV if name in os.environ},
    }


def install() -> None:
    """Patch botocore (calls and presigning) and thread hand-offs; idempotent."""
    global _installed
    if _installed:
        return
    _installed = True

    make_api_call = botocore.client.BaseClient._make_api_call

    def recording_make_api_call(self: Any, operation_name: str, api_params: Any) -> Any:
        function = current_function()
        if function is not None:
            _record(_call_line(self, function, operation_name, dict(api_params or {})))
        return make_api_call(self, operation_name, api_params)

    botocore.client.BaseClient._make_api_call = recording_make_api_call  # type: ignore[method-assign]

    generate_presigned_url = botocore.signers.generate_presigned_url

    def recording_presign(self: Any, ClientMethod: str, Params: Any = None, **kw: Any) -> Any:
        function = current_function()
        if function is not None:
            operation = self.meta.method_to_api_mapping.get(ClientMethod, ClientMethod)
            line = _call_line(self, function, operation, dict(Params or {}))
            line["presigned"] = True
            _record(line)
        return generate_presigned_url(self, ClientMethod, Params, **kw)

    botocore.signers.generate_presigned_url = recording_presign

    start = threading.Thread.start

    def attributed_start(self: threading.Thread) -> None:
        function = current_function()
        if function is not None:
            run = self.run
            origin = (function, call_site())
            self.run = lambda: _run_as(origin, run)  # type: ignore[method-assign]
        start(self)

    threading.Thread.start = attributed_start  # type: ignore[method-assign]

    submit = ThreadPoolExecutor.submit

    def attributed_submit(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        function = current_function()
        if function is None:
            return submit(self, fn, *args, **kwargs)
        return submit(self, _run_as, (function, call_site()), fn, *args, **kwargs)

    ThreadPoolExecutor.submit = attributed_submit  # type: ignore[method-assign]


def read_calls(directory: Path) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    for path in sorted(directory.glob("calls-*.jsonl")):
        with path.open(encoding="utf-8") as lines:
            calls.extend(json.loads(line) for line in lines if line.strip())
    return calls
