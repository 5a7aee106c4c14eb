"""The inference server as SageMaker calls it: a real `python -m steps.serve` process on 127.0.0.1."""
from __future__ import annotations

import base64
import http.client
import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from steps.model_archive import read_model_archive
from steps.predictor import (Predictor, cache_bound_batch_size, default_threads, largest_activation_bytes,
                             last_level_cache_bytes)
from tests.steps.conftest import serving_pids

CLASSES = [f"c{index}" for index in range(10)]  # as the conftest's `archive` has them
REPO = Path(__file__).resolve().parents[2]


class Server:
    """A server process and a keep-alive connection to it."""

    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        connection = self.connect()
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            payload = response.read()
            assert response.getheader("Content-Type", "").startswith("application/json"), payload
            return response.status, json.loads(payload)
        finally:
            connection.close()

    def invoke(self, body: bytes, content_type: str = "application/x-image", **headers: str) -> tuple[int, Any]:
        return self.request("POST", "/invocations", body, {"Content-Type": content_type, **headers})

    def processes(self) -> list[int]:
        return serving_pids(self.process.pid)

    def rss_kb(self) -> int:
        """Resident memory of the serving processes, summed."""
        total = 0
        for pid in self.processes():
            total += next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                          if line.startswith("VmRSS:"))
        return total


@pytest.fixture(scope="session")
def start_server(serve_process: Callable[..., tuple[subprocess.Popen[bytes], int]]) -> Callable[..., Server]:
    """start_server(archive, tmp, *args) -> a Server on a free port (the caller terminates it)."""
    return lambda archive, tmp, *args: Server(*serve_process(archive, tmp, *args))


@pytest.fixture(scope="module")
def server(archive: Path, tmp_path_factory: pytest.TempPathFactory,
           start_server: Callable[..., Server]) -> Iterator[Server]:
    running = start_server(archive, tmp_path_factory.mktemp("server"), "--body-timeout", "1", "--max-payload", "1000000")
    yield running
    running.process.terminate()
    running.process.wait(timeout=15)


def jpeg(seed: int = 0, height: int = 480, width: int = 640) -> bytes:
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (width, height))
    return cv2.imencode(".jpg", image)[1].tobytes()


