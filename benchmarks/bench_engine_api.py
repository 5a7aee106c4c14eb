"""Executions per second through boto3: `ddcicd engine serve` vs moto in server mode, same definition, same run.

Each execution is StartExecution, then DescribeExecution polled (no pause) until it is
SUCCEEDED, of a 5-state Pass machine, one client, one execution at a time:
  ours  `ddcicd engine serve --port 0` (a real process; SQLite store in a temporary home)
  moto  ThreadedMotoServer (in its own process, so it does not share a GIL with the client),
        with `execute_state_machine` on (its port of LocalStack's interpreter runs Pass states)
  floor a server that does no work (canned replies, FLOOR_SERVER below): what the boto3
        client alone costs per execution on these cores, i.e. the most any server could reach
The three alternate in rounds, so a busy moment of a shared machine hits all of them.

Reported: executions per second, p50/p99 latency of one execution (start to SUCCEEDED seen)
and p50/p99 of one DescribeExecution call. Target: ours >= 10x moto's executions per second
and p50 DescribeExecution <= 2 ms. Also each server process's CPU time per execution
(user + system, from /proc; on a shared machine the steadier figure) and the client's.

    .venv/bin/python benchmarks/bench_engine_api.py [--rounds 4] [--executions 50]

The last line is `RESULT engine_api <ratio>x target 10x PASS|FAIL`.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
import requests
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 10.0
TARGET_DESCRIBE_P50_MS = 2.0
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/bench"
DEFINITION = {"StartAt": "P0", "States": {
    **{f"P{index}": {"Type": "Pass", "Result": {"step": index}, "ResultPath": f"$.p{index}", "Next": f"P{index + 1}"}
       for index in range(4)},
    "P4": {"Type": "Pass", "End": True}}}  # fmt: skip
# The floor: a server that does no work, so the client's own cost per execution shows. It
# answers CreateStateMachine, StartExecution and DescribeExecution (SUCCEEDED) with canned
# JSON over keep-alive HTTP/1.1, parsing only the Content-Length and X-Amz-Target headers.
FLOOR_SERVER = r"""
import asyncio, json, sys
ARN = "arn:aws:states:us-east-1:123456789012:"
REPLIES = {
    "CreateStateMachine": {"stateMachineArn": ARN + "stateMachine:bench", "creationDate": 1.0},
    "StartExecution": {"executionArn": ARN + "execution:bench:x", "startDate": 1.0},
    "DescribeExecution": {"executionArn": ARN + "execution:bench:x", "stateMachineArn": ARN + "stateMachine:bench",
                          "name": "x", "status": "SUCCEEDED", "startDate": 1.0, "stopDate": 1.0, "input": "{}", "output": "{}"},
}
ENCODED = {target: json.dumps(body).encode() for target, body in REPLIES.items()}
class Floor(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""
    def data_received(self, data):
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            headers = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:])
            headers = {key.strip().lower(): value.strip() for key, value in headers.items()}
            length = int(headers.get(b"content-length", b"0"))
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            body = ENCODED[headers[b"x-amz-target"].decode().rsplit(".", 1)[1]]
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: "
                                 + str(len(body)).encode() + b"\r\n\r\n" + body)
