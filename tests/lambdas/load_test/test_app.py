"""The load-test handlers, driven through `handler` / `merge_handler` against a real local HTTP runtime."""
from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from lambdas.errors import InvalidEvent, ObjectNotFound
from lambdas.load_test.app import handler, merge_handler
from lambdas.load_test.histogram import Histogram

GENEROUS_SLO = {"p99_ms": 60_000, "max_error_rate": 0.0}


def payload_event(kit: Any, **overrides: Any) -> dict[str, Any]:
    uri = kit.put("payload.png", kit.encode_case(3))
    event = {"endpoint_name": "fixed", "payload_uri": uri, "concurrency": 4, "slo": GENEROUS_SLO}
    event.update(overrides)
    return event


def test_request_count_bound_is_exact_and_every_request_is_signed(runtime, kit) -> None:
    result = handler(payload_event(kit, max_requests=120, concurrency=8))
    assert result["requests"] == result["successes"] == 120 == runtime.requests
    assert result["errors"] == 0 and result["errors_by_kind"] == {}
    assert result["slo_met"] is True
    assert Histogram.from_json(result["histogram"]).count == 120
    assert 0 < result["p50_ms"] <= result["p90_ms"] <= result["p95_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["throughput_rps"] > 0 and result["shard"] == 0
    assert all(
        value.startswith("AWS4-HMAC-SHA256 Credential=ddcicd-local/") and "/sagemaker/aws4_request" in value
        for value in runtime.authorizations
    )


def test_duration_bound_stops_a_run_with_no_request_cap(runtime, kit) -> None:
    result = handler(payload_event(kit, duration_seconds=0.4, ramp_up_seconds=0.1, concurrency=2))
    assert result["requests"] == runtime.requests > 0
    assert result["duration_seconds"] < 30  # bounded: it stopped by itself


def test_validation_images_are_sampled_as_payloads(runtime, kit) -> None:
    data_uri = kit.write_processed([(label % 10, label % 10) for label in range(30)])
    result = handler(
        {"endpoint_name": "classifier", "data_uri": data_uri, "sample_size": 5, "max_requests": 40, "slo": GENEROUS_SLO}
    )
    assert result["successes"] == 40 and result["slo_met"] is True


def test_model_errors_are_counted_by_boto3_error_code_and_break_the_slo(runtime, kit) -> None:
    data_uri = kit.write_processed([(1, 1), (2, None)])
    result = handler(
        {"endpoint_name": "classifier", "data_uri": data_uri, "max_requests": 20, "concurrency": 2, "slo": {"p99_ms": 60_000, "max_error_rate": 0.1}}
    )
    assert result["errors_by_kind"] == {"ModelError": 10}
    assert result["successes"] == 10 and result["error_rate"] == 0.5
    assert result["slo_met"] is False


def test_unknown_endpoint_is_a_validation_error_result_not_a_crash(runtime, kit) -> None:
    result = handler(payload_event(kit, endpoint_name="no-such-endpoint", max_requests=5))
    assert result["errors_by_kind"] == {"ValidationError": 5}
    assert result["successes"] == 0 and result["slo_met"] is False and result["p99_ms"] == 0.0


def test_request_timeout_ends_hung_requests(runtime, kit) -> None:
    result = handler(payload_event(kit, endpoint_name="slow", max_requests=3, concurrency=3, request_timeout_seconds=0.2))
    assert result["errors_by_kind"] == {"Timeout": 3}
    assert result["slo_met"] is False


def test_unreachable_runtime_is_a_connection_error(runtime, kit, monkeypatch: pytest.MonkeyPatch) -> None:
    from lambdas import runtime as runtime_module

    with socket.socket() as probe:  # a port nobody listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("DDCICD_SAGEMAKER_RUNTIME_URL", f"http://127.0.0.1:{port}")
    runtime_module.sagemaker_runtime.cache_clear()
    result = handler(payload_event(kit, max_requests=4, concurrency=2))
    assert result["errors_by_kind"] == {"ConnectionError": 4}


def test_handler_runs_when_called_from_inside_an_event_loop(runtime, kit) -> None:
    async def call() -> dict[str, Any]:
        return handler(payload_event(kit, max_requests=10))

    assert asyncio.run(call())["successes"] == 10


def test_missing_payload_object_is_object_not_found(runtime, kit) -> None:
    event = {"endpoint_name": "fixed", "payload_uri": f"s3://{kit.bucket}/absent.png", "max_requests": 1, "slo": GENEROUS_SLO}
    with pytest.raises(ObjectNotFound, match="absent.png"):
        handler(event)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_requests": None}, "must be bounded"),
        ({"data_uri": "s3://ddcicd-test/processed"}, "exactly one payload source"),
        ({"slo": None}, "slo"),
        ({"duration_seconds": 1.0, "ramp_up_seconds": 2.0}, "must be shorter than duration_seconds"),
        ({"endpoint_name": "bad_name!"}, "endpoint_name: String should match pattern"),
        ({"concurrency": 0}, "concurrency: Input should be greater than or equal to 1 (got 0)"),
        ({"duration_seconds": 3600}, "duration_seconds: Input should be less than or equal to 840"),
        ({"max_request": 5}, "max_request: Extra inputs are not permitted"),
        ({"payload_uri": "/etc/passwd"}, "payload_uri: String should match pattern"),
    ],
)
def test_bad_events_are_invalid_event_naming_the_field(kit, change: dict[str, Any], message: str) -> None:
    event = {"endpoint_name": "fixed", "payload_uri": f"s3://{kit.bucket}/p", "max_requests": 5, "slo": GENEROUS_SLO}
    event.update(change)
    event = {key: value for key, value in event.items() if value is not None}
    with pytest.raises(InvalidEvent, match="^load_test: bad event: ") as caught:
        handler(event)
    assert message in str(caught.value)


