"""One server as several processes on one port (steps/serve_processes.py), with real
`python -m steps.serve` processes: the port is shared, /ping speaks for all of them, a
process that dies is replaced, and none outlives the server, however it ends."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.steps.test_serve import Server, jpeg

REPO = Path(__file__).resolve().parents[2]
ServeProcess = Callable[..., tuple[subprocess.Popen[bytes], int]]


def wait_until(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def start(serve_process: ServeProcess, archive: Path, tmp: Path, *args: str) -> Server:
    return Server(*serve_process(archive, tmp, "--workers", "2", *args))


@contextmanager
def serving(serve_process: ServeProcess, archive: Path, tmp: Path, *args: str) -> Iterator[Server]:
    """A server with two workers, stopped (SIGTERM) at the end."""
    server = start(serve_process, archive, tmp, *args)
    try:
        yield server
    finally:
        server.process.terminate()
        server.process.wait(timeout=20)


def test_two_workers_are_two_processes_on_one_port_and_ping_speaks_for_both(
        archive: Path, tmp_path: Path, serve_process: ServeProcess) -> None:
    with serving(serve_process, archive, tmp_path) as server:
        children = server.processes()
        assert len(children) == 2 and server.process.pid not in children
        # Each new connection lands on one of them (SO_REUSEPORT): over 24 both answer.
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: server.request("GET", "/ping")[1], range(24)))
        assert {answer["pid"] for answer in answers} == set(children)
        assert all(answer["processes"] == 2 and answer["workers"] == 2 for answer in answers)
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda seed: server.invoke(jpeg(seed))[0], range(40)))
        assert statuses == [200] * 40
        totals = server.request("GET", "/ping")[1]
        assert totals["requests"] == 40 and totals["batched_images"] == 40 and totals["errors"] == 0
    assert not any(alive(pid) for pid in children)


def test_one_process_serves_alone_when_asked(archive: Path, tmp_path: Path, serve_process: ServeProcess) -> None:
    with serving(serve_process, archive, tmp_path, "--processes", "1") as server:
        assert server.processes() == [server.process.pid]
        ping = server.request("GET", "/ping")[1]
        assert (ping["processes"], ping["workers"], ping["pid"]) == (1, 2, server.process.pid)
        assert server.invoke(jpeg())[0] == 200


def test_a_process_that_dies_is_replaced_and_the_server_keeps_serving(
        archive: Path, tmp_path: Path, serve_process: ServeProcess) -> None:
    with serving(serve_process, archive, tmp_path) as server:
        assert server.invoke(jpeg())[0] == 200
        victim, survivor = server.processes()
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(server.processes()) == 2 and victim not in server.processes())
        replacement = next(pid for pid in server.processes() if pid != survivor)

        def both_answer() -> bool:  # the new one takes its share of connections once it serves
            with ThreadPoolExecutor(8) as pool:
                return set(pool.map(lambda _: server.request("GET", "/ping")[1]["pid"], range(24))) == {
                    survivor, replacement}

        wait_until(both_answer)
        assert server.request("GET", "/ping")[1]["requests"] >= 1  # the counters carried on
        assert server.process.poll() is None


def test_the_processes_die_with_the_server_even_when_it_is_killed(
        archive: Path, tmp_path: Path, serve_process: ServeProcess) -> None:
    server = start(serve_process, archive, tmp_path)
    children = server.processes()
    server.process.kill()  # no chance to stop them itself
    server.process.wait(timeout=10)
    wait_until(lambda: not any(alive(pid) for pid in children), seconds=15)


def test_sigterm_lets_requests_in_flight_finish(archive: Path, tmp_path: Path, serve_process: ServeProcess) -> None:
    """Requests received when SIGTERM arrives (decoding, queued or running) are still answered,
    by whichever process has them."""
    server = start(serve_process, archive, tmp_path)
    body = jpeg(3, 3000, 4000)  # about 30 ms to decode even at 1/8 scale: 16 of them take a while
    head = (f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    clients = [socket.create_connection(("127.0.0.1", server.port), timeout=20) for _ in range(16)]
    try:
        for client in clients:
            client.sendall(head + body)
        time.sleep(0.05)
        server.process.terminate()
        answers = [b"".join(iter(lambda client=client: client.recv(65536), b"")) for client in clients]
    finally:
        for client in clients:
            client.close()
    assert all(answer.startswith(b"HTTP/1.1 200") for answer in answers), [answer[:40] for answer in answers]
    assert server.process.wait(timeout=20) == 0


def test_removing_the_lifeline_stops_every_process(archive: Path, tmp_path: Path, serve_process: ServeProcess) -> None:
    lifeline = tmp_path / "lifeline"
    lifeline.mkdir()
    server = start(serve_process, archive, tmp_path, "--lifeline", str(lifeline))
    children = server.processes()
    lifeline.rmdir()
    assert server.process.wait(timeout=15) == 0
    assert not any(alive(pid) for pid in children)


def test_a_model_that_cannot_load_fails_the_start_with_its_error(tmp_path: Path) -> None:
    broken = tmp_path / "model.tar.gz"
    broken.write_bytes(b"not a tar archive")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "steps.serve", "--model", str(broken), "--port", "0",
                             "--workers", "2"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("error: "), result.stderr
    assert "tar" in result.stderr.splitlines()[-1].lower()
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(("holder", "newcomer"), [("1", "2"), ("2", "2"), ("2", "1")])
def test_a_taken_port_is_a_clear_error(archive: Path, tmp_path: Path, serve_process: ServeProcess,
                                       holder: str, newcomer: str) -> None:
    """Also between two multi-process servers, whose SO_REUSEPORT sockets could share a port."""
    with serving(serve_process, archive, tmp_path, "--processes", holder) as server:
        result = subprocess.run([sys.executable, "-m", "steps.serve", "--model", str(archive), "--port",
                                 str(server.port), "--processes", newcomer], cwd=REPO, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 2 and f"cannot listen on 127.0.0.1:{server.port}" in result.stderr


def test_ctrl_c_stops_the_whole_server_without_replacing_anyone(archive: Path, tmp_path: Path) -> None:
    """Ctrl-C reaches every process of the foreground group at once: the children stop on
    their own, and the parent must not take their exits for crashes to repair."""
    ready = tmp_path / "ready.json"
    process = subprocess.Popen([sys.executable, "-m", "steps.serve", "--model", str(archive), "--port", "0",
                                "--workers", "2", "--ready-file", str(ready)], cwd=REPO, start_new_session=True,
                               stderr=subprocess.PIPE, text=True)
    wait_until(ready.exists, seconds=60)
    server = Server(process, 0)  # type: ignore[arg-type]
    children = server.processes()
    os.killpg(process.pid, signal.SIGINT)
    _, errors = process.communicate(timeout=20)
    assert process.returncode == 0 and "starting another" not in errors, errors
    assert len(children) == 2 and not any(alive(pid) for pid in children)
