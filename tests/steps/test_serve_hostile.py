"""Hostile input against a real `python -m steps.serve` process (issue 17): decompression bombs,
oversized JSON batches, DNS-rebinding Host headers, slow and half-sent requests. Every case
asserts the status and the JSON body; the memory cases read the server's own peak RSS
(VmHWM in /proc/<pid>/status, reset through /proc/<pid>/clear_refs before each case), summed
over the server's processes (steps/serve_processes.py: the parent forks one per worker, and
the growth is in whichever took the request).

The bounds, and why:
- an image refused from its header: peak RSS grows by at most REFUSED_BOUND (64 MB). The
  server holds the body (at most 6 MB) a few times over (chunks, the joined body, base64
  text and its decoded bytes for JSON): under 30 MB; the rest is allocator slack. Before
  the fix the 10000x10000 YCCK JPEG took +593 MB and the 16000x16000 progressive one +512.
- an image that is decoded: by at most the decoder memory cap (128 MB) on top of that.
- 30 clients that each send 1 MB of a declared 5 MB body and stall: by at most 30 MB of
  held bodies plus REFUSED_BOUND, and each gets a 408 after the body timeout.
"""
from __future__ import annotations

import base64
import io
import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from steps.imaging import DEFAULT_MAX_DECODE_BYTES
from steps.serve import parse_args
from tests.steps.conftest import serving_pids

MB = 1024 * 1024
REFUSED_BOUND = 64 * MB
ServeProcess = Callable[..., tuple[subprocess.Popen[bytes], int]]


# ---------------------------------------------------------------------------- hostile images


def progressive_jpeg(mode: str, width: int, height: int, **options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), 128 if mode == "L" else (90, 140, 200)).save(
        buffer, "JPEG", quality=75, progressive=True, **options)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def frame(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return cv2.imencode(".jpg", cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (640, 480)))[1].tobytes()


@pytest.fixture(scope="module")
def bombs(jpeg_bombs: dict[str, bytes]) -> dict[str, bytes]:
    return {
        **jpeg_bombs,  # before: 200 OK and +593 MB (YCCK), +512 MB (progressive grey)
        # within the 40 M pixel cap, but 4:4:4 progressive: 3 x 40 M coefficients x 2 bytes = 240 MB
        "progressive 4:4:4": progressive_jpeg("RGB", 8000, 5000, subsampling=0),
        "png": png_claiming(60000, 50000),
    }


# ---------------------------------------------------------------------------- a server and raw HTTP


class Served:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process, self.port = process, port

    def call(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
             host: str | None = None) -> tuple[int, dict[str, Any]]:
        """One request on its own connection, Host as given (default: this server's)."""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host if host is not None else f'127.0.0.1:{self.port}'}",
                 f"Content-Length: {len(body)}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if host == "":
            lines = [line for line in lines if not line.startswith("Host:")]
        with socket.create_connection(("127.0.0.1", self.port), timeout=60) as connection:
            connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert b"Content-Type: application/json" in head, answer[:300]
        return int(head.split()[1]), json.loads(payload)

    def invoke(self, body: bytes, content_type: str = "image/jpeg", **kwargs: Any) -> tuple[int, dict[str, Any]]:
        return self.call("POST", "/invocations", body, {"Content-Type": content_type}, **kwargs)

    def processes(self) -> list[int]:
        return serving_pids(self.process.pid)

    @staticmethod
    def status(pid: int, key: str) -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {key}")

    def reset_peak(self) -> dict[int, int]:
        """Start each process's VmHWM again from its current RSS (Linux: write 5 to clear_refs);
        returns those RSS."""
        before = {}
        for pid in self.processes():
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            before[pid] = self.status(pid, "VmRSS")
        return before

    def peak_growth(self, before: dict[int, int]) -> int:
        """Bytes the processes' peak RSS grew by since `before` (reset_peak's answer), summed."""
        assert set(self.processes()) == set(before), "a server process was replaced during the case"
        return sum(self.status(pid, "VmHWM") - rss for pid, rss in before.items())

    def counters(self) -> dict[str, Any]:
        return self.call("GET", "/ping")[1]


@pytest.fixture(scope="module")
def server(archive: Path, tmp_path_factory: pytest.TempPathFactory, serve_process: ServeProcess) -> Iterator[Served]:
    process, port = serve_process(archive, tmp_path_factory.mktemp("hostile"), "--workers", "2",
                                  "--body-timeout", "2", "--header-timeout", "1")
    yield Served(process, port)
    process.terminate()
    process.wait(timeout=15)


# ---------------------------------------------------------------------------- 2. bombs


