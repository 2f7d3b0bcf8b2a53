"""A small HTTP server answering the S3 and DynamoDB calls of the embedded index's cold
start, refresh and snapshot write with real wire bytes, for the benchmarks: S3
GetObject (with Range) from files on disk, PutObject, multipart uploads and
DeleteObject to them, DynamoDB Query (the change log), BatchGetItem and Scan of the
change log's GSI (the reconciliation) from prepared items. Run as its own process
(``python -m bench._fakeaws DIR PORT_FILE``), so its work does not count against the
measured process.

DIR holds ``s3/<bucket>/<key>`` files, ``changes.json`` (change-log items, each with the
partition it belongs to), ``vectors.json`` (items by id) and ``catalog.json`` (the
change log's GSI as a Scan reads it, in 1 MB pages as DynamoDB answers). Change items
are visible only after ``POST /_control/changes`` (the bench switches them on between refreshes),
or from the start with a third argument ``changes``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote


class State:
    def __init__(self, root: Path, changes_visible: bool = False) -> None:
        self.root = root
        self.changes_visible = changes_visible
        changes = (
            json.loads((root / "changes.json").read_text())
            if (root / "changes.json").exists()
            else []
        )
        self.partitions: dict[str, list[dict[str, Any]]] = {}
        for item in changes:
            self.partitions.setdefault(item["change_shard"]["S"], []).append(item)
        self.vectors: dict[str, dict[str, Any]] = (
            json.loads((root / "vectors.json").read_text())
            if (root / "vectors.json").exists()
            else {}
        )
        self.catalog: list[bytes] = (
            [
                json.dumps(item, separators=(",", ":")).encode()
                for item in json.loads((root / "catalog.json").read_text())
            ]
            if (root / "catalog.json").exists()
            else []
        )
        self.lock = threading.Lock()


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def setup(self) -> None:
            super().setup()
            # Headers and body leave as separate writes: without NODELAY, Nagle's
            # algorithm and the client's delayed ACK add ~40 ms to every small answer.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = state.root / "s3" / unquote(self.path.split("?", 1)[0].lstrip("/"))
            if not path.is_file():
                body = b"<Error><Code>NoSuchKey</Code><Message>no</Message></Error>"
                self._send(404, body, {"Content-Type": "application/xml"})
                return
            size = path.stat().st_size
            start, end = 0, size - 1
            status = 200
            ranged = self.headers.get("Range")
            if ranged:
                first, last = ranged.removeprefix("bytes=").split("-")
                start, end = int(first), min(int(last), size - 1)
                status = 206
            with path.open("rb") as handle:
                body = os.pread(handle.fileno(), end - start + 1, start)
            headers = {"Content-Type": "application/octet-stream", "ETag": '"bench"'}
            if status == 206:
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            self._send(status, body, headers)

        def _object(self) -> tuple[Path, dict[str, list[str]]]:
            path, _, query = self.path.partition("?")
            return state.root / "s3" / unquote(path.lstrip("/")), parse_qs(
                query, keep_blank_values=True
            )

        def _body_to(self, target: Path) -> None:
            """The request body into ``target``, in pieces (parts are 16 MB)."""
            remaining = int(self.headers.get("Content-Length", "0"))
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as handle:
                while remaining:
                    piece = self.rfile.read(min(remaining, 1 << 20))
                    if not piece:
                        raise ConnectionError("request body ended early")
                    handle.write(piece)
                    remaining -= len(piece)

        def do_PUT(self) -> None:  # PutObject, UploadPart
            path, query = self._object()
            if "uploadId" in query:
                upload = state.root / "uploads" / query["uploadId"][0]
                self._body_to(upload / f"{int(query['partNumber'][0]):05d}")
            else:
                self._body_to(path)
            self._send(200, b"", {"ETag": f'"{uuid.uuid4().hex}"'})

        def do_DELETE(self) -> None:  # DeleteObject
            path, _ = self._object()
            path.unlink(missing_ok=True)
            self._send(204, b"", {})

        def _multipart(self, path: Path, query: dict[str, list[str]]) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            key = path.relative_to(state.root / "s3").as_posix()
            if "uploads" in query:  # CreateMultipartUpload
                upload_id = uuid.uuid4().hex
                (state.root / "uploads" / upload_id).mkdir(parents=True)
                body = (
                    "<InitiateMultipartUploadResult><Bucket>b</Bucket>"
                    f"<Key>{key}</Key><UploadId>{upload_id}</UploadId>"
                    "</InitiateMultipartUploadResult>"
                )
            else:  # CompleteMultipartUpload: the parts, in order, become the object
                upload = state.root / "uploads" / query["uploadId"][0]
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("wb") as handle:
                    for part in sorted(upload.iterdir()):
                        with part.open("rb") as source:
                            shutil.copyfileobj(source, handle, 1 << 20)
                shutil.rmtree(upload)
                body = (
                    "<CompleteMultipartUploadResult><Bucket>b</Bucket>"
                    f'<Key>{key}</Key><ETag>"done"</ETag></CompleteMultipartUploadResult>'
                )
            self._send(200, body.encode(), {"Content-Type": "application/xml"})

        def do_POST(self) -> None:
            path, query = self._object()
            if "uploads" in query or "uploadId" in query:
                self._multipart(path, query)
                return
            length = int(self.headers.get("Content-Length", "0"))
            request = json.loads(self.rfile.read(length) or b"{}")
            if self.path.startswith("/_control/changes"):
                state.changes_visible = True
                self._send(200, b"{}", {"Content-Type": "application/json"})
                return
            target = self.headers.get("X-Amz-Target", "").split(".")[-1]
            if target == "Query":
                values = request["ExpressionAttributeValues"]
                since = int(values[":since"]["N"])
                items = (
                    [
                        item
                        for item in state.partitions.get(values[":shard"]["S"], [])
                        if int(item["changed_at"]["N"]) >= since
                    ]
                    if state.changes_visible
                    else []
                )
                if "ProjectionExpression" in request:  # as DynamoDB does: only those
                    names = request.get("ExpressionAttributeNames", {})
                    wanted = [
                        names.get(part.strip(), part.strip())
                        for part in request["ProjectionExpression"].split(",")
                    ]
                    items = [{k: item[k] for k in wanted if k in item} for item in items]
                answer: dict[str, Any] = {"Items": items, "Count": len(items)}
                answer["ScannedCount"] = len(items)
            elif target == "BatchGetItem":
                ((table, asked),) = request["RequestItems"].items()
                found = [
                    state.vectors[key["image_id"]["S"]]
                    for key in asked["Keys"]
                    if key["image_id"]["S"] in state.vectors
                ]
                answer = {"Responses": {table: found}, "UnprocessedKeys": {}}
            elif target == "Scan":
                self._scan_page(request)
                return
            else:
                self._send(400, b'{"__type":"UnknownOperationException"}', {})
                return
            body = json.dumps(answer).encode()
            self._send(200, body, {"Content-Type": "application/x-amz-json-1.0"})

        def _scan_page(self, request: dict[str, Any]) -> None:
            """One page of ``catalog.json``: up to 1 MB of items, as DynamoDB pages."""
            start = int(request.get("ExclusiveStartKey", {}).get("image_id", {}).get("S", "0"))
            page: list[bytes] = []
            size = 0
            position = start
            while position < len(state.catalog) and size < 1024 * 1024:
                page.append(state.catalog[position])
                size += len(state.catalog[position])
                position += 1
            last = (
                b',"LastEvaluatedKey":{"image_id":{"S":"%d"}}' % position
                if position < len(state.catalog)
                else b""
            )
            body = b'{"Items":[%s],"Count":%d,"ScannedCount":%d%s}' % (
                b",".join(page),
                len(page),
                len(page),
                last,
            )
            self._send(200, body, {"Content-Type": "application/x-amz-json-1.0"})

    return Handler


def main(argv: list[str]) -> None:
    root, port_file = Path(argv[0]), Path(argv[1])
    state = State(root, changes_visible=argv[2:] == ["changes"])
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    server.daemon_threads = True
    port_file.write_text(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
