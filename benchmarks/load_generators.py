"""Load generators for the serving benchmarks: wrk, or a minimal asyncio client in-process.

    load = drive("wrk", port, directory, images, concurrency=32, seconds=5.0)

wrk (Debian's package; `make wrk` installs it) drives the load when it is on PATH, as issue
18 measured: a C client on one thread takes far less of the two shared cores than a Python
one in this process, and what it does take is measured on its own process and printed.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Load:
    concurrency: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_ms: float = 0.0  # server process CPU time per request: robust to other load
    batch_size: int = 0  # the server's max_batch_size after its cache cap
    client_cpu_ms: float | None = None  # the load generator's CPU per request (wrk only: measured on its process)
    requests: int = 0  # answered in the measured time
    loop_cpu_ms: float | None = None  # of server_cpu_ms, the event loop's (main thread) share; not for the peer


def http_request(port: int, body: bytes) -> bytes:
    return (f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/x-image\r\n"
            f"Accept: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def _client(port: int, requests: list[bytes], stop_at: float, latencies: list[float], errors: list[int],
                  offset: int) -> None:
    """One keep-alive connection sending requests back to back (a minimal client, so the
    load generator costs the shared cores as little as possible)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    index = offset
    try:
        while True:
            started = time.perf_counter()
            if started >= stop_at:
                break
            writer.write(requests[index % len(requests)])
            index += 1
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            finished = time.perf_counter()
            if finished <= stop_at:
                latencies.append(finished - started)
                if not head.startswith(b"HTTP/1.1 200"):
                    errors.append(1)
    finally:
        writer.close()


async def _load(port: int, images: list[bytes], concurrency: int, seconds: float) -> Load:
    requests = [http_request(port, image) for image in images]
    stop_at, latencies, errors = time.perf_counter() + seconds, [], []  # type: ignore[var-annotated]
    await asyncio.gather(*(_client(port, requests, stop_at, latencies, errors, offset) for offset in range(concurrency)))
    latencies.sort()
    return Load(concurrency, len(latencies) / seconds, latencies[len(latencies) // 2] * 1000,
                latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000, len(errors),
                requests=len(latencies))


WRK_SCRIPT = Path(__file__).with_name("wrk_post.lua")


def wrk_load(port: int, directory: Path, images: list[bytes], concurrency: int, seconds: float) -> Load:
    """One wrk run (one thread, `concurrency` keep-alive connections) cycling POSTs over
    `images` (GET /ping when there are none); its own CPU time comes from the kernel's
    accounting of the reaped process."""
    files = [directory / f"image-{index}.jpg" for index in range(len(images))]
    for path, image in zip(files, images):
        if not path.exists():
            path.write_bytes(image)
    process = subprocess.Popen(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
                                "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}/", "--", *map(str, files)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    output = process.stdout.read().decode()
    process.stdout.close()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    summary = next((line[4:] for line in output.splitlines() if line.startswith("WRK ")), None)
    if process.returncode or summary is None:
        raise RuntimeError(f"wrk failed (exit {process.returncode}): {output[-500:]}")
    result = json.loads(summary)
    done = max(1, result["requests"])
    return Load(concurrency, result["requests"] / (result["duration_us"] / 1e6), result["p50_us"] / 1000,
                result["p99_us"] / 1000, result["errors"],
                client_cpu_ms=(usage.ru_utime + usage.ru_stime) * 1000 / done, requests=result["requests"])


def drive(client: str, port: int, directory: Path, images: list[bytes], concurrency: int, seconds: float) -> Load:
    """One load level from `client` ("wrk" or "python")."""
    import uvloop

    if client == "wrk":
        return wrk_load(port, directory, images, concurrency, seconds)
    return uvloop.run(_load(port, images, concurrency, seconds))
