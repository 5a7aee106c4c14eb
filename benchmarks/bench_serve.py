"""Serving throughput and latency against its ceilings and a hand-written peer, in the same run.

    .venv/bin/python benchmarks/bench_serve.py [--model model.tar.gz] [--seconds 5]

What is measured (default model: an untrained ResNet-20 at 3,48,64, the local default
architecture, exported by steps.export with its int8 graph calibrated on the benchmark's
own frames; weights do not change the cost; requests are 640x480 synthetic driver frames
from data.synth, as JPEG, the same set for every server):

1. in-process ceilings, per precision: decode + resize + forward of one image on one
   thread (the served model's path), times the cores; and the single-image forward time
   (median of batch-1 runs), for the latency target. Also ONNX Runtime's compute limit on
   decoded tensors over batch sizes, for reference. The ceilings are measured again before
   every round of server runs and the best (fastest) is kept, as for the servers: this
   machine's speed drifts by up to 10% over minutes (shared cores), and a ceiling measured
   once, at the start, made the ratio depend on when it happened to be taken.
2. `python -m steps.serve` as shipped (the precision model.json names, int8 where faster;
   micro-batching on; one process per core), at concurrency 1, 8 and 32: requests/s,
   p50/p99 latency, server CPU per request (all its processes). The load comes from wrk
   (Debian's package, `make wrk`; one thread, keep-alive connections, a Lua script cycling
   POSTs over the image set), as issue 18 measured: it runs on the same cores as the server, so its CPU per request is measured
   on its process and printed. Without wrk, a minimal asyncio client in this process
   stands in (--client python), whose CPU comes out of the server's share unmeasured.
   Also the server's CPU for HTTP alone (GET /ping at concurrency 32): with the in-process
   path and the client's CPU, it bounds what any server on these cores can reach.
3. the same server with batching off (--max-batch-size 1), and with --precision fp32.
   All servers run at once and take turns at each concurrency, the best of --rounds kept,
   so a comparison meets the same background load on shared cores.
4. the peer (issue 18): what a user writes in an afternoon, FastAPI + uvicorn, 2 workers,
   one ONNX Runtime thread each, OpenCV decode at 1/4 scale, fp32 (PEER_SOURCE below).

Targets (issue 18), checked on the served precision: at concurrency 32, >= 1.3x the peer
and >= 0.85x the in-process ceiling of the served model; batching on never slower than
batching off at any concurrency (within 5%, the run-to-run noise on two shared cores);
at concurrency 1, p50 <= single-image time + 3 ms. RESULT is the peer ratio.
Run it with nothing else on the machine: two shared cores make every figure noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from load_generators import Load, drive  # noqa: E402  (beside this file)
from steps.predictor import Predictor, default_threads  # noqa: E402

CONCURRENCY = (1, 8, 32)
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)

# The peer, as issue 18 describes it: ~30 lines a user writes by hand.
PEER_SOURCE = '''
import json, os, tarfile
import cv2, numpy as np, onnxruntime as ort
from fastapi import FastAPI, Request, Response

with tarfile.open(os.environ["PEER_MODEL"]) as archive:
    graph = archive.extractfile("model.onnx").read()
    shape = json.loads(archive.extractfile("model.json").read())["image_shape"]
_, height, width = (int(value) for value in shape.split(","))
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
app = FastAPI()


@app.get("/ping")
def ping():
    return {"status": "healthy"}


@app.post("/invocations")
async def invocations(request: Request):
    image = cv2.imdecode(np.frombuffer(await request.body(), np.uint8), cv2.IMREAD_REDUCED_COLOR_4)
    image = cv2.cvtColor(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    tensor = np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
    probabilities = session.run(None, {"input": tensor})[0][0]
    return Response(json.dumps(probabilities.tolist()), media_type="application/json")
'''


def cpu_seconds(stat: str) -> float:
    """User + system CPU seconds from a /proc/.../stat file."""
    fields = Path(stat).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in children.read_text().split()] if children.exists() else []


def loop_cpu_seconds(pid: int) -> float:
    """CPU seconds of the event loops: the main thread of each of `pid`'s child processes
    (a multi-process server), or of `pid` itself when it has none."""
    total = 0.0
    for process in child_pids(pid) or [pid]:
        try:
            total += cpu_seconds(f"/proc/{process}/task/{process}/stat")
        except FileNotFoundError:
            pass
    return total


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds of `pid` and its child processes (uvicorn's workers are children)."""
    total = cpu_seconds(f"/proc/{pid}/stat")
    for child in child_pids(pid):
        try:
            total += process_cpu_seconds(child)
        except FileNotFoundError:
            pass
    return total