async def main():
    server = await asyncio.get_running_loop().create_server(Floor, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await server.serve_forever()
asyncio.run(main())
"""
MOTO_SERVER = """
import sys, time
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc; 0.0 where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_ours(home: Path) -> tuple[subprocess.Popen[str], str]:
    environment = {**os.environ, "DDCICD_HOME": str(home), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "workflow.cli", "engine", "serve", "--port", "0"], env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    url = process.stdout.readline().strip()  # type: ignore[union-attr]
    if not url.startswith("http://"):
        raise RuntimeError("ddcicd engine serve did not start")
    return process, url


def start_script(source: str, what: str) -> tuple[subprocess.Popen[str], str]:
    """Runs `source` with a free port as its argument; it prints "ready" once it listens."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", source, str(port)], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    if process.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
        raise RuntimeError(f"{what} did not start")
    return process, f"http://127.0.0.1:{port}"


def start_moto() -> tuple[subprocess.Popen[str], str]:
    process, url = start_script(MOTO_SERVER, "moto")
    for _ in range(100):
        try:
            requests.post(f"{url}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}}, timeout=5)
            break
        except requests.ConnectionError:
            time.sleep(0.05)
    return process, url


def client_for(url: str) -> Any:
    return boto3.client("stepfunctions", endpoint_url=url, region_name="us-east-1", aws_access_key_id=ACCOUNT,
                        aws_secret_access_key="bench", config=Config(retries={"max_attempts": 1}))  # fmt: skip


def run_round(client: Any, machine: str, executions: int, describes: list[float],
              starts: list[float] | None = None) -> tuple[float, list[float]]:
    """`executions` executions one after the other; returns (wall seconds, per-execution latencies).

    Appends the time of each DescribeExecution call to `describes` and of each StartExecution to `starts`.
    """
    latencies = []
    began = time.perf_counter()
    for _ in range(executions):
        started = time.perf_counter()
        name = f"run-{time.perf_counter_ns()}"  # moto needs a name (it would call every unnamed one "None")
        arn = client.start_execution(stateMachineArn=machine, name=name, input='{"x": 1}')["executionArn"]
        if starts is not None:
            starts.append(time.perf_counter() - started)
        while True:
            before = time.perf_counter()
            status = client.describe_execution(executionArn=arn)["status"]
            describes.append(time.perf_counter() - before)
            if status != "RUNNING":
                break
        if status != "SUCCEEDED":
            raise RuntimeError(f"an execution ended {status}")
        latencies.append(time.perf_counter() - started)
    return time.perf_counter() - began, latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per server")
    parser.add_argument("--executions", type=int, default=50, help="executions per round")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-engine-api-") as home:
        servers: dict[str, tuple[subprocess.Popen[str], str]] = {}
        try:
            for name, start in (("ours", lambda: start_ours(Path(home))), ("moto", start_moto), ("floor", lambda: start_script(FLOOR_SERVER, "the floor server"))):
                servers[name] = start()  # one by one: a server that fails to start still stops the others
            clients = {name: client_for(url) for name, (_, url) in servers.items()}
            machines = {name: client.create_state_machine(name="bench", definition=json.dumps(DEFINITION), roleArn=ROLE)["stateMachineArn"]
                        for name, client in clients.items()}  # fmt: skip
            for name, client in clients.items():  # warm up: connections, imports, caches
                run_round(client, machines[name], 3, [])
            wall = {name: 0.0 for name in servers}
            latencies: dict[str, list[float]] = {name: [] for name in servers}
            describes: dict[str, list[float]] = {name: [] for name in servers}
            starts: dict[str, list[float]] = {name: [] for name in servers}
            server_cpu = {name: 0.0 for name in servers}
            client_cpu = {name: 0.0 for name in servers}
            for _ in range(args.rounds):
                for name, client in clients.items():
                    pid, before, client_before = servers[name][0].pid, cpu_seconds(servers[name][0].pid), time.process_time()
                    seconds, round_latencies = run_round(client, machines[name], args.executions, describes[name], starts[name])
                    server_cpu[name] += cpu_seconds(pid) - before
                    client_cpu[name] += time.process_time() - client_before
                    wall[name] += seconds
                    latencies[name] += round_latencies
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(10)
    rates = {name: len(latencies[name]) / wall[name] for name in servers}
    for name in servers:
        print(f"{name:5s} {rates[name]:8.1f} executions/s   execution p50 {percentile(latencies[name], 0.5) * 1000:7.2f} ms"
              f" p99 {percentile(latencies[name], 0.99) * 1000:7.2f} ms   DescribeExecution p50"
              f" {percentile(describes[name], 0.5) * 1000:5.2f} ms p99 {percentile(describes[name], 0.99) * 1000:6.2f} ms"
              f" ({len(describes[name]) / len(latencies[name]):.1f} polls per execution)")
    for name in servers:  # the breakdown: where an execution's time goes, as the client sees it
        print(f"{name:5s} breakdown: StartExecution p50 {percentile(starts[name], 0.5) * 1000:5.2f} ms"
              f" p99 {percentile(starts[name], 0.99) * 1000:6.2f} ms; mean execution {sum(latencies[name]) / len(latencies[name]) * 1000:5.2f} ms"
              f" = StartExecution mean {sum(starts[name]) / len(starts[name]) * 1000:5.2f} ms"
              f" + {len(describes[name]) / len(latencies[name]):.2f} DescribeExecution of mean"
              f" {sum(describes[name]) / len(describes[name]) * 1000:5.2f} ms")
    for name in servers:
        print(f"{name:5s} CPU per execution: server {server_cpu[name] / len(latencies[name]) * 1000:6.3f} ms,"
              f" client {client_cpu[name] / len(latencies[name]) * 1000:6.3f} ms")
    ratio = rates["ours"] / rates["moto"]
    print(f"ceiling: a server that does no work (floor) reaches {rates['floor'] / rates['moto']:.1f}x moto here;"
          f" ours is {rates['ours'] / rates['floor']:.2f} of it")
    describe_p50 = percentile(describes["ours"], 0.5) * 1000
    passed = ratio >= TARGET_RATIO and describe_p50 <= TARGET_DESCRIBE_P50_MS
    print(f"RESULT engine_api {ratio:.1f}x target {TARGET_RATIO:g}x {'PASS' if passed else 'FAIL'}")


if __name__ == "__main__":
    main()
