"""The local SageMaker Runtime's router: one process in front of every local endpoint.

    python -m workflow.local.router --home ~/.ddcicd --port 0     # started by runtime.ensure_runtime()

It answers the InvokeEndpoint call (`POST /endpoints/<name>/invocations`) as AWS does:
the container's body and Content-Type, the x-Amzn-Invoked-Production-Variant header;
an unknown or not-ready endpoint -> 400 ValidationError; a 4xx/5xx from the container ->
424 ModelError with OriginalStatusCode/OriginalMessage. It does not check signatures.

Requests go round-robin over the endpoint's instances (variants picked by weight), read
from the endpoint's state file whenever that file changes. A connection refused or
dropped (an instance stopping after a blue/green switch) is retried on a fresh read of
the state, so a switch fails no request. Every half second the router also calls
LocalEndpoints.refresh_all, which moves endpoints from Creating/Updating to InService.

Hostile input, as a local process other users' programs can reach:
- the endpoint name is validated as SageMaker does (`^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$`,
  400 ValidationError) on the raw request path, before any percent-decoding, so `%2F`,
  `..` or a NUL never reach the file system: only <home>/endpoints/endpoints/<name>.json is
  read, and the router only ever connects to a port recorded there, on 127.0.0.1;
- a body must arrive within --body-timeout seconds (408 RequestTimeout, connection closed),
  and a connection that sends no complete request head within --header-timeout seconds
  (idle, or headers half sent) is closed, so stalled clients cannot pin memory or sockets.
  Both default to $DDCICD_ROUTER_BODY_TIMEOUT / $DDCICD_ROUTER_HEADER_TIMEOUT, else 30 s
  and 20 s (serve answers 408 after 30 s too).

It announces itself in <home>/runtime.json (runtime.py owns that record), and exits within
LIFELINE_EVERY seconds when that file no longer names it (stop_runtime, the last endpoint
deleted, or the home directory removed: `rm -rf .ddcicd`) or after two minutes without any
endpoint.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import random
import re
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workflow.home import ddcicd_home
from workflow.local.endpoints import NAME_PATTERN, LocalEndpoints
from workflow.local.fleet_metrics import FleetMetrics, write_metrics
from workflow.local.runtime import read_record, runtime_file, write_record
from workflow.local.sagemaker_api import ACCOUNT

log = logging.getLogger("workflow.local.router")

MAX_PAYLOAD = 6 * 1024 * 1024  # InvokeEndpoint's request limit
RETRY_FOR = 10.0  # seconds to keep retrying an unreachable endpoint
REFRESH_EVERY = 0.5  # seconds between life-cycle refreshes
IDLE_EXIT = 120.0  # seconds without any endpoint before the router exits (restarted on demand)
LIFELINE_EVERY = 1.0  # seconds between checks that runtime.json still names this process
BODY_TIMEOUT = float(os.environ.get("DDCICD_ROUTER_BODY_TIMEOUT", "30"))
HEADER_TIMEOUT = float(os.environ.get("DDCICD_ROUTER_HEADER_TIMEOUT", "20"))
ENDPOINT_NAME = NAME_PATTERN  # InvokeEndpoint's EndpointName constraint, as CreateEndpoint's
_INVOCATIONS = re.compile(r"^/endpoints/([^/]*)/invocations$")


@dataclass
class _Fleet:
    """The instances of one endpoint config: during a rollout the old and the new one serve side by side."""

    config: str  # EndpointConfigName: the fleet's name in the metrics
    percent: float  # share of the endpoint's requests
    variants: list[tuple[str, float, itertools.cycle[int]]]  # name, weight, ports round-robin

    def pick(self) -> tuple[str, int] | None:
        if not self.variants:
            return None
        names = [variant for variant in self.variants if variant[1] > 0] or self.variants
        name, _, ports = names[0] if len(names) == 1 else random.choices(
            names, weights=[variant[1] or 1.0 for variant in names])[0]
        return name, next(ports)


@dataclass
class _Route:
    """What the router knows about one endpoint, rebuilt when its state file changes."""

    stamp: tuple[int, int]
    status: str
    fleets: list[_Fleet]

    credits: list[float] = field(default_factory=list)

    def pick(self) -> tuple[str, str, int] | None:
        """(fleet's config, variant, port): the rollout's new fleet gets its percent of requests.

        Smooth weighted round-robin (nginx's): each pick adds every fleet's percent to its
        credit and takes the fleet with the most, which pays 100. Shares are exact and
        interleaved (50/50 alternates), where a random draw would sometimes queue two
        requests on one fleet while the other idles, which costs latency under load.
        """
        fleets = [fleet for fleet in self.fleets if fleet.variants]
        if not fleets:
            return None
        fleet = fleets[0]
        if len(fleets) > 1:
            if len(self.credits) != len(fleets):
                self.credits = [0.0] * len(fleets)
            for index, candidate in enumerate(fleets):
                self.credits[index] += candidate.percent
            best = max(range(len(fleets)), key=self.credits.__getitem__)
            self.credits[best] -= sum(candidate.percent for candidate in fleets)
            fleet = fleets[best]
        chosen = fleet.pick()
        return None if chosen is None else (fleet.config, *chosen)


def _variants(instances: Any, weights: Any) -> list[tuple[str, float, itertools.cycle[int]]]:
    by_variant: dict[str, list[int]] = {}
    for item in instances or []:
        port = item.get("port") if isinstance(item, dict) else None
        if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
            by_variant.setdefault(str(item.get("variant")), []).append(port)
    weights = weights if isinstance(weights, dict) else {}
    return [(name, float(weights.get(name, 1.0)), itertools.cycle(random.sample(ports, len(ports))))
            for name, ports in sorted(by_variant.items())]


def _load_route(path: Path) -> _Route | None:
    try:
        stat = path.stat()
        state = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not isinstance(state, dict) or state.get("EndpointName") != path.stem:
        return None
    fleets = [_Fleet(str(state.get("EndpointConfigName")), 100.0,
                     _variants(state.get("instances"), state.get("weights")))]
    rollout = state.get("rollout")
    if isinstance(rollout, dict) and isinstance(rollout.get("percent"), (int, float)):
        percent = float(rollout["percent"])
        fleets[0].percent = 100.0 - percent
        fleets.append(_Fleet(str(rollout.get("EndpointConfigName")), percent,
                             _variants(rollout.get("instances"), rollout.get("weights"))))
    return _Route((stat.st_ino, stat.st_mtime_ns), state.get("EndpointStatus", ""), fleets)


class Router:
    """The aiohttp application: InvokeEndpoint in, the endpoint's container behind it."""

    def __init__(self, home: Path, body_timeout: float = BODY_TIMEOUT) -> None:
        self.home = home
        self.body_timeout = body_timeout
        self.endpoints = LocalEndpoints(home)
        self.routes: dict[str, _Route] = {}
        self.session: Any = None
        self.metrics = FleetMetrics()

    def route(self, name: str) -> _Route | None:
        path = self.endpoints.state_path(name)
        cached = self.routes.get(name)
        try:
            stat = path.stat()
        except FileNotFoundError:
            self.routes.pop(name, None)
            return None
        if cached is None or cached.stamp != (stat.st_ino, stat.st_mtime_ns):
            cached = _load_route(path)
            if cached is None:
                return None
            self.routes[name] = cached
        return cached

    async def dispatch(self, request: Any) -> Any:
        """Every request, routed on the raw path: nothing is percent-decoded before the
        endpoint name has passed SageMaker's pattern (which has no `%`, `/` or `.`)."""
        path = request.raw_path.split("?", 1)[0]
        if path == "/ping":
            return await self.ping(request) if request.method in ("GET", "HEAD") else _method_not_allowed(request)
        match = _INVOCATIONS.match(path)
        if match is None:
            return _aws_error(404, "UnknownOperationException", f"No operation at {_shown(path)}; "
                                                                "InvokeEndpoint is POST /endpoints/<name>/invocations.")
        if request.method != "POST":
            return _method_not_allowed(request)
        name = match.group(1)
        if not ENDPOINT_NAME.match(name):
            return _aws_error(400, "ValidationError", f"1 validation error detected: Value '{_shown(name)}' at "
                                                      "'endpointName' failed to satisfy constraint: Member must satisfy "
                                                      f"regular expression pattern: {ENDPOINT_NAME.pattern}")
        return await self.invoke(request, name)

    async def _read_body(self, request: Any) -> Any:
        """The body, or the error response: 413 past the cap, 408 when it arrives too slowly."""
        from aiohttp import web

        too_large = _aws_error(413, "ValidationError", f"Request payload of {request.content_length or 'more than'} "
                                                       f"bytes exceeds the limit of {MAX_PAYLOAD} bytes.")
        if request.content_length is not None and request.content_length > MAX_PAYLOAD:
            too_large.force_close()
            return too_large
        try:
            async with asyncio.timeout(self.body_timeout):
                return await request.read()
        except TimeoutError:
            slow = _aws_error(408, "RequestTimeout", f"The request body did not arrive within {self.body_timeout:g} s.")
        except web.HTTPRequestEntityTooLarge:  # chunked, past client_max_size
            slow = too_large
        slow.force_close()  # the rest of the body is never read: the connection cannot be reused
        return slow

    async def invoke(self, request: Any, name: str) -> Any:
        import aiohttp
        from aiohttp import web

        body = await self._read_body(request)
        if not isinstance(body, bytes):
            return body
        headers = {key: value for key, value in request.headers.items()
                   if key.lower() in ("content-type", "accept") or key.lower().startswith("x-amzn-sagemaker-")}
        deadline = time.monotonic() + RETRY_FOR
        not_found = _aws_error(400, "ValidationError", f"Endpoint {name} of account {ACCOUNT} not found.")
        while True:
            route = self.route(name)
            if route is None:
                return not_found
            if route.status not in ("InService", "Updating"):
                return _aws_error(400, "ValidationError",
                                  f"Endpoint {name} of account {ACCOUNT} is {route.status}, not InService.")
            chosen = route.pick()
            if chosen is None:  # no instance with a usable port recorded: nothing to retry
                return _aws_error(503, "ServiceUnavailable", f"Endpoint {name} has no instance answering.")
            fleet, variant, port = chosen
            started = time.monotonic()
            try:
                async with self.session.post(f"http://127.0.0.1:{port}/invocations", data=body,
                                             headers=headers) as answer:
                    payload = await answer.read()
                    content_type = answer.headers.get("Content-Type", "application/json")
                    status = answer.status
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError):
                # The instance is gone or going (blue/green switch, crash): look again.
                self.routes.pop(name, None)
            else:
                self.metrics.record(name, fleet, status, (time.monotonic() - started) * 1000.0)
                if status < 400:
                    return web.Response(body=payload, status=200, headers={
                        "Content-Type": content_type, "x-Amzn-Invoked-Production-Variant": variant})
                return _model_error(status, payload, variant, name)
            if time.monotonic() > deadline:
                return _aws_error(503, "ServiceUnavailable", f"Endpoint {name} has no instance answering.")
            await asyncio.sleep(0.05)

    async def ping(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({"status": "healthy"})

    def publish_and_refresh(self, documents: dict[str, Any]) -> None:
        """Publish the fleets' metrics, then move endpoints along (their rollouts read them)."""
        write_metrics(self.endpoints.metrics_directory, documents)
        self.endpoints.refresh_all()

    async def refresh_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(None, self.publish_and_refresh, self.metrics.take())
            except Exception:  # noqa: BLE001 - a bad state file must not stop the router
                log.exception("refreshing endpoints failed")
            await asyncio.sleep(REFRESH_EVERY)


def _aws_error(status: int, code: str, message: str, **extra: Any) -> Any:
    from aiohttp import web

    return web.json_response({"__type": code, "message": message, **extra}, status=status,
                             headers={"x-amzn-ErrorType": code})


def _shown(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _method_not_allowed(request: Any) -> Any:
    return _aws_error(405, "MethodNotAllowed", f"{_shown(request.method, 20)} is not allowed here.")


def _model_error(status: int, payload: bytes, variant: str, name: str) -> Any:
    """A container error, wrapped as SageMaker Runtime does (424 ModelError)."""
    original = payload.decode("utf-8", errors="replace")
    kind = "client" if status < 500 else "server"
    message = (f"Received {kind} error ({status}) from {variant} with message \"{original}\". "
               f"See the endpoint's server.log under the local endpoints directory for {name}.")
    return _aws_error(424, "ModelError", message, OriginalStatusCode=status, OriginalMessage=original,
                      LogStreamArn=f"local:/endpoints/{name}")


async def run_router(home: Path, host: str, port: int, body_timeout: float = BODY_TIMEOUT,
                     header_timeout: float = HEADER_TIMEOUT) -> None:
    import aiohttp
    from aiohttp import web

    router = Router(home, body_timeout)
    app = web.Application(client_max_size=MAX_PAYLOAD)
    app.router.add_route("*", "/{path:.*}", router.dispatch)
    # aiohttp closes a connection whose keep-alive timer runs out while it waits for a complete
    # request head; the timer starts when the connection opens and after every response, and
    # bytes of a half-sent head do not restart it: so this is also the header timeout. After a
    # 408 or 413 the unread rest of a body is drained for at most a second (aiohttp's default
    # is 10 s) so the client reads the answer rather than a reset, then the connection closes.
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=10.0,
                           keepalive_timeout=header_timeout, lingering_time=1.0)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    await web.SockSite(runner, sock, backlog=1024).start()
    bound = sock.getsockname()[1]
    router.session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=10),  # under serve's 15 s idle close
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=2))
    record = {"pid": os.getpid(), "port": bound, "url": f"http://{host}:{bound}"}
    write_record(home, record)
    log.info("local SageMaker Runtime on %s", record["url"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    refresher = asyncio.ensure_future(router.refresh_forever())

    async def still_wanted() -> None:
        """Stop when replaced or stopped (runtime.json no longer names us), or idle with no endpoints."""
        idle_since = time.monotonic()
        while (read_record(runtime_file(home)) or {}).get("pid") == os.getpid():
            if router.endpoints.has_endpoints():
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > IDLE_EXIT:
                log.info("no endpoints for %g s; exiting", IDLE_EXIT)
                runtime_file(home).unlink(missing_ok=True)
                break
            await asyncio.sleep(LIFELINE_EVERY)
        else:
            log.info("%s no longer names this router (stopped, or the home was removed); exiting", runtime_file(home))
        stop.set()

    watcher = asyncio.ensure_future(still_wanted())
    try:
        await stop.wait()
    finally:
        refresher.cancel()
        watcher.cancel()
        await router.session.close()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow.local.router")
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--body-timeout", type=float, default=BODY_TIMEOUT,
                        help="seconds a client may take to send a request body (408 after)")
    parser.add_argument("--header-timeout", type=float, default=HEADER_TIMEOUT,
                        help="seconds a connection may stay idle or take to send a request head")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    home = (args.home or ddcicd_home()).resolve()
    import uvloop

    uvloop.run(run_router(home, args.host, args.port, args.body_timeout, args.header_timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
