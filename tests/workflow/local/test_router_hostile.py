"""The runtime router under hostile input: a real router process, raw sockets, exact answers.

Timeouts are shortened through the environment the router inherits
($DDCICD_ROUTER_BODY_TIMEOUT, $DDCICD_ROUTER_HEADER_TIMEOUT); the defaults are 30 s and 20 s.
"""
from __future__ import annotations

import http.server
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from workflow.local.processes import stop_all
from workflow.local.router import ENDPOINT_NAME
from workflow.local.runtime import ensure_runtime, read_record, runtime_file

TIMEOUT = 2.0  # body and header timeout of the router under test, in seconds
MB = 1024 * 1024


@dataclass
class Router:
    home: Path
    port: int
    pid: int


@pytest.fixture()
def router(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Router]:
    monkeypatch.setenv("DDCICD_ROUTER_BODY_TIMEOUT", str(TIMEOUT))
    monkeypatch.setenv("DDCICD_ROUTER_HEADER_TIMEOUT", str(TIMEOUT))
    home = tmp_path / "home"
    (home / "endpoints" / "endpoints").mkdir(parents=True)  # as after the first endpoint: `..` can climb out
    url = ensure_runtime(home)
    record = read_record(runtime_file(home))
    assert record is not None
    yield Router(home, int(url.rsplit(":", 1)[1]), int(record["pid"]))
    stop_all(home, grace=5.0)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def _read_answer(sock: socket.socket) -> Answer:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed without an answer after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Answer(int(lines[0].split()[1]), headers, body[:length])


def _send(router: Router, method: str, raw_path: str, body: bytes = b"x", headers: str = "") -> Answer:
    with socket.create_connection(("127.0.0.1", router.port), timeout=30) as sock:
        sock.sendall(f"{method} {raw_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-image\r\n"
                     f"Content-Length: {len(body)}\r\n{headers}\r\n".encode() + body)
        return _read_answer(sock)


def _seconds_until_closed(sock: socket.socket, limit: float = 30.0) -> tuple[float, bytes]:
    """How long until the router closes the connection, and what it sent before closing."""
    sock.settimeout(limit)
    started, received = time.monotonic(), b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return time.monotonic() - started, received


@pytest.mark.parametrize("raw_name", [
    "..%2F..%2Fruntime",  # the file runtime.json, outside the endpoints folder
    "..%2F..%2Fbait",  # a JSON file that names another local service's port
    "a%00b", "a%2Fb", "..", "-leading", "trailing-", "a_b", "a.b", "%41", "x" * 64,
])  # fmt: skip
def test_an_invalid_endpoint_name_is_a_validation_error_like_sagemaker(router: Router, raw_name: str) -> None:
    answer = _send(router, "POST", f"/endpoints/{raw_name}/invocations")
    assert answer.status == 400, answer
    assert answer.headers["x-amzn-errortype"] == "ValidationError"
    assert answer.json() == {"__type": "ValidationError", "message": (
        f"1 validation error detected: Value '{raw_name}' at 'endpointName' failed to satisfy constraint: "
        "Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")}


