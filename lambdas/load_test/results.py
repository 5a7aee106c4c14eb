"""The load test's result document: one shard's, and the merge of several.

Flat fields are for the workflow's SloGate Choice state (`$.load_test.slo_met`,
`$.load_test.p99_ms`); `histogram` is for merging shards exactly:

    {"endpoint_name": "ddcicd-staging", "shards": 4, "requests": 48210, "successes": 48190,
     "errors": 20, "errors_by_kind": {"ModelError": 20}, "error_rate": 0.000415,
     "duration_seconds": 60.2, "throughput_rps": 800.8,
     "p50_ms": 21.3, "p90_ms": 30.1, "p95_ms": 34.0, "p99_ms": 52.7, "max_ms": 210.4, "mean_ms": 22.9,
     "slo": {"p99_ms": 500.0, "max_error_rate": 0.01}, "slo_met": true, "histogram": {...}}

Latencies are those of successful requests, in milliseconds, within the histogram's 0.4 %.
Throughput counts every completed request (successes and errors) over the shard's wall
time; for merged shards, which ran side by side, over the longest shard's.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from lambdas.errors import InvalidEvent
from lambdas.load_test.driver import Outcome
from lambdas.load_test.events import Slo
from lambdas.load_test.histogram import Histogram

PERCENTILES = {"p50_ms": 50.0, "p90_ms": 90.0, "p95_ms": 95.0, "p99_ms": 99.0}


def _summary(
    endpoint_name: str, shards: int, histogram: Histogram, errors: Counter[str], duration: float, slo: Slo
) -> dict[str, Any]:
    error_count = sum(errors.values())
    requests = histogram.count + error_count
    error_rate = error_count / requests if requests else 1.0
    result: dict[str, Any] = {
        "endpoint_name": endpoint_name,
        "shards": shards,
        "requests": requests,
        "successes": histogram.count,
        "errors": error_count,
        "errors_by_kind": dict(sorted(errors.items())),
        "error_rate": error_rate,
        "duration_seconds": round(duration, 3),
        "throughput_rps": requests / duration if duration > 0 else 0.0,
    }
    for name, percent in PERCENTILES.items():
        result[name] = histogram.percentile(percent) / 1000
    result["max_ms"] = histogram.max / 1000
    result["mean_ms"] = histogram.mean / 1000
    result["slo"] = slo.model_dump()
    # no successful request means no latency to judge: that never meets an SLO
    result["slo_met"] = bool(
        histogram.count > 0 and result["p99_ms"] <= slo.p99_ms and error_rate <= slo.max_error_rate
    )
    result["histogram"] = histogram.to_json()
    return result


def shard_result(endpoint_name: str, outcome: Outcome, slo: Slo) -> dict[str, Any]:
    """One shard's result document."""
    return _summary(endpoint_name, 1, outcome.histogram, outcome.errors, outcome.elapsed_seconds, slo)


def merge_results(shards: Sequence[dict[str, Any]], slo: Slo | None) -> dict[str, Any]:
    """Combine shard results (or earlier merges) of one endpoint into one result, exactly.

    The SLO is the given one, else the shards' common one; shards that disagree on the
    endpoint, or on the SLO when none is given, are an InvalidEvent.
    """
    histogram: Histogram | None = None
    errors: Counter[str] = Counter()
    endpoints: set[str] = set()
    slos: set[tuple[float, float]] = set()
    duration = 0.0
    count = 0
    for position, shard in enumerate(shards):
        try:
            shard_histogram = Histogram.from_json(shard["histogram"])
            endpoints.add(str(shard["endpoint_name"]))
            slos.add((float(shard["slo"]["p99_ms"]), float(shard["slo"]["max_error_rate"])))
            duration = max(duration, float(shard["duration_seconds"]))
            errors.update({str(kind): int(times) for kind, times in shard["errors_by_kind"].items()})
            count += int(shard.get("shards", 1))
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise InvalidEvent(f"load_test merge: shards[{position}] is not a load-test result: {error!r}") from None
        try:
            histogram = shard_histogram if histogram is None else histogram.merge(shard_histogram)
        except ValueError as error:
            raise InvalidEvent(f"load_test merge: shards[{position}]: {error}") from None
    if len(endpoints) != 1:
        raise InvalidEvent(f"load_test merge: shards target different endpoints: {sorted(endpoints)}")
    if slo is None:
        if len(slos) != 1:
            raise InvalidEvent(f"load_test merge: shards carry different SLOs {sorted(slos)}; give 'slo' in the event")
        p99_ms, max_error_rate = slos.pop()
        slo = Slo(p99_ms=p99_ms, max_error_rate=max_error_rate)
    assert histogram is not None  # MergeEvent requires at least one shard
    return _summary(endpoints.pop(), count, histogram, errors, duration, slo)
