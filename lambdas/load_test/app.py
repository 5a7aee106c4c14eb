"""Load-test Lambda: drive the staging endpoint, then judge it against the SLO.

Two handlers, deployed from the same zip:
- `lambdas.load_test.app.handler`: one shard (events.LoadTestEvent -> results document);
- `lambdas.load_test.app.merge_handler`: the shards of a Map fan-out -> one document, also
  stored as JSON at the event's `output_uri` when given.

Errors a Catch can match: InvalidEvent (bad event), ObjectNotFound / InvalidData (payload
source), StorageError. A slow or failing endpoint is not an error: it is the result
(`slo_met: false`), for the SloGate Choice state to act on.
"""
from __future__ import annotations

import json
from typing import Any

from lambdas import storage
from lambdas.dataset import sample_validation_images
from lambdas.events import parse_event
from lambdas.load_test.driver import LoadGenerator, LoadPlan, run_async
from lambdas.load_test.events import LoadTestEvent, MergeEvent
from lambdas.load_test.results import merge_results, shard_result
from lambdas.runtime import invocation_target


def load_payloads(event: LoadTestEvent) -> list[bytes]:
    """The request bodies: one object, or a seeded sample of validation images (varied per shard)."""
    if event.payload_uri is not None:
        return [storage.read_bytes(event.payload_uri)]
    assert event.data_uri is not None  # the event model requires one of the two
    return sample_validation_images(event.data_uri, event.sample_size, f"{event.seed}/{event.shard}")


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """One shard of the load test; returns results.shard_result's document."""
    request = parse_event(LoadTestEvent, event, "load_test")
    payloads = load_payloads(request)
    plan = LoadPlan(
        concurrency=request.concurrency,
        time_limit_seconds=request.time_limit_seconds,
        max_requests=request.max_requests,
        ramp_up_seconds=request.ramp_up_seconds,
        request_timeout_seconds=request.request_timeout_seconds,
        content_type=request.content_type,
    )
    generator = LoadGenerator(invocation_target(request.endpoint_name), plan, payloads)
    outcome = run_async(generator.run)
    result = shard_result(request.endpoint_name, outcome, request.slo)
    result["shard"] = request.shard
    return result


def merge_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Combine a Map state's shard results into one document of the same shape."""
    request = parse_event(MergeEvent, event, "load_test merge")
    result = merge_results(request.shards, request.slo)
    if request.output_uri is not None:
        result["result_uri"] = request.output_uri
        storage.write_bytes(request.output_uri, json.dumps(result, indent=2).encode(), "application/json")
    return result
