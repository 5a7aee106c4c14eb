"""A lean keep-alive HTTP/1.1 client connection for the load generator: asyncio Protocol + httptools.

Why not aiohttp's ClientSession: each `session.post` runs a few hundred microseconds of
Python (timeouts, cookies, redirects, tracing, header merging). Measured on this machine
kind against one trivial endpoint at concurrency 32, that capped an aiohttp client near
2,000 req/s while wrk reached 4,000-6,500; a coroutine loop over a plain asyncio Protocol
reached 4,700-5,700, and this callback-driven one more again (see bench_load_test.py). A load generator only ever sends one prebuilt request and waits for its
reply on a connection it owns, so that is all this class does. Parsing the reply is left
to httptools (llhttp, Node.js's HTTP parser; uvicorn's parser too), including chunked
bodies and keep-alive rules. TLS (the AWS runtime is https) is asyncio's.

    origin = Origin.from_url("https://runtime.sagemaker.eu-west-1.amazonaws.com/endpoints/x/invocations")
    connection = await Connection.open(origin, ssl_context, 5.0, listener)
    connection.send(origin.request(signed_headers, body))   # later: listener(Reply(status, headers, body), None)
"""
from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools


class Reply:
    """One HTTP response. Headers (names lower-cased, as botocore's parsers look them up) and
    body are kept only for non-200 replies, the ones whose error code must be parsed:
    skipping them on the hot path is a measurable share of the client's time."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


@dataclass(frozen=True)
class Origin:
    """Where requests go, from a URL: `http://127.0.0.1:8080/endpoints/x/invocations`."""

    host: str
    port: int
    path: str
    host_header: str  # what SigV4 signed as `host`: no port when it is the scheme's default
    tls: bool

    @classmethod
    def from_url(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http(s)://host/path URL, got {url!r}")
        tls = parts.scheme == "https"
        default_port = 443 if tls else 80
        port = parts.port or default_port
        host_header = parts.hostname if port == default_port else f"{parts.hostname}:{port}"
        return cls(parts.hostname, port, parts.path or "/", host_header, tls)

    def request(self, headers: dict[str, str], body: bytes) -> bytes:
        """The full bytes of a POST carrying `body` with `headers` (already signed)."""
        lines = [f"POST {self.path} HTTP/1.1", f"Host: {self.host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() not in ("host", "content-length")]
        lines += [f"Content-Length: {len(body)}", "", ""]
        return "\r\n".join(lines).encode("latin-1") + body


Listener = Callable[[Reply | None, Exception | None], None]


class Connection(asyncio.Protocol):
    """One connection, one request in flight at a time, driven by callbacks.

    `send` writes a request; when its reply is complete (or the request fails) the
    connection calls `listener(reply, None)` or `listener(None, error)` from the event loop,
    and the listener may send the next request right there. No future, task or timer per
    request: that is where an asyncio client spends its time. Timeouts are enforced from
    outside (`fail`), by one watchdog per load generator. A connection is unusable
    (`closed`) after any failure.
    """

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.busy = False  # a request is in flight
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._keep_headers = False

    @classmethod
    async def open(cls, origin: Origin, ssl_context: ssl.SSLContext | None, timeout: float, listener: Listener) -> Connection:
        """Connect (TLS when the origin is https); TimeoutError or OSError if that fails in time."""
        loop = asyncio.get_running_loop()
        server_hostname = origin.host if origin.tls else None
        _, connection = await asyncio.wait_for(
            loop.create_connection(
                lambda: cls(listener), origin.host, origin.port,
                ssl=ssl_context if origin.tls else None, server_hostname=server_hostname,
            ),
            timeout,
        )  # fmt: skip
        return connection

    def send(self, request: bytes) -> None:
        """Write `request`; the listener hears about its reply."""
        if self.closed or self.transport is None:
            raise ConnectionError("connection is closed")
        self.busy = True
        self.transport.write(request)

    def fail(self, error: Exception) -> None:
        """End the request in flight with `error` (a timeout, a broken reply) and drop the connection."""
        if not self.busy:
            return
        self.busy = False
        self.close()
        self.listener(None, error)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] - a stream transport (uvloop's is not an asyncio.Transport subclass)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self.fail(ConnectionError(f"malformed HTTP reply: {error}"))

    def connection_lost(self, error: Exception | None) -> None:
        self.closed = True
        self.fail(ConnectionError(f"connection lost: {error or 'closed by the server'}"))

    # -- httptools callbacks ---------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self._keep_headers = self.parser.get_status_code() != 200

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._keep_headers:
            self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        if self._keep_headers:  # a 200's body is not looked at: the load test measures, it does not score
            self._body.append(body)

    def on_message_complete(self) -> None:
        reply = Reply(self.parser.get_status_code(), self._headers, b"".join(self._body))
        self._headers, self._body = {}, []
        if not self.busy:
            return  # a reply nobody asked for (after a timeout): ignore it
        self.busy = False
        if not self.parser.should_keep_alive():
            self.close()
        self.listener(reply, None)
