"""The inference server: the SageMaker container contract in front of a Predictor.

    python -m steps.serve --model model.tar.gz --port 8080          # one endpoint instance
    curl -s --data-binary @img.jpg -H 'Content-Type: application/x-image' \\
         http://127.0.0.1:8080/invocations                           # -> [0.01, 0.93, ...]

Routes (as SageMaker calls a container):
- GET /ping          200 once the model is loaded (it is loaded before the port opens).
- POST /invocations  body application/x-image, image/jpeg or image/png -> a JSON list of
                     num_classes probabilities in class order; application/json
                     {"instances": ["<base64 image>", ...]} -> a list of such lists.

Every bad request gets a 4xx with a JSON body {"error": ..., "message": ...}: empty or
non-image bodies, corrupt or truncated images, images too large at full size or to decode
in the memory allowed (400, from the header, before any decode), unknown Content-Type
(415), an Accept the server cannot produce (406), a body over the payload cap (413, 6 MB
by default like SageMaker), more than 64 images in one JSON request (413), a Host that is
not this server's (403), a client too slow to send its body (408 after 30 s). A connection
without a complete request head for 15 s (idle, or headers half sent) is closed.
steps/serve_requests.py holds these checks and says why each limit is what it is.

The graph served is the one model.json's "serving" section names: int8 (steps/quantize.py)
where it was faster when exported, fp32 otherwise or with --precision fp32; /ping says which.

aiohttp on uvloop was the fastest stack measured on this machine kind. The event loop only
parses HTTP: each batch is decoded, resized and run on a worker thread (steps/batching.py),
one single-threaded worker per core by default, each in a process of its own
(steps/serve_processes.py: one process per core keeps the cores busy where one process's
event loop and workers would take turns with the GIL). Measured here, a 1-thread ONNX
Runtime run costs less CPU per image than a 2-thread one (no fork/join per operator) and
never leaves a thread waiting for a core another process took.
A lone request on an idle server is the exception: it runs on every core (--lone-threads),
because one worker would leave the others idle and double a quiet server's latency. The
batch size is capped where a batch's biggest layer would outgrow the workers' share of the
CPU cache: past it a big model runs slower per image, not faster (see
steps.predictor.cache_bound_batch_size).
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from aiohttp import web

from steps.atomic import write_atomically
from steps.batching import MicroBatcher
from steps.imaging import DEFAULT_MAX_DECODE_BYTES
from steps.model_archive import read_model_archive
from steps.predictor import (DEFAULT_MAX_PIXELS, InvalidImage, ModelArchiveError, Predictor, cache_bound_batch_size,
                             default_threads, largest_activation_bytes, last_level_cache_bytes)
from steps.server_board import BoardRow, Field, ServerBoard
from steps.serve_processes import Prefork, StartupError, bound_socket
from steps.serve_requests import (DEFAULT_MAX_INSTANCES, JSON_TYPE, RequestError, allowed_hosts, check_accept,
                                  check_host, error_response, is_loopback, json_response, media_type, parse_instances,
                                  read_body)

log = logging.getLogger("steps.serve")

IMAGE_TYPES = frozenset({"application/x-image", "image/jpeg", "image/png"})
DEFAULT_MAX_PAYLOAD = 6 * 1024 * 1024  # bytes; SageMaker's real-time invocation limit


@dataclass(frozen=True)
class ServerSettings:
    """Tuning knobs; the defaults suit a 2-core machine serving a small CNN."""

    max_batch_size: int = 32  # images per forward pass at most; 1 turns batching off
    cache_cap: bool = True  # lower max_batch_size to what fits the workers' share of the CPU cache
    max_wait_ms: float = 5.0  # longest a queued image waits for others on their way
    max_payload: int = DEFAULT_MAX_PAYLOAD  # bytes per request body
    max_pixels: int = DEFAULT_MAX_PIXELS  # per image, at full size
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES  # estimated decoder memory per image
    max_instances: int = DEFAULT_MAX_INSTANCES  # images per application/json request
    body_timeout: float = 30.0  # seconds a client may take to send its body (then 408)
    # Seconds a connection may go without a complete request head: idle keep-alive
    # connections and half-sent headers alike are closed then (aiohttp's keep-alive timer
    # runs from the connection's start and from each response, and fires while no
    # request head is complete). Well under the 3,630 s aiohttp would allow by default.
    header_timeout: float = 15.0
    # Answer any Host header, for a non-loopback address on purpose (a container); else
    # only 127.0.0.1, localhost and [::1] with the bound port (see steps/serve_requests.py).
    allow_any_host: bool = field(default_factory=lambda: os.environ.get("DDCICD_ALLOW_ANY_HOST", "") == "1")
    threads: int = 1  # ONNX Runtime intra-op threads per batch
    workers: int = 0  # batches decoded and run at once, one thread each; 0 = the usable cores / threads
    processes: int = 0  # server processes sharing the port, the workers split among them; 0 = one per worker
    lone_threads: int = 0  # threads for a batch alone on an idle server; 0 = the usable cores, 1 = off
    precision: str | None = None  # "fp32" or "int8"; None: what model.json's "serving" says (int8 where faster)

    def resolved(self) -> ServerSettings:
        """workers and processes made explicit (processes never more than workers)."""
        workers = self.workers or max(1, default_threads() // self.threads)
        processes = min(self.processes or workers, workers)
        return dataclasses.replace(self, workers=workers, processes=processes)

    @property
    def workers_per_process(self) -> int:
        return max(1, self.workers // max(1, self.processes))


# ---------------------------------------------------------------------------- the application


class InferenceApp:
    """Owns the predictor and the batcher for one server process."""

    def __init__(self, predictor: Predictor, settings: ServerSettings, board: BoardRow | None = None) -> None:
        self.predictor = predictor
        self.settings = settings
        self.allowed_hosts: frozenset[str] | None = None  # set by `serve` once the port is bound
        run_alone = predictor.run_batch_alone if predictor.lone_threads > predictor.threads else None
        self.board = board if board is not None else ServerBoard(1).row(0)
        self.board.reset_activity()
        self.batcher: MicroBatcher[bytes, np.ndarray] = MicroBatcher(
            predictor.run_batch, settings.max_batch_size, settings.max_wait_ms, settings.workers_per_process,
            run_alone, self.board)
        self.requests = 0  # this process's, for fail_every; /ping reports the whole server's
        # Fault injection for rollout tests (the model's container Environment sets it): every
        # Nth invocation answers 500, as a model that breaks on a share of its inputs would.
        self.fail_every = int(os.environ.get("DDCICD_SERVE_FAIL_EVERY", "0") or 0)

    async def ping(self, request: web.Request) -> web.Response:
        """Healthy, plus counters for operators: how many requests, errors and batches so far,
        over all the server's processes."""
        totals = self.board.board.totals()
        return json_response({"status": "healthy", "classes": len(self.predictor.classes),
                              "precision": self.predictor.precision,
                              "requests": totals["requests"], "errors": totals["errors"],
                              "batches": totals["batches"], "batched_images": totals["items"],
                              "alone_batches": totals["alone_batches"],
                              "processes": self.settings.processes, "pid": os.getpid(),  # the one answering
                              "workers": self.settings.workers_per_process * self.settings.processes,
                              "max_batch_size": self.batcher.max_batch_size})

    async def invocations(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.board.add(Field.REQUESTS)
        if self.fail_every and self.requests % self.fail_every == 0:
            raise RequestError(500, "InjectedFault", f"DDCICD_SERVE_FAIL_EVERY={self.fail_every}: request {self.requests} fails")
        check_accept(request.headers.get("Accept"))
        content_type = media_type(request.headers.get("Content-Type"))
        if content_type not in IMAGE_TYPES and content_type != JSON_TYPE:
            raise RequestError(415, "UnsupportedMediaType",
                               f"Content-Type {content_type or '(none)'!r} is not one of "
                               f"{', '.join(sorted(IMAGE_TYPES | {JSON_TYPE}))}")
        with self.batcher.expecting():
            body = await read_body(request, self.settings.max_payload, self.settings.body_timeout)
            images = parse_instances(body, self.settings.max_instances) if content_type == JSON_TYPE else [body]
            del body
            for index, data in enumerate(images):  # every header before any decode: a bad one fails the lot at once
                try:
                    self.predictor.check(data)
                except InvalidImage as error:
                    where = f"instances[{index}]: " if content_type == JSON_TYPE else ""
                    raise RequestError(400, "InvalidImage", f"{where}{error}") from None
        results = await self.batcher.infer_many(images)
        for index, result in enumerate(results):
            if isinstance(result, InvalidImage):
                where = f"instances[{index}]: " if content_type == JSON_TYPE else ""
                raise RequestError(400, "InvalidImage", f"{where}{result}")
            if isinstance(result, BaseException):
                raise result
        if content_type == JSON_TYPE:
            return json_response([row.tolist() for row in results])  # type: ignore[union-attr]
        return json_response(results[0].tolist())  # type: ignore[union-attr]

    @web.middleware
    async def json_errors(self, request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Every failure leaves as JSON: ours (RequestError), aiohttp's (404, 405) and crashes (500).
        The Host check comes first, for every route."""
        try:
            if self.allowed_hosts is not None:
                check_host(request.headers.get("Host"), self.allowed_hosts)
            return await handler(request)
        except RequestError as error:
            self.board.add(Field.ERRORS)
            return error_response(error.status, error.error, error.message)
        except web.HTTPException as error:
            self.board.add(Field.ERRORS)
            return error_response(error.status, error.reason.replace(" ", ""), f"{request.method} {request.path}: {error.reason}")
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as error:  # noqa: BLE001 - one bad request must not stop the server
            self.board.add(Field.ERRORS)
            log.exception("invocation failed")
            return error_response(500, "InternalError", f"{type(error).__name__}: {error}")

    def build(self) -> web.Application:
        # client_max_size is a backstop; read_body enforces the cap with a JSON 413 first.
        app = web.Application(middlewares=[self.json_errors], client_max_size=self.settings.max_payload + 1)
        app[INFERENCE] = self
        app.router.add_get("/ping", self.ping)
        app.router.add_post("/invocations", self.invocations)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self.batcher.start()

    async def _on_cleanup(self, app: web.Application) -> None:
        await self.batcher.stop()


INFERENCE = web.AppKey("inference", InferenceApp)


def create_app(model: str | os.PathLike[str], settings: ServerSettings | None = None,
               board: BoardRow | None = None) -> web.Application:
    """Load the model and return the aiohttp application for one process (`board`: its row of
    the server's shared counters; a board of its own by default)."""
    settings = (settings or ServerSettings()).resolved()
    predictor = Predictor(model, threads=settings.threads, max_pixels=settings.max_pixels,
                          lone_threads=settings.lone_threads or default_threads(),
                          max_decode_bytes=settings.max_decode_bytes, precision=settings.precision)
    if settings.cache_cap and settings.max_batch_size > 1:
        # Every core may be running a batch (ours, or a sibling instance's on a local endpoint),
        # and they all share the last-level cache.
        onnx_bytes, _ = read_model_archive(model)  # read again rather than kept: only the sessions need it after this
        size = cache_bound_batch_size(settings.max_batch_size, largest_activation_bytes(onnx_bytes),
                                      last_level_cache_bytes(), max(settings.workers, default_threads()))
        if size < settings.max_batch_size:
            log.info("batch size %d, not %d: a bigger batch of this model outgrows the CPU cache", size,
                     settings.max_batch_size)
        settings = dataclasses.replace(settings, max_batch_size=size)
    return InferenceApp(predictor, settings, board).build()


# ---------------------------------------------------------------------------- running it


def _write_ready_file(path: Path, host: str, port: int) -> None:
    """Tell a supervisor which port we bound (we may have been given port 0), atomically."""
    write_atomically(path, json.dumps({"pid": os.getpid(), "host": host, "port": port}).encode(), fsync=False)


async def _watch_lifeline(path: Path, stop: asyncio.Event) -> None:
    """Exit when the supervisor's file disappears, so a wiped state directory leaks no servers."""
    while path.exists():
        await asyncio.sleep(2.0)
    log.warning("lifeline %s is gone; shutting down", path)
    stop.set()


def run(model: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8080,
        settings: ServerSettings | None = None, ready_file: Path | None = None,
        lifeline: Path | None = None, on_ready: Callable[[int], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT or until `lifeline` disappears, then finish in-flight requests
    (graceful, for blue/green): in this process, or as settings.processes forked ones on one
    port (steps/serve_processes.py). Once every process serves, the ready file is written
    (with this process's pid: the one to signal) and on_ready(port) is called.

    Raises ModelArchiveError or StartupError when the model cannot be served, OSError when
    the address cannot be bound."""
    settings = (settings or ServerSettings()).resolved()
    board = ServerBoard(settings.processes)

    def ready(bound_port: int) -> None:
        log.info("serving %s on http://%s:%d (%d process%s)", model, host, bound_port, settings.processes,
                 "" if settings.processes == 1 else "es")
        if ready_file is not None:
            _write_ready_file(ready_file, host, bound_port)
        if on_ready is not None:
            on_ready(bound_port)

    if settings.processes == 1:
        _run_loop(serve_socket(bound_socket(host, port), model, host, settings, board.row(0), ready, lifeline))
        return

    def child(index: int, sock: socket.socket, child_ready: Callable[[], None]) -> None:
        _run_loop(serve_socket(sock, model, host, settings, board.row(index), lambda _: child_ready()))

    Prefork(host, port, settings.processes, lifeline).run(child, ready)


def _run_loop(running: Awaitable[None]) -> None:
    try:
        import uvloop
    except ImportError:  # uvloop is Linux/macOS only; asyncio's own loop still works
        asyncio.run(running)  # type: ignore[arg-type]
    else:
        uvloop.run(running)  # type: ignore[arg-type]


async def serve_socket(sock: socket.socket, model: str | os.PathLike[str], host: str, settings: ServerSettings,
                       board: BoardRow, on_ready: Callable[[int], None], lifeline: Path | None = None) -> None:
    """One process serving on the bound socket `sock` (it listens once the model is loaded)
    until SIGTERM/SIGINT (or `lifeline` goes)."""
    app = create_app(model, settings, board)
    # lingering_time: after a 408 or 413 the unread rest of a body is drained (so the client
    # reads the answer instead of a reset) for 2 s, not aiohttp's 10, then the connection closes.
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=10.0,
                           keepalive_timeout=settings.header_timeout, lingering_time=2.0)
    await runner.setup()
    bound_port = sock.getsockname()[1]
    if not settings.allow_any_host:
        app[INFERENCE].allowed_hosts = allowed_hosts(host, bound_port)
        if not is_loopback(host) and board.index == 0:
            log.warning("serving %s without --allow-any-host: only requests naming %s are answered", host,
                        ", ".join(sorted(app[INFERENCE].allowed_hosts)))
    site = web.SockSite(runner, sock, backlog=1024)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    watcher = asyncio.ensure_future(_watch_lifeline(lifeline, stop)) if lifeline else None
    on_ready(bound_port)
    try:
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        await runner.cleanup()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m steps.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"),
                        help="model.tar.gz or a directory with model.onnx + model.json (default: $SM_MODEL_DIR or /opt/ml/model)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 inside a container")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080")),
                        help="port to bind, 0 for any free one (default: $SAGEMAKER_BIND_TO_PORT or 8080)")
    parser.add_argument("--threads", type=int, default=ServerSettings.threads,
                        help="ONNX Runtime threads per batch (default 1: cores are used by --workers instead)")
    parser.add_argument("--workers", type=int, default=ServerSettings.workers,
                        help="batches decoded and run at once (default: usable cores / --threads)")
    parser.add_argument("--processes", type=int, default=ServerSettings.processes,
                        help="server processes sharing the port, the workers split among them (default: one "
                             "per worker; 1 serves in this process)")
    parser.add_argument("--lone-threads", type=int, default=ServerSettings.lone_threads,
                        help="ONNX Runtime threads for a batch alone on an idle server (default 0: the usable "
                             "cores; 1 turns it off)")
    parser.add_argument("--max-batch-size", type=int, default=ServerSettings.max_batch_size,
                        help="images per forward pass at most; 1 turns batching off")
    parser.add_argument("--no-cache-cap", dest="cache_cap", action="store_false",
                        help="use --max-batch-size as given instead of lowering it to what fits in the CPU cache")
    parser.add_argument("--max-wait-ms", type=float, default=ServerSettings.max_wait_ms)
    parser.add_argument("--max-payload", type=int, default=DEFAULT_MAX_PAYLOAD, help="bytes per request body")
    parser.add_argument("--body-timeout", type=float, default=ServerSettings.body_timeout,
                        help="seconds a client may take to send its body (then 408)")
    parser.add_argument("--header-timeout", type=float, default=ServerSettings.header_timeout,
                        help="seconds a connection may go without a complete request head (idle or half-sent "
                             "headers), then it is closed")
    parser.add_argument("--max-instances", type=int, default=ServerSettings.max_instances,
                        help="images per application/json request at most (413 beyond)")
    parser.add_argument("--max-pixels", type=int, default=ServerSettings.max_pixels,
                        help="pixels per image at full size at most (400 beyond)")
    parser.add_argument("--max-decode-bytes", type=int, default=ServerSettings.max_decode_bytes,
                        help="estimated decoder memory per image at most (400 beyond)")
    parser.add_argument("--allow-any-host", action="store_true",
                        default=os.environ.get("DDCICD_ALLOW_ANY_HOST", "") == "1",
                        help="answer requests whatever their Host header, for a non-loopback --host on purpose "
                             "(a container; also DDCICD_ALLOW_ANY_HOST=1); by default only 127.0.0.1, "
                             "localhost and [::1] with the bound port are answered (403 otherwise)")
    parser.add_argument("--precision", choices=("fp32", "int8"),
                        help="which graph to serve (default: model.json's choice, int8 where it was faster; "
                             "fp32 for archives without an int8 graph)")
    parser.add_argument("--ready-file", type=Path, help="write {pid, host, port} here once serving")
    parser.add_argument("--lifeline", type=Path, help="shut down when this path no longer exists")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = ServerSettings(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
                              max_payload=args.max_payload, body_timeout=args.body_timeout, threads=args.threads,
                              workers=args.workers, processes=args.processes, lone_threads=args.lone_threads,
                              cache_cap=args.cache_cap,
                              header_timeout=args.header_timeout, max_instances=args.max_instances,
                              max_pixels=args.max_pixels, max_decode_bytes=args.max_decode_bytes,
                              allow_any_host=args.allow_any_host, precision=args.precision)
    try:
        run(args.model, args.host, args.port, settings, args.ready_file, args.lifeline)
    except (ModelArchiveError, StartupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the port is taken or the address is not ours
        print(f"error: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
