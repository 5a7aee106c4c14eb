"""The load generator: InvokeEndpoint requests signed like boto3's, sent over lean keep-alive connections.

Why not a boto3 loop: botocore spends most of a call building, signing and parsing, so a
Lambda tops out well below what one endpoint instance serves. Why not aiohttp's
ClientSession (nor httpx, ~170 req/s): see connection.py, its per-request overhead halves
the rate. Here every worker owns one connection (connection.Connection); each reply's
callback records it and sends the next request, with headers signed with botocore's own SigV4 signer (the credentials,
region and signing name boto3 would use; reused per payload for a minute, see
RequestSigner). A failed reply is parsed with botocore's own response parser, so the
error kinds are exactly the codes boto3 would raise (`ModelError`, `ValidationError`,
`ThrottlingException`, ...); transport failures are `Timeout` or `ConnectionError`.
Requests are not retried: a retry would hide the failures the SLO is about.

Bounds: workers claim a ticket before each request, and no ticket is handed out after the
deadline or past `max_requests`; a watchdog fails any request older than its timeout. So a
run ends at most `request_timeout` (+50 ms) after its deadline, whatever the endpoint does.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import ssl
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.parsers import create_parser

from lambdas.load_test.connection import Connection, Origin, Reply
from lambdas.load_test.histogram import Histogram
from lambdas.runtime import InvocationTarget

Result = TypeVar("Result")


@dataclass(frozen=True)
class LoadPlan:
    """What one shard does; built from a validated LoadTestEvent."""

    concurrency: int
    time_limit_seconds: float
    max_requests: int | None
    ramp_up_seconds: float
    request_timeout_seconds: float
    content_type: str


@dataclass
class Outcome:
    """What one shard saw: latencies of successful requests, and failures by kind."""

    histogram: Histogram = field(default_factory=Histogram)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed_seconds: float = 0.0

    @property
    def successes(self) -> int:
        return self.histogram.count

    @property
    def requests(self) -> int:
        return self.histogram.count + sum(self.errors.values())


class RequestSigner:
    """Headers for InvokeEndpoint requests, signed as botocore signs them.

    A SigV4 signature covers the method, URL, signed headers, the payload's SHA-256 and the
    X-Amz-Date; for a given payload only the date changes from one request to the next. So
    each payload's signed headers are reused for REUSE_SECONDS (AWS accepts a request whose
    date is within 5 minutes of its clock) instead of hashing and signing on every request,
    which cost about a third of the client's throughput when measured.
    """

    REUSE_SECONDS = 60.0

    def __init__(self, target: InvocationTarget, content_type: str) -> None:
        self.target = target
        self.content_type = content_type
        self.auth = SigV4Auth(target.credentials, target.operation_model.service_model.signing_name, target.region)
        self._signed: dict[int, tuple[float, dict[str, str]]] = {}

    def sign(self, body: bytes) -> dict[str, str]:
        """Freshly signed headers for one request carrying `body`."""
        request = AWSRequest(
            method="POST",
            url=self.target.url,
            data=body,
            headers={"Content-Type": self.content_type},  # as invoke_endpoint(ContentType=...) sends: no Accept
        )
        self.auth.add_auth(request)
        return dict(request.headers.items())

    def headers(self, payload_index: int, body: bytes) -> dict[str, str]:
        """Signed headers for payload number `payload_index`, re-signed once they are REUSE_SECONDS old."""
        now = time.monotonic()
        cached = self._signed.get(payload_index)
        if cached is None or now - cached[0] >= self.REUSE_SECONDS:
            cached = (now, self.sign(body))
            self._signed[payload_index] = cached
        return cached[1]


class ErrorClassifier:
    """The error code boto3 would report for a failed HTTP reply (its rest-json parser, reused)."""

    def __init__(self, target: InvocationTarget) -> None:
        self.parser = create_parser(target.operation_model.service_model.protocol)
        self.output_shape = target.operation_model.output_shape

    def kind(self, status: int, headers: Any, body: bytes) -> str:
        parsed = self.parser.parse({"status_code": status, "headers": headers, "body": body}, self.output_shape)
        return str(parsed.get("Error", {}).get("Code") or status)


class _Worker:
    """One connection's request loop: each reply's callback records it and sends the next request."""

    def __init__(self, generator: LoadGenerator) -> None:
        self.generator = generator
        self.connection: Connection | None = None
        self.started = 0  # perf_counter_ns of the request in flight
        self.done: asyncio.Future[None] | None = None
        self._connecting: asyncio.Task[None] | None = None

    async def run(self, start_delay: float) -> None:
        """Send requests until the generator hands out no more tickets."""
        if start_delay > 0:
            await asyncio.sleep(start_delay)
        self.done = asyncio.get_running_loop().create_future()
        self._next()
        try:
            await self.done
        finally:
            if self.connection is not None:
                self.connection.close()

    def _next(self) -> None:
        generator = self.generator
        ticket = generator.claim()
        if ticket is None:
            assert self.done is not None
            if not self.done.done():
                self.done.set_result(None)
            return
        request = generator.request(ticket % len(generator.payloads))
        if self.connection is None or self.connection.closed:
            self._connecting = asyncio.ensure_future(self._connect_and_send(request))
            return
        self.started = time.perf_counter_ns()
        self.connection.send(request)

    async def _connect_and_send(self, request: bytes) -> None:
        """(Re)connect, then send; a failed connect counts as the request's failure."""
        generator = self.generator
        started = time.perf_counter_ns()  # a fresh connection's set-up is part of its first request's latency
        try:
            self.connection = await Connection.open(
                generator.origin, generator.ssl_context, generator.connect_timeout, self.on_reply
            )
        except TimeoutError:
            self._count("Timeout")
            return
        except OSError:  # refused, unreachable, TLS failures
            self._count("ConnectionError")
            return
        except Exception as failure:  # noqa: BLE001 - anything else must end the run, not strand the worker
            if self.done is not None and not self.done.done():
                self.done.set_exception(failure)
            return
        self.started = started
        self.connection.send(request)

    def _count(self, kind: str) -> None:
        self.generator.outcome.errors[kind] += 1
        self._next()

    def on_reply(self, reply: Reply | None, error: Exception | None) -> None:
        """Connection callback: record the outcome, then send the next request."""
        outcome = self.generator.outcome
        try:
            if reply is None:
                outcome.errors["Timeout" if isinstance(error, TimeoutError) else "ConnectionError"] += 1
            elif reply.status == 200:
                outcome.histogram.record((time.perf_counter_ns() - self.started) // 1000)
            else:
                outcome.errors[self.generator.classifier.kind(reply.status, reply.headers, reply.body)] += 1
            self._next()
        except Exception as failure:  # noqa: BLE001 - a callback must not strand its worker: fail the run loudly
            if self.done is not None and not self.done.done():
                self.done.set_exception(failure)


class LoadGenerator:
    """Runs one shard's plan against one endpoint and returns its Outcome."""

    def __init__(self, target: InvocationTarget, plan: LoadPlan, payloads: Sequence[bytes]) -> None:
        if not payloads:
            raise ValueError("a load test needs at least one payload")
        self.target = target
        self.plan = plan
        self.payloads = list(payloads)
        self.signer = RequestSigner(target, plan.content_type)
        self.classifier = ErrorClassifier(target)
        self.origin = Origin.from_url(target.url)
        self.ssl_context = ssl.create_default_context() if self.origin.tls else None
        self.connect_timeout = min(5.0, plan.request_timeout_seconds)
        self._requests: dict[int, tuple[dict[str, str], bytes]] = {}
        self.outcome = Outcome()
        self.issued = 0
        self.deadline = 0.0

    def claim(self) -> int | None:
        """The next request's number, or None once the deadline or the request cap is reached."""
        if time.monotonic() >= self.deadline:
            return None
        if self.plan.max_requests is not None and self.issued >= self.plan.max_requests:
            return None
        self.issued += 1
        return self.issued - 1

    def request(self, payload_index: int) -> bytes:
        """The full request bytes for a payload, rebuilt whenever its signature is renewed."""
        body = self.payloads[payload_index]
        headers = self.signer.headers(payload_index, body)
        cached = self._requests.get(payload_index)
        if cached is None or cached[0] is not headers:
            cached = (headers, self.origin.request(headers, body))
            self._requests[payload_index] = cached
        return cached[1]

    async def _watchdog(self, workers: Sequence[_Worker]) -> None:
        """Fail requests that outlive the timeout (checked every 50 ms at most: one timer for all)."""
        timeout_ns = int(self.plan.request_timeout_seconds * 1e9)
        period = min(0.05, self.plan.request_timeout_seconds / 4)
        while True:
            await asyncio.sleep(period)
            now = time.perf_counter_ns()
            for worker in workers:
                connection = worker.connection
                if connection is not None and connection.busy and now - worker.started > timeout_ns:
                    connection.fail(TimeoutError(f"no complete reply within {self.plan.request_timeout_seconds} s"))

    async def run(self) -> Outcome:
        """Start `concurrency` workers spread over the ramp-up, and wait for all of them to stop."""
        plan = self.plan
        started = time.monotonic()
        self.deadline = started + plan.time_limit_seconds
        step = plan.ramp_up_seconds / plan.concurrency
        workers = [_Worker(self) for _ in range(plan.concurrency)]
        watchdog = asyncio.ensure_future(self._watchdog(workers))
        try:
            await asyncio.gather(*(worker.run(index * step) for index, worker in enumerate(workers)))
        finally:
            watchdog.cancel()
        self.outcome.elapsed_seconds = time.monotonic() - started
        return self.outcome


def run_async(coroutine_factory: Callable[[], Coroutine[Any, Any, Result]]) -> Result:
    """Run a coroutine to completion on uvloop when available, even if the caller is inside an event loop.

    The local engine may call handlers from async code; asyncio.run would refuse there, so
    the coroutine then gets a thread of its own.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run_here(coroutine_factory)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="load-test") as pool:
        return pool.submit(_run_here, coroutine_factory).result()


def _run_here(coroutine_factory: Callable[[], Coroutine[Any, Any, Result]]) -> Result:
    try:
        import uvloop
    except ImportError:
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(coroutine_factory())