@pytest.mark.parametrize(("name", "words"), [
    ("ycck", "JPEG is 10000x10000 pixels, over the limit of 40000000"),
    ("progressive grey", "JPEG is 16000x16000 pixels, over the limit of 40000000"),
    ("progressive 4:4:4", "JPEG is 8000x5000 pixels and needs about 232 MB to decode, over the limit of 128 MB"),
    ("png", "PNG is 60000x50000 pixels, over the limit of 40000000"),
])
def test_a_decompression_bomb_is_refused_from_its_header_with_memory_flat(
        server: Served, bombs: dict[str, bytes], name: str, words: str) -> None:
    server.invoke(frame())  # warm
    before = server.reset_peak()
    started = time.monotonic()
    status, body = server.invoke(bombs[name])
    assert (status, body) == (400, {"error": "InvalidImage", "message": words})
    assert time.monotonic() - started < 2.0  # nothing was decoded
    assert server.peak_growth(before) <= REFUSED_BOUND, server.peak_growth(before) / MB


def test_bombs_inside_a_json_batch_are_refused_before_any_image_is_decoded(server: Served, bombs: dict[str, bytes]) -> None:
    instances = [base64.b64encode(frame(seed)).decode() for seed in range(3)] + [base64.b64encode(bombs["png"]).decode()]
    before = server.counters()["batched_images"]
    status, body = server.invoke(json.dumps({"instances": instances}).encode(), "application/json")
    assert (status, body["error"]) == (400, "InvalidImage") and body["message"].startswith("instances[3]: PNG is 60000x50000")
    assert server.counters()["batched_images"] == before  # the three good frames were not decoded either


def test_a_large_progressive_jpeg_within_the_caps_is_served_in_bounded_memory(server: Served) -> None:
    data = progressive_jpeg("RGB", 4000, 3000)  # 12 M pixels, 4:2:0: 18 M coefficients, 36 MB buffered
    before = server.reset_peak()
    status, body = server.invoke(data)
    assert status == 200 and len(body) == 10
    assert server.peak_growth(before) <= DEFAULT_MAX_DECODE_BYTES + REFUSED_BOUND


# ---------------------------------------------------------------------------- 4. JSON batches


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


JSON_CASES: list[tuple[str, bytes, int, str, str]] = [
    ("65 instances", json.dumps({"instances": [b64(frame())] * 65}).encode(), 413, "TooManyInstances",
     "65 instances in one request; the limit is 64"),
    ("100,000 empty strings", json.dumps({"instances": [""] * 100_000}).encode(), 413, "TooManyInstances",
     "100000 instances in one request"),
    ("an empty string among images", json.dumps({"instances": [b64(frame()), ""]}).encode(), 400, "InvalidJson",
     "instances[1] is an empty string"),
    ("a number", json.dumps({"instances": [b64(frame()), 7]}).encode(), 400, "InvalidJson",
     "instances[1] is int, not a base64 string"),
    ("a nested list", json.dumps({"instances": [[b64(frame())]]}).encode(), 400, "InvalidJson",
     "instances[0] is list, not a base64 string"),
    ("b64 not a string", json.dumps({"instances": [{"b64": 5}]}).encode(), 400, "InvalidJson",
     "instances[0] is int, not a base64 string"),
    ("an object with other keys", json.dumps({"instances": [{"b64": b64(frame()), "x": 1}]}).encode(), 400,
     "InvalidJson", 'instances[0] is an object without exactly one key "b64"'),
    ("100,000-deep array", b"[" * 100_000 + b"]" * 100_000, 400, "InvalidJson", "nested too deeply"),
    ("100,000-deep instances", b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "InvalidJson",
     "nested too deeply"),
    ("instances not a list", b'{"instances": "abc"}', 400, "InvalidJson", "must be {"),
    ("no instances", b"[]", 400, "InvalidJson", "must be {"),
    ("bad base64 after good ones", json.dumps({"instances": [b64(frame()), "!!"]}).encode(), 400, "InvalidBase64",
     "instances[1] is not valid base64"),
]


@pytest.mark.parametrize(("body", "status", "error", "words"), [case[1:] for case in JSON_CASES],
                         ids=[case[0] for case in JSON_CASES])
def test_json_batches_are_checked_whole_before_any_image_is_decoded(
        server: Served, body: bytes, status: int, error: str, words: str) -> None:
    before = server.counters()["batched_images"]
    started = time.monotonic()
    got_status, got = server.invoke(body, "application/json")
    assert (got_status, got["error"]) == (status, error) and words in got["message"], got
    assert time.monotonic() - started < 2.0
    assert server.counters()["batched_images"] == before


def test_a_full_batch_of_64_is_served(server: Served) -> None:
    status, body = server.invoke(json.dumps({"instances": [b64(frame(seed)) for seed in range(64)]}).encode(),
                                 "application/json")
    assert status == 200 and len(body) == 64


def test_the_instance_cap_is_configurable(archive: Path, tmp_path: Path, serve_process: ServeProcess) -> None:
    process, port = serve_process(archive, tmp_path, "--max-instances", "2")
    try:
        served = Served(process, port)
        three = json.dumps({"instances": [b64(frame())] * 3}).encode()
        assert served.invoke(three, "application/json")[0] == 413
        assert served.invoke(json.dumps({"instances": [b64(frame())] * 2}).encode(), "application/json")[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=15)


