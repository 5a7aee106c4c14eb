"""Send every validation image to the endpoint, a bounded number at a time, through boto3.

boto3 is fast enough here (thousands of images, each costing the model far more than the
client), and using it as-is keeps its retries (standard mode: throttling and 5xx, never a
ModelError) and its error codes. Threads, not asyncio: boto3 clients are thread-safe and
the pool is sized to the concurrency so no thread waits for a connection.

An invocation that fails is recorded with the error code boto3 raised, not raised itself:
the handler decides from the share of failures. Nothing is sent after the deadline (the
Lambda's remaining time); images left over count as failures of kind `DeadlineReached`.
"""
from __future__ import annotations

import json
import math
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


def _invoke(settings: InvocationSettings, image: bytes, deadline: float) -> Invocation:
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionError as BotoConnectionError,
        ConnectTimeoutError,
        ReadTimeoutError,
    )

    if time.monotonic() >= deadline:
        return Invocation(None, "DeadlineReached")
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


def invoke_all(settings: InvocationSettings, images: Sequence[bytes], deadline: float) -> list[Invocation]:
    """One Invocation per image, in the images' order."""
    with ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="evaluate") as pool:
        return list(pool.map(lambda image: _invoke(settings, image, deadline), images))