def test_a_crafted_name_never_reaches_another_local_service(router: Router) -> None:
    """Before the fix, `..%2F..%2Fbait` read <home>/bait.json and POSTed the body to the port in it."""
    hits: list[str] = []

    class Service(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    service = http.server.HTTPServer(("127.0.0.1", 0), Service)
    threading.Thread(target=service.serve_forever, daemon=True).start()
    try:
        bait = {"EndpointName": "bait", "EndpointStatus": "InService",
                "instances": [{"variant": "AllTraffic", "port": service.server_address[1]}]}
        (router.home / "bait.json").write_text(json.dumps(bait))
        for path in ("/endpoints/..%2F..%2Fbait/invocations", "/endpoints/..%2f..%2fbait/invocations",
                     "/endpoints/%2E%2E%2F%2E%2E%2Fbait/invocations"):
            assert _send(router, "POST", path).status == 400
        # a state file for another name, or with a port that is not a port, routes nowhere
        (router.home / "endpoints" / "endpoints" / "decoy.json").write_text(json.dumps(bait))
        for port in ("80; rm", -1, 70000, True):
            wrong = dict(bait, EndpointName="wrong-port", instances=[{"variant": "AllTraffic", "port": port}])
            (router.home / "endpoints" / "endpoints" / "wrong-port.json").write_text(json.dumps(wrong))
            answer = _send(router, "POST", "/endpoints/wrong-port/invocations")
            assert answer.status == 503 and answer.json()["__type"] == "ServiceUnavailable", (port, answer)
        answer = _send(router, "POST", "/endpoints/decoy/invocations")
        assert answer.status == 400 and "decoy" in answer.json()["message"]
    finally:
        service.shutdown()
    assert hits == []


def test_a_valid_unknown_name_is_not_found_like_sagemaker(router: Router) -> None:
    name = "a" + "-b" * 31  # 63 characters: the longest valid name
    assert ENDPOINT_NAME.match(name)
    answer = _send(router, "POST", f"/endpoints/{name}/invocations")
    assert answer.status == 400
    assert answer.json() == {"__type": "ValidationError", "message": f"Endpoint {name} of account 000000000000 not found."}


@pytest.mark.parametrize(("method", "path", "status", "error"), [
    ("GET", "/endpoints/staging/invocations", 405, "MethodNotAllowed"),
    ("POST", "/endpoints/staging/invocations/extra", 404, "UnknownOperationException"),
    ("POST", "/endpoints//invocations", 400, "ValidationError"),
    ("GET", "/../../etc/passwd", 404, "UnknownOperationException"),
    ("POST", "/ping", 405, "MethodNotAllowed"),
])  # fmt: skip
def test_other_paths_and_methods_are_4xx_json(router: Router, method: str, path: str, status: int, error: str) -> None:
    answer = _send(router, method, path)
    assert answer.status == status and answer.json()["__type"] == error, answer


def test_a_declared_body_over_6_mb_is_refused_before_reading(router: Router) -> None:
    with socket.create_connection(("127.0.0.1", router.port), timeout=30) as sock:
        sock.sendall(b"POST /endpoints/staging/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Length: 6291457\r\n\r\n")
        answer = _read_answer(sock)
    assert answer.status == 413 and answer.json()["__type"] == "ValidationError"
    assert "exceeds the limit of 6291456 bytes" in answer.json()["message"]


def test_a_body_that_stalls_is_answered_408_and_the_connection_closed(router: Router) -> None:
    with socket.create_connection(("127.0.0.1", router.port), timeout=30) as sock:
        sock.sendall(b"POST /endpoints/staging/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n"
                     b"only part of it")
        seconds, received = _seconds_until_closed(sock)
    assert TIMEOUT - 0.5 < seconds < TIMEOUT + 3, seconds
    assert received.startswith(b"HTTP/1.1 408 ")
    assert json.loads(received.split(b"\r\n\r\n", 1)[1])["__type"] == "RequestTimeout"


@pytest.mark.parametrize("sent", [b"", b"POST /endpoints/staging/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n", b"POST /endpo"],
                         ids=["idle", "half-sent headers", "half-sent request line"])
def test_a_connection_without_a_complete_request_head_is_closed(router: Router, sent: bytes) -> None:
    with socket.create_connection(("127.0.0.1", router.port), timeout=30) as sock:
        sock.sendall(sent)
        seconds, received = _seconds_until_closed(sock)
    assert seconds < TIMEOUT + 3 and received == b"", (seconds, received)


def _memory_mb(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {key: int(re.search(rf"^{key}:\s+(\d+) kB", status, re.M).group(1)) / 1024 for key in ("VmHWM", "VmRSS")}  # type: ignore[union-attr]


def _sockets(pid: int) -> int:
    return sum(1 for fd in Path(f"/proc/{pid}/fd").iterdir() if os.readlink(fd).startswith("socket:"))


STALLED = 30
PER_CONNECTION_MB = 3.0


def test_stalled_bodies_are_let_go_and_peak_memory_stays_bounded(router: Router) -> None:
    """Issue 17's figure: 30 connections send 1 MB of a declared 5 MB and stall.

    Before: the router's RSS went 54 -> 323 MB and all 30 were still open after 90 s. Bound:
    each stalled request holds what it received (1 MB) in aiohttp's payload buffer plus at most
    the bytearray request.read() grows into, with allocator slack: 3 MB a connection, so the
    router's peak RSS (VmHWM of the real process) may grow by 90 MB over the 30, and by no more
    after a second wave of 30 (the first wave's memory was released and is reused).
    """
    baseline_sockets = _sockets(router.pid)
    baseline = _memory_mb(router.pid)["VmHWM"]
    bound = baseline + STALLED * PER_CONNECTION_MB
    for wave in range(2):
        connections = []
        for _ in range(STALLED):
            sock = socket.create_connection(("127.0.0.1", router.port), timeout=30)
            sock.sendall(f"POST /endpoints/staging/invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         f"Content-Length: {5 * MB}\r\n\r\n".encode() + b"\0" * MB)
            connections.append(sock)
        for sock in connections:
            seconds, received = _seconds_until_closed(sock)
            assert received.startswith(b"HTTP/1.1 408 "), (wave, received[:100])
            sock.close()
        deadline = time.monotonic() + 5
        while _sockets(router.pid) > baseline_sockets and time.monotonic() < deadline:
            time.sleep(0.1)
        memory = _memory_mb(router.pid)
        print(f"wave {wave}: VmHWM {baseline:.0f} -> {memory['VmHWM']:.0f} MB (bound {bound:.0f}), VmRSS {memory['VmRSS']:.0f} MB")
        assert memory["VmHWM"] <= bound, (wave, memory, bound)
        assert _sockets(router.pid) == baseline_sockets
    assert _send(router, "POST", "/endpoints/staging/invocations").status == 400  # still serving
