"""HTTP/1.x on a socket, as little as the JSON 1.0 protocol needs: requests in, replies out.

    connection = Connection(sock)
    while (request := connection.read()) is not None:      # None: the client closed
        connection.send(200, payload, request_id)
        if request.close: break

Why not http.server: its request handler reads each header line through a buffered file
and parses the headers with the email package, about a tenth of a millisecond a request;
here a request is one or two recv() calls and one split, and a reply one sendall().
Keep-alive (HTTP/1.1 by default, HTTP/1.0 with `Connection: keep-alive`), pipelined
requests, `Expect: 100-continue` and `Content-Length` bodies are supported; a malformed
request raises BadRequest with the status to answer (400, or 431 for header lines too
long or too many), after which the connection is closed.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from http import HTTPStatus

MAX_HEADER_LINE = 65536
MAX_HEADERS = 100
MAX_BODY = 32 * 1024 * 1024  # the API's largest request (a definition, an input) is far smaller
_MAX_HEAD = (MAX_HEADERS + 2) * (MAX_HEADER_LINE + 2)
_REASONS = {status.value: status.phrase for status in HTTPStatus}


class BadRequest(Exception):
    """A request that cannot be read: answer `status` with the message, then close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class Request:
    """One request: method, path, headers by lower-case name (the first of repeated ones), body."""

    method: str
    path: str
    version: str
    headers: dict[str, str]
    body: bytes
    close: bool  # the connection ends after the reply (Connection: close, or HTTP/1.0 without keep-alive)


class Connection:
    """A client's socket: read() requests one after the other, send() a reply to each."""

    def __init__(self, sock: socket.socket, pending: bytes = b"") -> None:
        self.sock = sock
        self.pending = pending  # bytes received past the last request (pipelining)

    def _receive(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.pending += data
        return True

    def read(self) -> Request | None:
        """The next request; None when the client closed the connection between requests."""
        while True:
            end = self.pending.find(b"\r\n\r\n")
            if end >= 0:
                head, self.pending = self.pending[:end], self.pending[end + 4:]
                break
            end = self.pending.find(b"\n\n")  # bare LF line ends, as http.server accepts them
            if end >= 0:
                head, self.pending = self.pending[:end], self.pending[end + 2:]
                break
            _check_partial_head(self.pending)
            if not self._receive():
                if self.pending.strip():
                    raise BadRequest(HTTPStatus.BAD_REQUEST, "the connection closed within a request")
                return None
        request = _parse_head(head)
        if request.headers.get("expect", "").lower() == "100-continue":
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        length = request.headers.get("content-length")
        if length:
            try:
                size = int(length)
            except ValueError:
                raise BadRequest(HTTPStatus.BAD_REQUEST, f"Bad Content-Length {length!r}") from None
            if not 0 <= size <= MAX_BODY:
                raise BadRequest(HTTPStatus.BAD_REQUEST, f"Content-Length {size} is not between 0 and {MAX_BODY}")
            while len(self.pending) < size:
                if not self._receive():
                    raise BadRequest(HTTPStatus.BAD_REQUEST, "the connection closed within a request body")
            request.body, self.pending = self.pending[:size], self.pending[size:]
        return request

    def send(self, status: int, payload: bytes, content_type: str, request_id: str) -> None:
        """One reply: status line, Content-Type, Content-Length, x-amzn-RequestId and the payload, in one write."""
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(payload)}\r\nx-amzn-RequestId: {request_id}\r\n\r\n")  # fmt: skip
        self.sock.sendall(head.encode() + payload)


def _check_partial_head(pending: bytes) -> None:
    """431 as soon as an unfinished head has a line, or in all, more than the limits allow."""
    if len(pending) > _MAX_HEAD:
        raise BadRequest(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Request header too large")
    last_line = len(pending) - pending.rfind(b"\n") - 1
    if last_line > MAX_HEADER_LINE:
        raise BadRequest(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long")


def _parse_head(head: bytes) -> Request:
    lines = head.decode("iso-8859-1").split("\n")
    request_line = lines[0].rstrip("\r")
    words = request_line.split()
    if len(words) != 3 or not words[2].startswith("HTTP/1."):
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"Bad request line {request_line!r}: expected METHOD PATH HTTP/1.x")
    if len(lines) > MAX_HEADERS + 1:
        raise BadRequest(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"Too many headers (more than {MAX_HEADERS})")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if len(line) > MAX_HEADER_LINE:
            raise BadRequest(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long")
        name, colon, value = line.partition(":")
        name = name.strip().lower()
        if not colon or not name:
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"Bad header line {line[:100]!r}")
        if name not in headers:
            headers[name] = value.strip()
    connection = headers.get("connection", "").lower()
    close = connection == "close" or (words[2] == "HTTP/1.0" and connection != "keep-alive")
    return Request(words[0], words[1], words[2], headers, b"", close)
