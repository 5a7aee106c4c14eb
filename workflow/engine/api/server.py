"""The Step Functions JSON 1.0 protocol over HTTP on 127.0.0.1: what boto3, the AWS CLI and the SDKs speak.

    server = ApiServer(Backend(".ddcicd/engine.sqlite3"), port=0)   # 0: any free port
    server.start()                                                  # in a background thread
    boto3.client("stepfunctions", endpoint_url=server.url, region_name="eu-west-1")

A call is `POST /` with `X-Amz-Target: AWSStepFunctions.<Operation>` and a JSON body; the
reply is the operation's JSON (200) or `{"__type", "message"}` with AWS's status. Any SigV4
credentials are accepted: the region comes from the credential scope
(`Credential=AKID/20261201/eu-west-1/states/aws4_request`), the account from an access key
that is 12 digits (as LocalStack and moto read it) or else the server's default account.
Each connection is served by its own thread (http.py reads and writes it). A call that starts
an execution holds the execution's worker until the reply is written (workers.py: holding).
Measured under the benchmark (benchmarks/bench_engine_api.py): waking the worker before the
reply made StartExecution about 0.2 ms slower (the woken thread competes with the reply for
the interpreter and a core); running the execution on the answering thread instead saves
the wake-up but then competes with the client reading its reply, and was no faster.
"""
from __future__ import annotations

import itertools
import json
import logging
import re
import socket
import threading
import uuid
from typing import Any

from workflow.engine.api.backend import Backend
from workflow.engine.api.errors import ApiError
from workflow.engine.api.http import MAX_HEADER_LINE, MAX_HEADERS, BadRequest, Connection, Request
from workflow.engine.api.operations import call
from workflow.engine.api.requests import Caller
from workflow.engine.workers import WORKERS

TARGET_PREFIX = "AWSStepFunctions."
CONTENT_TYPE = "application/x-amz-json-1.0"
_CREDENTIAL = re.compile(r"Credential=([^/\s,]+)/\d{8}/([^/\s,]+)/[^/\s,]+/aws4_request")
_LOG = logging.getLogger("ddcicd.engine.api")
_ENCODER = json.JSONEncoder(separators=(",", ":"))

__all__ = ["ApiServer", "MAX_HEADERS", "MAX_HEADER_LINE", "caller_of"]


def caller_of(authorization: str | None, default_account: str) -> Caller:
    """The SigV4 Authorization header -> Caller; MissingAuthenticationToken when there is none."""
    match = _CREDENTIAL.search(authorization or "")
    if match is None:
        raise ApiError("MissingAuthenticationToken", "Missing Authentication Token: sign the request with SigV4 (any credentials)")
    access_key, region = match.groups()
    account = access_key if re.fullmatch(r"\d{12}", access_key) else default_account
    return Caller(region, account, access_key)


class _RequestIds:
    """x-amzn-RequestId values: a random UUID's first 24 characters and a 12-digit hex counter (unique per server)."""

    def __init__(self) -> None:
        self._prefix = str(uuid.uuid4())[:24]
        self._count = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._count):012x}"


class ApiServer:
    """The API on host:port (127.0.0.1 by default); `serve_forever` in the foreground or `start` in a thread."""

    def __init__(self, backend: Backend, port: int = 8083, host: str = "127.0.0.1", default_account: str = "000000000000",
                 verbose: bool = False) -> None:  # fmt: skip
        self.backend = backend
        self.default_account = default_account
        self.verbose = verbose
        self._listener = socket.create_server((host, port))
        self._listener.settimeout(0.2)  # accept() wakes up this often to notice stop()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._thread: threading.Thread | None = None
        self._ids = _RequestIds()

    @property
    def port(self) -> int:
        return self._listener.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self._listener.getsockname()[0]}:{self.port}"

    def serve_forever(self) -> None:
        """Accepts connections until stop(); each gets a daemon thread."""
        self._stopped.clear()
        try:
            while not self._stopping.is_set():
                try:
                    sock, _ = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    if self._stopping.is_set():
                        break
                    raise
                sock.settimeout(None)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                threading.Thread(target=self._serve, args=(Connection(sock),), name="engine-api-connection", daemon=True).start()
        finally:
            self._stopped.set()

    def start(self) -> "ApiServer":
        self._thread = threading.Thread(target=self.serve_forever, name="engine-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._stopped.wait(5)
        self._listener.close()
        if self._thread is not None:
            self._thread.join(5)

    # ------------------------------------------------------------------ one connection
    def _serve(self, connection: Connection) -> None:
        """Requests and replies on one connection until the client closes it (or asks to)."""
        try:
            while True:
                try:
                    request = connection.read()
                except BadRequest as error:
                    payload = _ENCODER.encode({"message": str(error)}).encode()
                    connection.send(error.status, payload, CONTENT_TYPE, self._ids.next())
                    return
                if request is None:
                    return
                try:
                    with WORKERS.holding() as held:
                        status, reply = self._answer(request)
                    connection.send(status, _ENCODER.encode(reply).encode(), CONTENT_TYPE, self._ids.next())
                finally:
                    WORKERS.start_held(held)
                if request.close:
                    return
        except OSError:
            return  # the client went away mid-reply
        finally:
            connection.sock.close()

    def _answer(self, request: Request) -> tuple[int, dict[str, Any]]:
        """(HTTP status, reply body) for one request."""
        if request.method != "POST":
            error = ApiError("UnknownOperationException", "POST / with X-Amz-Target", status=404 if request.method == "GET" else 501)
            return error.status, error.body()
        target = request.headers.get("x-amz-target") or ""
        operation = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else target
        try:
            caller = caller_of(request.headers.get("authorization"), self.default_account)
            try:
                body = json.loads(request.body or b"{}")
            except ValueError as error:
                raise ApiError("SerializationException", f"the request body is not JSON: {error}") from error
            if not isinstance(body, dict):
                raise ApiError("SerializationException", "the request body must be a JSON object")
            if not target.startswith(TARGET_PREFIX):
                raise ApiError("UnknownOperationException", f"Unknown operation: X-Amz-Target {target!r}")
            status, reply = 200, call(self.backend, operation, body, caller)
        except ApiError as error:
            status, reply = error.status, error.body()
        except Exception as error:  # noqa: BLE001 - a bug answers InternalFailure, and the server goes on
            _LOG.exception("%s failed", operation)
            failure = ApiError("InternalFailure", f"internal error in {operation}: {type(error).__name__}: {error}")
            status, reply = failure.status, failure.body()
        if self.verbose:
            _LOG.info("%s %d", operation, status)
        return status, reply