def test_merging_shards_adds_up_exactly(runtime, kit) -> None:
    shards = [handler(payload_event(kit, max_requests=count, shard=index)) for index, count in enumerate((30, 50))]
    merged = merge_handler({"shards": shards})
    assert merged["requests"] == merged["successes"] == 80 and merged["shards"] == 2
    expected = Histogram.from_json(shards[0]["histogram"]).merge(Histogram.from_json(shards[1]["histogram"]))
    assert Histogram.from_json(merged["histogram"]) == expected
    assert merged["duration_seconds"] == max(shard["duration_seconds"] for shard in shards)
    again = merge_handler(
        {"shards": [merged], "slo": {"p99_ms": 0.001, "max_error_rate": 0}, "output_uri": f"s3://{kit.bucket}/runs/r1/load-test.json"}
    )
    assert again["requests"] == 80 and again["slo_met"] is False
    stored = json.loads((kit.root / kit.bucket / "runs/r1/load-test.json").read_text())
    assert stored == again and stored["result_uri"] == f"s3://{kit.bucket}/runs/r1/load-test.json"


def test_merge_refuses_shards_of_different_endpoints_or_slos(runtime, kit) -> None:
    first = handler(payload_event(kit, max_requests=2))
    other_endpoint = dict(first, endpoint_name="other")
    with pytest.raises(InvalidEvent, match="different endpoints"):
        merge_handler({"shards": [first, other_endpoint]})
    other_slo = dict(first, slo={"p99_ms": 1, "max_error_rate": 0})
    with pytest.raises(InvalidEvent, match="different SLOs"):
        merge_handler({"shards": [first, other_slo]})
    with pytest.raises(InvalidEvent, match=r"shards\[0\] is not a load-test result"):
        merge_handler({"shards": [{"requests": 3}]})
    with pytest.raises(InvalidEvent, match="shards: List should have at least 1 item"):
        merge_handler({"shards": []})