def default_model(directory: Path, images: list[bytes]) -> Path:
    """The pipeline's default architecture, untrained, with an int8 graph calibrated on `images`."""
    from steps.export import export_model_archive
    from workflow.config import DEFAULT_HYPERPARAMETERS as LOCAL_DEFAULTS  # the pipeline's default model
    from steps.imaging import decode, fit
    from steps.model import ResNet, ResNetConfig

    shape = tuple(int(value) for value in LOCAL_DEFAULTS["image_shape"].split(","))
    network = ResNet(ResNetConfig(num_layers=int(LOCAL_DEFAULTS["num_layers"]), num_classes=10))
    calibration = np.stack([fit(decode(image, "RGB", shape[1], shape[2]), shape[1], shape[2]).transpose(2, 0, 1)
                            for image in images]).astype(np.float32)
    return export_model_archive(network, directory, shape, calibration=calibration,  # type: ignore[arg-type]
                                calibration_source=f"{len(images)} benchmark frames")


def frames(count: int = 16) -> list[bytes]:
    from data.synth import plan, render_frame

    planned, _ = plan(count, 4, 0, seed=7)
    return [render_frame(frame, 7, 640, 480) for frame in planned[:count]]


# ---------------------------------------------------------------------------- in-process limit


def compute_limit(model: Path, tensors: np.ndarray, cores: int, seconds: float) -> tuple[str, float, dict[str, float]]:
    """The best images/s ONNX Runtime reaches in this process, over batch sizes and over the
    two ways to use the cores: one session with `cores` threads, or `cores` concurrent
    single-threaded runs (the layout the server uses). Returns (best setting, its rate, all)."""
    from concurrent.futures import ThreadPoolExecutor

    rates: dict[str, float] = {}
    layouts = [(cores, 1), (1, cores)] if cores > 1 else [(1, 1)]
    for threads, streams in layouts:
        predictor = Predictor(model, threads=threads)
        for size in BATCH_SIZES:
            batch = np.ascontiguousarray(np.resize(tensors, (size, *tensors.shape[1:])))
            predictor.predict(batch)

            def stream(stop_at: float, predictor: Predictor = predictor, batch: np.ndarray = batch) -> int:
                done = 0
                while time.perf_counter() < stop_at:
                    predictor.predict(batch)
                    done += len(batch)
                return done

            started = time.perf_counter()
            with ThreadPoolExecutor(streams) as pool:
                done = sum(pool.map(stream, [started + seconds] * streams))
            rates[f"{threads} thread(s) x {streams} stream(s), batch {size}"] = done / (time.perf_counter() - started)
    best = max(rates, key=rates.__getitem__)
    return best, rates[best], rates


def single_image_ms(model: Path, tensor: np.ndarray, cores: int, runs: int = 200) -> float:
    """Median forward time of one image (the served precision), with the faster of 1 or `cores`
    threads (a lone request on an idle server runs on every core)."""
    best = float("inf")
    for threads in sorted({1, cores}):
        predictor = Predictor(model, threads=threads)
        batch = tensor[None]
        predictor.predict(batch)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            predictor.predict(batch)
            times.append(time.perf_counter() - started)
        best = min(best, statistics.median(times) * 1000)
    return best


# ---------------------------------------------------------------------------- server and load