def png(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return cv2.imencode(".png", rng.integers(0, 256, (50, 70, 4), dtype=np.uint8))[1].tobytes()


def test_ping_says_healthy(server: Server) -> None:
    assert server.request("GET", "/ping")[0] == 200


@pytest.mark.parametrize("content_type", ["application/x-image", "image/jpeg", "image/jpeg; charset=binary"])
def test_an_image_gets_one_probability_per_class_as_the_model_computes_them(
        server: Server, archive: Path, content_type: str) -> None:
    status, body = server.invoke(jpeg(), content_type, Accept="application/json")
    assert status == 200
    assert len(body) == len(CLASSES) and sum(body) == pytest.approx(1.0, abs=1e-4)
    expected = Predictor(archive, threads=1).predict_images([jpeg()])[0]
    np.testing.assert_allclose(body, expected, atol=1e-5)


def test_png_with_alpha_is_served(server: Server) -> None:
    status, body = server.invoke(png(), "image/png", Accept="*/*")
    assert status == 200 and len(body) == len(CLASSES)


def test_a_json_batch_of_base64_images_gets_a_list_per_image_in_order(server: Server) -> None:
    images = [jpeg(seed) for seed in range(3)] + [png()]
    request = json.dumps({"instances": [base64.b64encode(data).decode() for data in images]}).encode()
    status, body = server.invoke(request, "application/json")
    assert status == 200 and len(body) == 4
    for data, row in zip(images, body, strict=True):
        single = server.invoke(data, "image/png" if data.startswith(b"\x89PNG") else "image/jpeg")[1]
        np.testing.assert_allclose(row, single, atol=1e-5)


def test_a_lone_request_runs_on_every_thread_it_may_and_answers_the_same(
        archive: Path, tmp_path: Path, start_server: Callable[..., Server]) -> None:
    running = start_server(archive, tmp_path, "--workers", "1", "--lone-threads", "2")
    try:
        status, body = running.invoke(jpeg(), "image/jpeg")
        assert status == 200
        np.testing.assert_allclose(body, Predictor(archive, threads=1).predict_images([jpeg()])[0], atol=1e-5)
        assert running.request("GET", "/ping")[1]["alone_batches"] == 1
    finally:
        running.process.terminate()
        running.process.wait(timeout=15)


def test_the_batch_size_is_capped_by_the_cpu_cache_and_reported(
        archive: Path, tmp_path: Path, start_server: Callable[..., Server]) -> None:
    expected = cache_bound_batch_size(64, largest_activation_bytes(read_model_archive(archive)[0]),
                                      last_level_cache_bytes(), workers=max(2, default_threads()))
    capped = start_server(archive, tmp_path / "capped", "--workers", "2", "--max-batch-size", "64")
    exact = start_server(archive, tmp_path / "exact", "--workers", "2", "--max-batch-size", "64", "--no-cache-cap")
    try:
        assert capped.request("GET", "/ping")[1]["max_batch_size"] == expected
        assert exact.request("GET", "/ping")[1]["max_batch_size"] == 64
    finally:
        for running in (capped, exact):
            running.process.terminate()
            running.process.wait(timeout=15)


def test_concurrent_requests_each_get_their_own_answer(server: Server) -> None:
    images = [jpeg(seed) for seed in range(24)]
    alone = [server.invoke(data)[1] for data in images[:4]]
    before = server.request("GET", "/ping")[1]
    with ThreadPoolExecutor(12) as pool:
        together = list(pool.map(lambda data: server.invoke(data), images))
    after = server.request("GET", "/ping")[1]
    assert all(status == 200 for status, _ in together)
    assert after["batched_images"] - before["batched_images"] == len(images)
    assert after["batches"] - before["batches"] < len(images)  # some requests shared a forward pass
    for row, (_, got) in zip(alone, together[:4], strict=False):
        np.testing.assert_allclose(got, row, atol=1e-5)


MALFORMED: list[tuple[str, bytes, dict[str, str], int, str]] = [
    ("empty body", b"", {"Content-Type": "application/x-image"}, 400, "EmptyBody"),
    ("not an image", b"hello world", {"Content-Type": "image/jpeg"}, 400, "InvalidImage"),
    ("truncated JPEG", jpeg()[:3000], {"Content-Type": "image/jpeg"}, 400, "InvalidImage"),
    ("truncated PNG", png()[:200], {"Content-Type": "image/png"}, 400, "InvalidImage"),
    ("wrong content type", jpeg(), {"Content-Type": "text/csv"}, 415, "UnsupportedMediaType"),
    ("no content type", jpeg(), {"Content-Type": ""}, 415, "UnsupportedMediaType"),
    ("unacceptable Accept", jpeg(), {"Content-Type": "image/jpeg", "Accept": "text/csv"}, 406, "NotAcceptable"),
    ("JSON that is not JSON", b"{nope", {"Content-Type": "application/json"}, 400, "InvalidJson"),
    ("JSON without instances", b'{"x": 1}', {"Content-Type": "application/json"}, 400, "InvalidJson"),
    ("bad base64", b'{"instances": ["!!!"]}', {"Content-Type": "application/json"}, 400, "InvalidBase64"),
    ("base64 of junk", b'{"instances": ["aGVsbG8="]}', {"Content-Type": "application/json"}, 400, "InvalidImage"),
    ("over the payload cap", b"\xff\xd8\xff" + bytes(1_000_001), {"Content-Type": "image/jpeg"}, 413, "PayloadTooLarge"),
]


@pytest.mark.parametrize(("body", "headers", "status", "error"),
                         [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_bad_input_is_a_4xx_with_a_json_reason(server: Server, body: bytes, headers: dict[str, str],
                                               status: int, error: str) -> None:
    got_status, got = server.invoke(body, **{"content_type": headers.get("Content-Type", "")},
                                    **{key: value for key, value in headers.items() if key != "Content-Type"})
    assert (got_status, got["error"]) == (status, error), got
    assert got["message"]


def test_unknown_routes_and_methods_answer_in_json(server: Server) -> None:
    assert server.request("GET", "/nowhere")[0] == 404
    assert server.request("GET", "/invocations")[0] == 405


def test_a_chunked_body_over_the_cap_is_refused_without_reading_it_all(server: Server) -> None:
    connection = server.connect()
    connection.request("POST", "/invocations", body=iter([bytes(400_000)] * 4),
                       headers={"Content-Type": "image/jpeg"}, encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413 and json.loads(response.read())["error"] == "PayloadTooLarge"


def test_slow_and_aborted_clients_do_not_stop_the_server(server: Server) -> None:
    head = (f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: image/jpeg\r\n"
            "Content-Length: 5000\r\n\r\n").encode()
    aborted = socket.create_connection(("127.0.0.1", server.port))
    aborted.sendall(head + b"\xff\xd8\xff" + bytes(100))
    aborted.close()
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    slow.sendall(head + b"\xff\xd8\xff")
    answer = slow.recv(4096).decode()
    slow.close()
    assert answer.startswith("HTTP/1.1 408") and '"RequestTimeout"' in answer
    assert server.invoke(jpeg())[0] == 200


@pytest.mark.slow
def test_ten_thousand_malformed_requests_leave_memory_flat_and_the_server_serving(server: Server) -> None:
    cases = [(body, headers) for _, body, headers, status, _ in MALFORMED if status != 413]
    connection = server.connect()

    def send(count: int) -> None:
        for index in range(count):
            body, headers = cases[index % len(cases)]
            connection.request("POST", "/invocations", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            assert 400 <= response.status < 500

    assert server.invoke(jpeg())[0] == 200
    send(500)  # warm-up: allocator pools and caches reach their working size
    before = server.rss_kb()
    send(10_000)
    after = server.rss_kb()
    connection.close()
    assert server.invoke(jpeg())[0] == 200
    assert after < before * 1.10, f"RSS grew from {before} kB to {after} kB"


def test_the_server_refuses_a_missing_model_with_exit_code_2(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "steps.serve", "--model", str(tmp_path / "none.tar.gz"),
                             "--port", "0"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "does not exist" in result.stderr
