"""The Step Functions JSON 1.0 protocol over HTTP on 127.0.0.1: what boto3, the AWS CLI and the SDKs speak.

    server = ApiServer(Backend(".ddcicd/engine.sqlite3"), port=0)   # 0: any free port
    server.start()                                                  # in a background thread
    boto3.client("stepfunctions", endpoint_url=server.url, region_name="eu-west-1")

A call is `POST /` with `X-Amz-Target: AWSStepFunctions.<Operation>` and a JSON body; the
reply is the operation's JSON (200) or `{"__type", "message"}` with AWS's status. Any SigV4
credentials are accepted: the region comes from the credential scope
(`Credential=AKID/20261201/eu-west-1/states/aws4_request`), the account from an access key
that is 12 digits (as LocalStack and moto read it) or else the server's default account.
HTTP/1.1 keep-alive, headers read without the email package (http.server's own parsing costs
about 0.1 ms a request) and one write per reply keep a DescribeExecution well under 2 ms.
"""
from __future__ import annotations

import json
import logging
import re
import socket
import threading
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from workflow.engine.api.backend import Backend
from workflow.engine.api.errors import ApiError
from workflow.engine.api.operations import call
from workflow.engine.api.requests import Caller

TARGET_PREFIX = "AWSStepFunctions."
CONTENT_TYPE = "application/x-amz-json-1.0"
_CREDENTIAL = re.compile(r"Credential=([^/\s,]+)/\d{8}/([^/\s,]+)/[^/\s,]+/aws4_request")
_LOG = logging.getLogger("ddcicd.engine.api")
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100


def caller_of(authorization: str | None, default_account: str) -> Caller:
    """The SigV4 Authorization header -> Caller; MissingAuthenticationToken when there is none."""
    match = _CREDENTIAL.search(authorization or "")
    if match is None:
        raise ApiError("MissingAuthenticationToken", "Missing Authentication Token: sign the request with SigV4 (any credentials)")
    access_key, region = match.groups()
    account = access_key if re.fullmatch(r"\d{12}", access_key) else default_account
    return Caller(region, account, access_key)


class _Headers(dict[str, str]):
    """A request's headers by lower-case name; `get` takes any case (the first of repeated headers counts)."""

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(name.lower(), default)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_HttpServer"
    headers: _Headers  # type: ignore[assignment]

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def parse_request(self) -> bool:
        """The request line and headers of an HTTP/1.x request (http.server's, without its email-based header parser).

        Sets command, path, request_version, headers and close_connection; on a malformed
        request it answers 400 (431: header lines too long or too many) and returns False.
        """
        self.command, self.request_version, self.close_connection = None, self.default_request_version, True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or not words[2].startswith("HTTP/1."):
            self.request_version = self.protocol_version  # so the error goes out with a status line
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request line {self.requestline!r}: expected METHOD PATH HTTP/1.x")
            return False
        self.command, self.path, self.request_version = words
        headers = _Headers()
        for _ in range(MAX_HEADERS + 1):
            line = self.rfile.readline(MAX_HEADER_LINE + 1)
            if len(line) > MAX_HEADER_LINE:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            name, colon, value = str(line, "iso-8859-1").partition(":")
            if not colon or not name.strip():
                self.send_error(HTTPStatus.BAD_REQUEST, f"Bad header line {line[:100]!r}")
                return False
            headers.setdefault(name.strip().lower(), value.strip())
        else:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"Too many headers (more than {MAX_HEADERS})")
            return False
        self.headers = headers
        connection = (headers.get("connection") or "").lower()
        self.close_connection = connection == "close" or (self.request_version == "HTTP/1.0" and connection != "keep-alive")
        if (headers.get("expect") or "").lower() == "100-continue":
            return self.handle_expect_100()
        return True

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        request_id = str(uuid.uuid4())
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        target = self.headers.get("X-Amz-Target") or ""
        operation = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else target
        try:
            caller = caller_of(self.headers.get("Authorization"), self.server.default_account)
            try:
                body = json.loads(raw or b"{}")
            except ValueError as error:
                raise ApiError("SerializationException", f"the request body is not JSON: {error}") from error
            if not isinstance(body, dict):
                raise ApiError("SerializationException", "the request body must be a JSON object")
            if not target.startswith(TARGET_PREFIX):
                raise ApiError("UnknownOperationException", f"Unknown operation: X-Amz-Target {target!r}")
            status, reply = 200, call(self.server.backend, operation, body, caller)
        except ApiError as error:
            status, reply = error.status, error.body()
        except Exception as error:  # noqa: BLE001 - a bug answers InternalFailure, and the server goes on
            _LOG.exception("%s failed", operation)
            failure = ApiError("InternalFailure", f"internal error in {operation}: {type(error).__name__}: {error}")
            status, reply = failure.status, failure.body()
        self._reply(status, reply, request_id)
        if self.server.verbose:
            _LOG.info("%s %d", operation, status)

    def do_GET(self) -> None:  # noqa: N802
        self._reply(404, ApiError("UnknownOperationException", "POST / with X-Amz-Target").body(), str(uuid.uuid4()))

    def _reply(self, status: int, reply: dict[str, Any], request_id: str) -> None:
        payload = json.dumps(reply, separators=(",", ":")).encode()
        head = (f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}\r\n"
                f"Content-Type: {CONTENT_TYPE}\r\nContent-Length: {len(payload)}\r\n"
                f"x-amzn-RequestId: {request_id}\r\n\r\n").encode()  # fmt: skip
        self.wfile.write(head + payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        if self.server.verbose:
            _LOG.info(format, *args)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], backend: Backend, default_account: str, verbose: bool) -> None:
        super().__init__(address, _Handler)
        self.backend = backend
        self.default_account = default_account
        self.verbose = verbose


class ApiServer:
    """The API on host:port (127.0.0.1 by default); `serve_forever` in the foreground or `start` in a thread."""

    def __init__(self, backend: Backend, port: int = 8083, host: str = "127.0.0.1", default_account: str = "000000000000",
                 verbose: bool = False) -> None:  # fmt: skip
        self.backend = backend
        self._server = _HttpServer((host, port), backend, default_account, verbose)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]}:{self.port}"

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.2)

    def start(self) -> "ApiServer":
        self._thread = threading.Thread(target=self.serve_forever, name="engine-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
