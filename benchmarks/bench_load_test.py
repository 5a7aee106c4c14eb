"""Benchmark: the load-test Lambda's request rate and median latency vs wrk, on one trivial endpoint.

    .venv/bin/python benchmarks/bench_load_test.py [--seconds 5] [--rounds 5]

A trivial aiohttp server (uvloop, its own process) answers `POST /endpoints/bench/invocations`
with a fixed reply, like a SageMaker runtime whose model costs nothing; so what is measured
is the client. wrk (one thread, 32 connections, POSTing the same body with a Lua script)
and the load-test handler (concurrency 32, SigV4-signed requests as on AWS, in this
process; the same code path as in a Lambda) take turns against it, `--rounds` times; each round compares the two runs it holds (so both
see the same background load) and the round with the median rate ratio is reported.

Target (issue 5): handler's requests/s >= 50 % of wrk's, and its p50 within 20 % of wrk's.
On 2 cores the server and the client share the CPU, so every cycle the (Python) client
spends is one the server cannot: run it on an otherwise idle machine.
Last line: `RESULT load_test <handler rps / wrk rps>x target 0.5x PASS|FAIL`.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONCURRENCY = 32
RATE_TARGET = 0.5
P50_TOLERANCE = 0.2
ENDPOINT = "bench"
BODY = b"x" * 1024
REPLY = json.dumps([0.1] * 10).encode()

SERVER = textwrap.dedent(
    f"""
    import sys, uvloop
    from aiohttp import web

    async def invocations(request):
        await request.read()
        return web.Response(body={REPLY!r}, content_type="application/json")

    app = web.Application()
    app.router.add_post("/endpoints/{{name}}/invocations", invocations)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
    """
)


def ensure_wrk() -> str:
    """wrk's path, installing the Debian package if it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    prefix = [] if os.geteuid() == 0 else ["sudo"]
    install = prefix + ["apt-get", "install", "-y", "wrk"]
    if subprocess.run(install, capture_output=True).returncode != 0:
        subprocess.run(prefix + ["apt-get", "update"], check=True, capture_output=True)
        subprocess.run(install, check=True, capture_output=True)
    found = shutil.which("wrk")
    if not found:
        sys.exit("wrk is not installed and apt-get could not install it")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    sys.exit(f"the trivial server did not start on port {port}")


def to_ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(wrk: str, url: str, seconds: float, directory: Path) -> tuple[float, float]:
    """(requests/s, p50 ms) of one wrk run."""
    script = directory / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.body = string.rep("x", {len(BODY)})\n'
        'wrk.headers["Content-Type"] = "application/x-image"\n'
    )
    command = [wrk, "-t1", f"-c{CONCURRENCY}", f"-d{int(seconds)}s", "--latency", "-s", str(script), url]
    output = subprocess.run(command, check=True, capture_output=True, text=True, timeout=seconds + 30).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    value, unit = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE).groups()
    return rate, to_ms(value, unit)


def run_handler(seconds: float) -> tuple[float, float, dict]:
    """(requests/s, p50 ms, result) of one load-test handler run, in this process."""
    from lambdas.load_test.app import handler

    result = handler(
        {
            "endpoint_name": ENDPOINT,
            "payload_uri": "s3://bench/body.bin",
            "concurrency": CONCURRENCY,
            "duration_seconds": seconds,
            "request_timeout_seconds": 10,
            "slo": {"p99_ms": 1000, "max_error_rate": 0.0},
        }
    )
    if result["errors"]:
        sys.exit(f"the load-test handler saw errors: {result['errors_by_kind']}")
    return result["throughput_rps"], result["p50_ms"], result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    parser.add_argument("--rounds", type=int, default=5, help="paired runs (wrk, then the handler); the median is kept")
    options = parser.parse_args()

    wrk = ensure_wrk()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-load-test-") as temporary:
        directory = Path(temporary)
        (directory / "s3" / "bench").mkdir(parents=True)
        (directory / "s3" / "bench" / "body.bin").write_bytes(BODY)
        os.environ["DDCICD_S3_ROOT"] = str(directory / "s3")
        os.environ["DDCICD_SAGEMAKER_RUNTIME_URL"] = f"http://127.0.0.1:{port}"
        url = f"http://127.0.0.1:{port}/endpoints/{ENDPOINT}/invocations"
        server = start_server(port)
        try:
            run_wrk(wrk, url, 1, directory)  # warm-up, both sides
            run_handler(1.0)
            wrk_runs, handler_runs = [], []
            for round_number in range(options.rounds):
                wrk_runs.append(run_wrk(wrk, url, options.seconds, directory))
                rate, p50, _ = run_handler(options.seconds)
                handler_runs.append((rate, p50))
                print(
                    f"round {round_number + 1}: wrk {wrk_runs[-1][0]:,.0f} req/s p50 {wrk_runs[-1][1]:.2f} ms | "
                    f"load_test handler {rate:,.0f} req/s p50 {p50:.2f} ms",
                    flush=True,
                )
        finally:
            server.terminate()
            server.wait(timeout=10)

    rounds = sorted(zip(wrk_runs, handler_runs), key=lambda pair: pair[1][0] / pair[0][0])
    (wrk_rate, wrk_p50), (handler_rate, handler_p50) = rounds[len(rounds) // 2]
    ratio = handler_rate / wrk_rate
    p50_gap = abs(handler_p50 - wrk_p50) / wrk_p50
    passed = ratio >= RATE_TARGET and p50_gap <= P50_TOLERANCE
    print(f"concurrency {CONCURRENCY}, {options.seconds:.0f} s per run, median of {options.rounds} paired rounds, {os.cpu_count()} CPUs")
    print(f"wrk (1 thread):    {wrk_rate:10,.0f} req/s   p50 {wrk_p50:.2f} ms")
    print(f"load_test handler: {handler_rate:10,.0f} req/s   p50 {handler_p50:.2f} ms  (SigV4-signed, one process)")
    print(f"rate {ratio:.2f}x of wrk (target >= {RATE_TARGET}x); p50 off by {p50_gap:.0%} (target <= {P50_TOLERANCE:.0%})")
    print(f"RESULT load_test {ratio:.2f}x target {RATE_TARGET}x {'PASS' if passed else 'FAIL'}")


if __name__ == "__main__":
    main()