# ---------------------------------------------------------------------------- 7. Host


@pytest.mark.parametrize(("host", "status", "error"), [
    ("evil.example:{port}", 403, "ForbiddenHost"),  # DNS rebinding: evil.example resolves to 127.0.0.1
    ("evil.example", 403, "ForbiddenHost"),
    ("127.0.0.1:1", 403, "ForbiddenHost"),  # another local port's origin
    ("127.0.0.1.evil.example:{port}", 403, "ForbiddenHost"),
])
def test_a_host_that_is_not_this_server_is_refused_on_every_route(server: Served, host: str, status: int,
                                                                   error: str) -> None:
    host = host.format(port=server.port)
    for method, path, body in (("POST", "/invocations", frame()), ("GET", "/ping", b"")):
        got_status, got = server.call(method, path, body, {"Content-Type": "image/jpeg"}, host=host)
        assert (got_status, got["error"]) == (status, error), got
        if status == 403:
            assert f"Host {host!r} is not this server's address" in got["message"]


def test_a_request_without_host_is_a_400(server: Served) -> None:
    for version in ("1.0", "1.1"):  # HTTP/1.1 requires Host: aiohttp's parser refuses it, in plain text
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
            connection.sendall(f"GET /ping HTTP/{version}\r\n\r\n".encode())
            _, received = _closed_after(connection, 10)
        assert received.startswith(b"HTTP/1.0 400"), received  # aiohttp answers a parser error in HTTP/1.0
        if version == "1.0":
            assert b'"MissingHost"' in received
        else:
            assert b"Missing 'Host' header" in received


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}"])
def test_the_loopback_names_with_the_bound_port_are_served(server: Served, host: str) -> None:
    assert server.invoke(frame(), host=host.format(port=server.port))[0] == 200


def test_any_host_is_served_when_asked_for_a_container(archive: Path, tmp_path: Path, serve_process: ServeProcess,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    process, port = serve_process(archive, tmp_path, "--allow-any-host")
    try:
        assert Served(process, port).invoke(frame(), host="10.0.0.7:8080")[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=15)
    monkeypatch.setenv("DDCICD_ALLOW_ANY_HOST", "1")
    assert parse_args(["--host", "0.0.0.0"]).allow_any_host
    monkeypatch.delenv("DDCICD_ALLOW_ANY_HOST")
    assert not parse_args(["--host", "0.0.0.0"]).allow_any_host


# ---------------------------------------------------------------------------- 3. slow clients


def _closed_after(connection: socket.socket, limit: float) -> tuple[float, bytes]:
    """Seconds until the server closes `connection`, and what it sent first."""
    started = time.monotonic()
    connection.settimeout(limit)
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except TimeoutError:
        raise AssertionError(f"still open after {limit} s") from None
    except ConnectionResetError:
        pass
    return time.monotonic() - started, received


def test_an_idle_connection_is_closed_after_the_header_timeout(server: Served) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as idle:
        waited, received = _closed_after(idle, 10)
    assert 0.8 <= waited <= 4 and received == b""


def test_half_sent_headers_are_closed_after_the_header_timeout_even_when_they_trickle(server: Served) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as half:
        half.sendall(f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Ty".encode())
        waited, _ = _closed_after(half, 10)
    assert 0.8 <= waited <= 4
    with socket.create_connection(("127.0.0.1", server.port)) as trickle:
        started = time.monotonic()
        try:
            for byte in b"POST /invocations HTTP/1.1\r\nX-Padding: " + b"a" * 60:  # one byte every 0.1 s: 9 s
                trickle.sendall(bytes([byte]))
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert time.monotonic() - started < 4  # cut off at the timeout, not when the client gave up


def test_a_kept_alive_connection_is_closed_when_it_goes_idle(server: Served) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as kept:
        kept.sendall(f"GET /ping HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        waited, received = _closed_after(kept, 10)
    assert received.startswith(b"HTTP/1.1 200") and 0.8 <= waited <= 4


def test_thirty_stalled_bodies_get_408_and_hold_bounded_memory(server: Served) -> None:
    head = (f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {5 * MB}\r\n\r\n").encode()
    before = server.reset_peak()
    connections = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(30)]
    try:
        for connection in connections:
            connection.sendall(head + b"\xff\xd8\xff" + bytes(MB - 3))
        with ThreadPoolExecutor(30) as pool:
            answers = list(pool.map(lambda connection: _closed_after(connection, 15), connections))
    finally:
        for connection in connections:
            connection.close()
    for waited, received in answers:
        assert received.startswith(b"HTTP/1.1 408") and b'"RequestTimeout"' in received
        assert waited <= 2 + 2 + 4  # the body timeout, 2 s of draining, slack for 30 clients on 2 busy cores
    assert server.peak_growth(before) <= 30 * MB + REFUSED_BOUND, server.peak_growth(before) / MB
    assert server.invoke(frame())[0] == 200
