"""Send every validation image to the endpoint, a bounded number at a time, through boto3.

boto3 is fast enough here (thousands of images, each costing the model far more than the
client), and using it as-is keeps its retries (standard mode: throttling and 5xx, never a
ModelError) and its error codes. Threads, not asyncio: boto3 clients are thread-safe and
the pool is sized to the concurrency so no thread waits for a connection.

An invocation that fails is recorded with the error code boto3 raised, not raised itself:
the handler decides from the share of failures. Two things stop the sending early, so a
dead or hanging endpoint cannot keep the Lambda busy: the deadline (images left over count
as failures of kind `DeadlineReached`), and failures passing `max_failures`, after which
the evaluation has failed anyway (images left over count as `NotSent`).
"""
from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from lambdas.runtime import sagemaker_runtime

CONNECT_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class InvocationSettings:
    endpoint_name: str
    content_type: str
    class_count: int
    concurrency: int
    timeout_seconds: float
    max_attempts: int


@dataclass(frozen=True)
class Invocation:
    """One image's outcome: its probabilities, or the kind of failure."""

    probabilities: list[float] | None
    error: str | None = None


def parse_probabilities(body: bytes, class_count: int) -> list[float]:
    """The built-in algorithm's reply, `[p0, ..., pK-1]`; ValueError if it is anything else."""
    reply = json.loads(body)
    if isinstance(reply, dict) and "predictions" in reply:  # JSON Lines-style {"predictions": [...]} also seen
        reply = reply["predictions"]
    if not isinstance(reply, list) or len(reply) != class_count:
        raise ValueError(f"expected a list of {class_count} probabilities, got {str(reply)[:80]}")
    values = [float(value) for value in reply]
    if not all(math.isfinite(value) and value >= 0 for value in values):
        raise ValueError(f"probabilities must be finite and >= 0, got {values}")
    return values


class _Stop:
    """Shared by the worker threads: the deadline, and the failure count that ends the run."""

    def __init__(self, deadline: float, max_failures: int) -> None:
        self.deadline = deadline
        self.max_failures = max_failures
        self.failures = 0
        self.lock = threading.Lock()

    def reason(self) -> str | None:
        if self.failures > self.max_failures:
            return "NotSent"
        if time.monotonic() >= self.deadline:
            return "DeadlineReached"
        return None

    def count(self, outcome: Invocation) -> Invocation:
        if outcome.error is not None:
            with self.lock:
                self.failures += 1
        return outcome


def _invoke(settings: InvocationSettings, image: bytes, stop: _Stop) -> Invocation:
    reason = stop.reason()
    if reason is not None:
        return Invocation(None, reason)
    return stop.count(_call(settings, image))


def _call(settings: InvocationSettings, image: bytes) -> Invocation:
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError as BotoConnectionError,
        ConnectTimeoutError,
        ReadTimeoutError,
    )

    client = sagemaker_runtime(CONNECT_TIMEOUT_SECONDS, settings.timeout_seconds, settings.max_attempts, settings.concurrency)
    try:
        response = client.invoke_endpoint(
            EndpointName=settings.endpoint_name, Body=image, ContentType=settings.content_type, Accept="application/json"
        )
        body = response["Body"].read()
    except ClientError as error:
        return Invocation(None, error.response.get("Error", {}).get("Code") or "ClientError")
    except (ReadTimeoutError, ConnectTimeoutError):
        return Invocation(None, "Timeout")
    except BotoConnectionError:
        return Invocation(None, "ConnectionError")
    except BotoCoreError as error:
        return Invocation(None, type(error).__name__)
    try:
        return Invocation(parse_probabilities(body, settings.class_count))
    except ValueError:  # json.JSONDecodeError is a ValueError
        return Invocation(None, "BadResponse")


def invoke_all(
    settings: InvocationSettings, images: Sequence[bytes], deadline: float, max_failures: int
) -> list[Invocation]:
    """One Invocation per image, in the images' order; nothing is sent after `deadline`
    (time.monotonic) or once more than `max_failures` invocations have failed."""
    stop = _Stop(deadline, max_failures)
    with ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="evaluate") as pool:
        return list(pool.map(lambda image: _invoke(settings, image, stop), images))


@dataclass(frozen=True)
class Tally:
    """Failures of a run: `failed` counts images not scored because of the endpoint or the
    deadline; `not_sent` those skipped after the evaluation had already failed."""

    failed: int
    not_sent: int
    by_kind: dict[str, int]

    @classmethod
    def of(cls, invocations: Sequence[Invocation]) -> Tally:
        by_kind: dict[str, int] = {}
        for outcome in invocations:
            if outcome.error is not None:
                by_kind[outcome.error] = by_kind.get(outcome.error, 0) + 1
        not_sent = by_kind.get("NotSent", 0)
        return cls(sum(by_kind.values()) - not_sent, not_sent, dict(sorted(by_kind.items())))
