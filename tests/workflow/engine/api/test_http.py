"""The server's own HTTP/1.1 request parsing, byte by byte over a real socket: keep-alive, Connection: close,
Expect: 100-continue, header names in any case, and malformed requests answered 400/431."""
from __future__ import annotations

import json
import socket
from typing import Iterator

import pytest

from workflow.engine.api import ApiServer
from workflow.engine.api.server import MAX_HEADERS

AUTH = "AWS4-HMAC-SHA256 Credential=123456789012/20261201/eu-west-1/states/aws4_request, SignedHeaders=host, Signature=x"


@pytest.fixture
def connection(server: ApiServer) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as made:
        yield made


def request(operation: str, body: dict | None = None, extra: str = "", target_header: str = "X-Amz-Target") -> bytes:
    payload = json.dumps(body or {}).encode()
    return (f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n{target_header}: AWSStepFunctions.{operation}\r\nAuthorization: {AUTH}\r\n"
            f"Content-Type: application/x-amz-json-1.0\r\nContent-Length: {len(payload)}\r\n{extra}\r\n").encode() + payload


_UNREAD: dict[int, bytes] = {}  # bytes past one reply (two pipelined replies can come in one recv), per socket


def read_reply(stream: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """(status, headers by lower-case name, body) of one reply; what follows it is kept for the next call."""
    data = _UNREAD.pop(stream.fileno(), b"")
    while b"\r\n\r\n" not in data:
        chunk = stream.recv(65536)
        assert chunk, f"the server closed the connection after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        body += stream.recv(65536)
    if body[length:]:
        _UNREAD[stream.fileno()] = body[length:]
    return int(lines[0].split()[1]), headers, body[:length]


def closed(stream: socket.socket) -> bool:
    return stream.recv(1) == b""


def test_one_connection_carries_many_requests_even_sent_together(connection: socket.socket) -> None:
    connection.sendall(request("ListStateMachines") + request("ListActivities"))
    first, second = read_reply(connection), read_reply(connection)
    assert (first[0], json.loads(first[2])) == (200, {"stateMachines": []})
    assert (second[0], json.loads(second[2])) == (200, {"activities": []})
    assert first[1]["content-type"] == "application/x-amz-json-1.0" and first[1]["x-amzn-requestid"]


def test_header_names_are_read_in_any_case(connection: socket.socket) -> None:
    connection.sendall(request("ListStateMachines", target_header="x-amz-TARGET"))
    assert read_reply(connection)[0] == 200


def test_connection_close_ends_the_connection_after_the_reply(connection: socket.socket) -> None:
    connection.sendall(request("ListStateMachines", extra="Connection: close\r\n"))
    assert read_reply(connection)[0] == 200
    assert closed(connection)


def test_http_1_0_closes_unless_kept_alive(server: ApiServer) -> None:
    for extra, stays_open in (("", False), ("Connection: keep-alive\r\n", True)):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stream:
            stream.sendall(request("ListStateMachines", extra=extra).replace(b"HTTP/1.1", b"HTTP/1.0", 1))
            assert read_reply(stream)[0] == 200
            if stays_open:
                stream.sendall(request("ListStateMachines"))
                assert read_reply(stream)[0] == 200
            else:
                assert closed(stream)


def test_expect_100_continue_gets_its_interim_reply_before_the_body(connection: socket.socket) -> None:
    whole = request("ListStateMachines", extra="Expect: 100-continue\r\n")
    head, body = whole.split(b"\r\n\r\n", 1)
    connection.sendall(head + b"\r\n\r\n")
    assert read_reply(connection)[0] == 100
    connection.sendall(body)
    assert read_reply(connection)[0] == 200


@pytest.mark.parametrize("raw, status", [
    (b"POST /\r\n\r\n", 400),                                       # no HTTP version
    (b"POST / HTTP/2.0\r\n\r\n", 400),                              # not HTTP/1.x
    (b"POST / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n", 431),
    (b"POST / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % index for index in range(MAX_HEADERS + 1)) + b"\r\n", 431),
])  # fmt: skip
def test_malformed_requests_are_refused_and_the_connection_closed(connection: socket.socket, raw: bytes, status: int) -> None:
    connection.sendall(raw)
    assert read_reply(connection)[0] == status
    assert closed(connection)