def start_server(model: Path, directory: Path, max_batch_size: int, workers: int,
                 *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    ready = directory / f"ready-{max_batch_size}-{'-'.join(extra)}.json"
    ready.unlink(missing_ok=True)  # a previous run's would name a dead port
    process = subprocess.Popen([sys.executable, "-m", "steps.serve", "--model", str(model), "--port", "0",
                                "--workers", str(workers), "--max-batch-size", str(max_batch_size),
                                "--ready-file", str(ready), *extra], cwd=REPO, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    return process, json.loads(ready.read_text())["port"]


def start_peer(model: Path, directory: Path, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    """The FastAPI + uvicorn peer on a free port, once /ping answers."""
    import socket
    import urllib.request

    (directory / "peer_app.py").write_text(PEER_SOURCE)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {**os.environ, "PEER_MODEL": str(model), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "peer_app:app", "--host", "127.0.0.1", "--port",
                                str(port), "--workers", str(workers), "--log-level", "warning", "--no-access-log"],
                               cwd=directory, env=environment, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the peer did not start") from None
            time.sleep(0.1)
    time.sleep(1.0)  # let every worker finish loading before the load starts
    return process, port


@dataclass
class Server:
    """One server under test: started once, measured at every concurrency."""

    label: str
    process: subprocess.Popen[bytes]
    port: int
    batch_size: int
    peer: bool = False


def launch(label: str, model: Path, directory: Path, max_batch_size: int, workers: int, *extra: str,
           peer: bool = False) -> Server:
    import urllib.request

    process, port = (start_peer(model, directory, workers) if peer
                     else start_server(model, directory, max_batch_size, workers, *extra))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=10) as response:
        batch_size = json.loads(response.read()).get("max_batch_size", 1)
    return Server(label, process, port, batch_size, peer)


def measure(server: Server, directory: Path, images: list[bytes], concurrency: int, seconds: float,
            client: str) -> Load:
    """One load level after a 1 s warm-up, with the server's CPU per request (GET /ping when
    `images` is empty, wrk only: the server's CPU for HTTP alone)."""
    drive(client, server.port, directory, images, concurrency, 1.0)
    pid = server.process.pid
    before, loop_before = process_cpu_seconds(pid), loop_cpu_seconds(pid)
    load = drive(client, server.port, directory, images, concurrency, seconds)
    load.server_cpu_ms = (process_cpu_seconds(pid) - before) * 1000 / max(1, load.requests)
    load.loop_cpu_ms = None if server.peer else (loop_cpu_seconds(pid) - loop_before) * 1000 / max(1, load.requests)
    load.batch_size = server.batch_size
    return load


def measure_servers(servers: list[Server], directory: Path, images: list[bytes], seconds: float, client: str,
                    rounds: int, between: Callable[[], None] = lambda: None) -> dict[str, list[Load]]:
    """Every server at every concurrency. The servers take turns at each level, so that a
    comparison (batching on against off) meets the same background load, and the best of
    `rounds` turns is kept: on shared cores, other work only ever slows a run down.
    `between()` runs before each round (the ceilings are measured again there)."""
    runs: dict[str, list[Load]] = {server.label: [] for server in servers}
    for concurrency in CONCURRENCY:
        best: dict[str, Load] = {}
        for _ in range(rounds):
            between()
            for server in servers:
                load = measure(server, directory, images, concurrency, seconds, client)
                if server.label not in best or load.requests_per_second > best[server.label].requests_per_second:
                    best[server.label] = load
        for label, load in best.items():
            runs[label].append(load)
    return runs


# ---------------------------------------------------------------------------- report


def served_ceiling(model: Path, images: list[bytes], cores: int, precision: str) -> tuple[float, float, float]:
    """(decode+resize+forward ms per image on one thread, that path's images/s on `cores`,
    single-image forward ms) for one precision of the model, in this process."""
    predictor = Predictor(model, threads=1, precision=precision)
    for image in images:
        predictor.predict(predictor.preprocess(image)[None])
    path_times, forward_times = [], []
    for _ in range(6):
        for image in images:
            started = time.perf_counter()
            tensor = predictor.preprocess(image)[None]
            decoded = time.perf_counter()
            predictor.predict(tensor)
            finished = time.perf_counter()
            path_times.append(finished - started)
            forward_times.append(finished - decoded)
    path_ms = statistics.median(path_times) * 1000
    return path_ms, cores * 1000 / path_ms, statistics.median(forward_times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model.tar.gz (default: an untrained default-architecture model)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per load level")
    parser.add_argument("--cores", type=int, default=default_threads(),
                        help="cores to use: server workers, and threads/streams of the in-process limit")
    parser.add_argument("--rounds", type=int, default=2, help="turns per server and level; the best is kept")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto",
                        help="load generator: wrk (auto: when on PATH; `make wrk`) or the asyncio client in this process")
    args = parser.parse_args()
    import shutil

    client = args.client if args.client != "auto" else ("wrk" if shutil.which("wrk") else "python")

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as scratch:
        directory = Path(scratch)
        images = frames()
        model = args.model or default_model(directory, images)
        predictor = Predictor(model, threads=1)
        served, spec = predictor.precision, predictor.spec
        print(f"model: {spec.metadata.get('num_layers', '?')} layers, image_shape {spec.channels},{spec.height},"
              f"{spec.width}, serves {served} ({json.dumps(spec.metadata.get('serving', {}).get('single_image_ms'))} "
              f"at export); requests: 640x480 JPEG, mean {sum(map(len, images)) // len(images) // 1024} KB; "
              f"{args.cores} cores used of {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
        precisions = list(dict.fromkeys([served, "fp32"]))
        ceiling_runs: dict[str, list[tuple[float, float, float]]] = {precision: [] for precision in precisions}

        def measure_ceilings() -> None:
            for precision in precisions:
                ceiling_runs[precision].append(served_ceiling(model, images, args.cores, precision))

        measure_ceilings()
        tensors = np.stack([predictor.preprocess(image) for image in images])
        best_setting, limit, _ = compute_limit(model, tensors, args.cores, seconds=max(0.5, args.seconds / 6))
        single_ms = single_image_ms(model, tensors[0], args.cores)
        print(f"compute limit ({served}, decoded tensors): {limit:.0f} images/s ({best_setting}); "
              f"single image {single_ms:.2f} ms (faster of 1 and {args.cores} threads)")

        servers: list[Server] = []
        try:
            servers.append(launch(f"serve {served}", model, directory, 32, args.cores))
            servers.append(launch(f"serve {served}, batching off", model, directory, 1, args.cores))
            if served != "fp32":
                servers.append(launch("serve fp32", model, directory, 32, args.cores, "--precision", "fp32"))
            servers.append(launch("peer (FastAPI, fp32)", model, directory, 1, args.cores, peer=True))
            runs = measure_servers(servers, directory, images, args.seconds, client, args.rounds, measure_ceilings)
            floor = ([measure(servers[0], directory, [], CONCURRENCY[-1], min(args.seconds, 3.0), client)]
                     if client == "wrk" else [])
        finally:
            for server in servers:
                server.process.terminate()
                server.process.wait(timeout=15)

    ceilings = {precision: min(measured) for precision, measured in ceiling_runs.items()}  # the fastest path
    for precision, (path_ms, ceiling, forward_ms) in ceilings.items():
        slowest = max(measured[0] for measured in ceiling_runs[precision])
        print(f"in-process {precision}: decode+resize+forward {path_ms:.2f} ms/image on 1 thread (best of "
              f"{len(ceiling_runs[precision])}, slowest {slowest:.2f}) -> ceiling {ceiling:.0f} images/s on "
              f"{args.cores} cores; single-image forward {forward_ms:.2f} ms")
    print(f"{'server':<30}{'batch':>6}{'concurrency':>12}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}"
          f"{'CPU ms/req':>12}{'client CPU':>12}")
    for label, loads in runs.items():
        for load in loads:
            client_cpu = "-" if load.client_cpu_ms is None else f"{load.client_cpu_ms:.2f}"
            print(f"{label:<30}{load.batch_size:>6}{load.concurrency:>12}{load.requests_per_second:>10.1f}"
                  f"{load.p50_ms:>10.2f}{load.p99_ms:>10.2f}{load.errors:>8}{load.server_cpu_ms:>12.2f}{client_cpu:>12}")
    ours, off, peer = runs[f"serve {served}"], runs[f"serve {served}, batching off"], runs["peer (FastAPI, fp32)"]
    path_ms, ceiling, _ = ceilings[served]
    over_peer = ours[-1].requests_per_second / max(peer[-1].requests_per_second, 1e-9)
    of_ceiling = ours[-1].requests_per_second / ceiling
    top = ours[-1]
    if top.client_cpu_ms is None:
        print("load generator: the asyncio client in this process (--client python, or no wrk: `make wrk`), sharing "
              "the cores with the server; its CPU is not measured apart from this process's")
    else:
        print(f"load generator: wrk, 1 thread, on the same {args.cores} cores; at c32 it used {top.client_cpu_ms:.3f} ms "
              f"CPU per request ({top.client_cpu_ms * top.requests_per_second / 10:.1f}% of one core)")
        if floor:
            # The server and the client share the cores: at full use they answer at most
            # cores / (their CPU per request). HTTP alone (GET /ping) is what no server escapes.
            shared = args.cores * 1000 / (top.server_cpu_ms + top.client_cpu_ms)
            bound = args.cores * 1000 / (path_ms + floor[0].server_cpu_ms + top.client_cpu_ms)
            print(f"CPU per request at c32: server {top.server_cpu_ms:.2f} ms (event loop {top.loop_cpu_ms:.2f}, workers "
                  f"the rest) against {path_ms:.2f} in-process; HTTP alone (GET /ping) {floor[0].server_cpu_ms:.3f} ms; "
                  f"client {top.client_cpu_ms:.3f} ms. At full use of the {args.cores} cores this server and client allow "
                  f"{shared:.0f} req/s, {shared / ceiling:.2f} of the ceiling (in-process path + HTTP alone + client: "
                  f"{bound / ceiling:.2f}); the server got {top.requests_per_second * top.server_cpu_ms / 1000:.2f} of "
                  f"the {args.cores} cores (load average {os.getloadavg()[0]:.1f})")
    print(f"c32: {ours[-1].requests_per_second:.0f} req/s = {over_peer:.2f}x the peer ({peer[-1].requests_per_second:.0f}), "
          f"{of_ceiling:.2f} of the {served} in-process ceiling ({ceiling:.0f})")
    latency_budget = single_ms + 3.0
    checks = {
        f"c32 >= 1.3x the peer: {over_peer:.2f}x": over_peer >= 1.3,
        f"c32 >= 0.85x the in-process ceiling: {of_ceiling:.2f}": of_ceiling >= 0.85,
        "batching on >= batching off at every concurrency (5% noise allowed): " + ", ".join(
            f"c{on.concurrency} {on.requests_per_second / max(no.requests_per_second, 1e-9):.2f}x"
            for on, no in zip(ours, off)): all(on.requests_per_second >= 0.95 * no.requests_per_second
                                               for on, no in zip(ours, off)),
        f"c1 p50 {ours[0].p50_ms:.2f} ms <= {latency_budget:.2f} ms (single image + 3 ms)": ours[0].p50_ms <= latency_budget,
        "no failed requests": all(load.errors == 0 for loads in runs.values() for load in loads),
    }
    for text, passed in checks.items():
        print(f"{'ok  ' if passed else 'MISS'} {text}")
    verdict = "PASS" if all(checks.values()) else "FAIL"
    print(f"RESULT serve {over_peer:.2f}x target 1.30x {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
