"""Per-fleet invocation metrics the local runtime router records, for rollout alarms and describe.

On AWS, SageMaker publishes Invocations, Invocation5XXErrors and ModelLatency per endpoint
and variant to CloudWatch, and a deployment's alarms read them. Locally the router is the
only process that sees every request, so it counts them here, per endpoint and per fleet
(the EndpointConfigName a fleet serves: during a rollout the old and the new one), in
quarter-second buckets: (requests, 5xx answers, latency histogram). Every half second it
writes the last minutes to <home>/endpoints/metrics/<endpoint>.json (atomically), where
the endpoints' refresh evaluates the alarms and `ddcicd endpoints describe` reads them.

Latencies go to log-spaced buckets (5% wide), so a p99 over any span is a merge of
counters: cheap to record per request, exact to within a bucket.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from steps.atomic import write_atomically

BUCKETS_PER_SECOND = 4
KEEP_SECONDS = 600.0  # history written to the file
_LOG_BASE = math.log(1.05)

Bucket = list[Any]  # [requests, errors_5xx, {histogram key: count}]


def latency_key(milliseconds: float) -> int:
    return int(math.log(max(milliseconds, 0.01)) / _LOG_BASE)


def key_upper_ms(key: int) -> float:
    return math.exp((key + 1) * _LOG_BASE)


class FleetMetrics:
    """The router's in-memory counters: endpoint -> fleet -> bucket index -> Bucket."""

    def __init__(self) -> None:
        self.endpoints: dict[str, dict[str, dict[int, Bucket]]] = {}
        self.dirty: set[str] = set()

    def record(self, endpoint: str, fleet: str, status: int, milliseconds: float, now: float | None = None) -> None:
        index = int((time.time() if now is None else now) * BUCKETS_PER_SECOND)
        fleets = self.endpoints.setdefault(endpoint, {})
        buckets = fleets.setdefault(fleet, {})
        bucket = buckets.get(index)
        if bucket is None:
            bucket = buckets[index] = [0, 0, {}]
        bucket[0] += 1
        if status >= 500:
            bucket[1] += 1
        histogram = bucket[2]
        key = latency_key(milliseconds)
        histogram[key] = histogram.get(key, 0) + 1
        self.dirty.add(endpoint)

    def take(self, now: float | None = None) -> dict[str, dict[str, Any]]:
        """The documents of the endpoints that saw requests since the last take; forgets old
        buckets. Call it on the thread that records (the router's event loop), then `write`
        anywhere: the documents are copies."""
        oldest = int(((time.time() if now is None else now) - KEEP_SECONDS) * BUCKETS_PER_SECOND)
        documents = {}
        for endpoint in sorted(self.dirty):
            fleets = self.endpoints[endpoint]
            for buckets in fleets.values():
                for index in [index for index in buckets if index < oldest]:
                    del buckets[index]
            documents[endpoint] = {"buckets_per_second": BUCKETS_PER_SECOND, "fleets": {
                fleet: {str(index): [bucket[0], bucket[1], {str(key): value for key, value in bucket[2].items()}]
                        for index, bucket in buckets.items()} for fleet, buckets in fleets.items()}}
        self.dirty.clear()
        return documents


def write_metrics(directory: Path, documents: dict[str, dict[str, Any]]) -> None:
    """One file per endpoint, written atomically (the endpoints' refresh reads them without a lock)."""
    for endpoint, document in documents.items():
        directory.mkdir(parents=True, exist_ok=True)
        write_atomically(directory / f"{endpoint}.json", json.dumps(document).encode(), fsync=False)


def read_metrics(directory: Path, endpoint: str) -> dict[str, Any]:
    """The endpoint's metrics file ({} when the router has recorded nothing for it)."""
    try:
        return json.loads((directory / f"{endpoint}.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def summarize(metrics: dict[str, Any], fleet: str, start: float, end: float) -> dict[str, float] | None:
    """Requests, 5xx share and p99 (ms) of one fleet over [start, end); None without requests."""
    per_second = metrics.get("buckets_per_second", BUCKETS_PER_SECOND)
    first, last = start * per_second, end * per_second
    requests = errors = 0
    histogram: dict[int, int] = {}
    for index, (count, failed, buckets) in (metrics.get("fleets", {}).get(fleet) or {}).items():
        if first <= int(index) < last:
            requests += count
            errors += failed
            for key, value in buckets.items():
                histogram[int(key)] = histogram.get(int(key), 0) + value
    if requests == 0:
        return None
    rank, seen, p99 = math.ceil(0.99 * requests), 0, 0.0
    for key in sorted(histogram):
        seen += histogram[key]
        if seen >= rank:
            p99 = key_upper_ms(key)
            break
    return {"requests": requests, "errors": errors, "error_rate": errors / requests, "p99_ms": p99}
