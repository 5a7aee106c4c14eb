"""The load generator: async InvokeEndpoint requests over aiohttp, SigV4-signed like boto3's.

Why not a boto3 loop: botocore spends most of a call building, signing and parsing, so a
Lambda tops out well below what one endpoint instance serves; and httpx, measured on this
machine kind, manages ~170 req/s. Here each request is signed with botocore's own SigV4
signer (the same credentials, region and signing name boto3 would use) and sent by aiohttp
on uvloop, and a failed reply is parsed with botocore's own response parser, so the error
kinds are exactly the codes boto3 would raise (`ModelError`, `ValidationError`,
`ThrottlingException`, ...). Transport failures are `Timeout` or `ConnectionError`.
Requests are not retried: a retry would hide the failures the SLO is about.

Bounds: workers claim a ticket before each request, and no ticket is handed out after the
deadline or past `max_requests`; each request has its own timeout. So a run ends at most
`request_timeout` after its deadline, whatever the endpoint does.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.parsers import create_parser

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
    """Headers for one InvokeEndpoint request, signed as botocore would sign them."""

    def __init__(self, target: InvocationTarget, content_type: str) -> None:
        self.target = target
        self.content_type = content_type
        self.auth = SigV4Auth(target.credentials, target.operation_model.service_model.signing_name, target.region)

    def headers(self, body: bytes) -> dict[str, str]:
        request = AWSRequest(
            method="POST",
            url=self.target.url,
            data=body,
            headers={"Content-Type": self.content_type, "Accept": "application/json"},
        )
        self.auth.add_auth(request)
        return dict(request.headers.items())


class ErrorClassifier:
    """The error code boto3 would report for a failed HTTP reply (its rest-json parser, reused)."""

    def __init__(self, target: InvocationTarget) -> None:
        self.parser = create_parser(target.operation_model.service_model.protocol)
        self.output_shape = target.operation_model.output_shape

    def kind(self, status: int, headers: Any, body: bytes) -> str:
        parsed = self.parser.parse({"status_code": status, "headers": headers, "body": body}, self.output_shape)
        return str(parsed.get("Error", {}).get("Code") or status)


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
        self.outcome = Outcome()
        self.issued = 0
        self.deadline = 0.0

    def _claim(self) -> int | None:
        """The next request's number, or None once the deadline or the request cap is reached."""
        if time.monotonic() >= self.deadline:
            return None
        if self.plan.max_requests is not None and self.issued >= self.plan.max_requests:
            return None
        self.issued += 1
        return self.issued - 1

    async def _worker(self, session: aiohttp.ClientSession, start_delay: float) -> None:
        if start_delay > 0:
            await asyncio.sleep(start_delay)
        url = self.target.url
        histogram = self.outcome.histogram
        errors = self.outcome.errors
        while (ticket := self._claim()) is not None:
            body = self.payloads[ticket % len(self.payloads)]
            headers = self.signer.headers(body)
            started = time.perf_counter_ns()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    reply = await response.read()
                    if response.status == 200:
                        histogram.record((time.perf_counter_ns() - started) // 1000)
                    else:
                        errors[self.classifier.kind(response.status, response.headers, reply)] += 1
            except TimeoutError:
                errors["Timeout"] += 1
            except aiohttp.ClientConnectionError:
                errors["ConnectionError"] += 1
            except aiohttp.ClientError as error:
                errors[type(error).__name__] += 1

    async def run(self) -> Outcome:
        """Start `concurrency` workers spread over the ramp-up, and wait for all of them to stop."""
        plan = self.plan
        timeout = aiohttp.ClientTimeout(
            total=plan.request_timeout_seconds, connect=min(5.0, plan.request_timeout_seconds)
        )
        connector = aiohttp.TCPConnector(limit=plan.concurrency, limit_per_host=plan.concurrency, ttl_dns_cache=300)
        started = time.monotonic()
        self.deadline = started + plan.time_limit_seconds
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
            step = plan.ramp_up_seconds / plan.concurrency
            await asyncio.gather(*(self._worker(session, index * step) for index in range(plan.concurrency)))
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
