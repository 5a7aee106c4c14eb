"""The load test's events: one shard's run, and the merge of a Map fan-out's shard results.

A shard event (Step Functions passes it as the Lambda payload):

    {"endpoint_name": "ddcicd-staging", "data_uri": "s3://ddcicd/processed",
     "concurrency": 32, "duration_seconds": 60, "ramp_up_seconds": 5,
     "slo": {"p99_ms": 500, "max_error_rate": 0.01}}

Every run is bounded: by `duration_seconds`, by `max_requests`, or by both, and never by
more than MAX_DURATION_SECONDS (a Lambda lives at most 15 minutes).
"""
from __future__ import annotations

from typing import Any, Self

from pydantic import Field, model_validator

from lambdas.events import EndpointName, Event, S3Uri

MAX_DURATION_SECONDS = 840.0  # Lambda's 900 s limit minus time to fetch payloads and report


class Slo(Event):
    """What the endpoint must achieve: p99 latency of successful requests and share of failed ones."""

    p99_ms: float = Field(gt=0)
    max_error_rate: float = Field(ge=0, le=1)


class LoadTestEvent(Event):
    """One shard: drive `endpoint_name` with up to `concurrency` requests in flight."""

    endpoint_name: EndpointName
    # payload source, exactly one: a sample of the processed validation images, or one object
    data_uri: S3Uri | None = None  # prefix holding validation.rec (the processing step's output)
    payload_uri: S3Uri | None = None  # a single object sent as every request's body
    sample_size: int = Field(16, ge=1, le=1000)  # validation images kept as payloads
    content_type: str = Field("application/x-image", min_length=1)
    concurrency: int = Field(8, ge=1, le=512)  # requests in flight at full load
    duration_seconds: float | None = Field(None, gt=0, le=MAX_DURATION_SECONDS)
    max_requests: int | None = Field(None, ge=1, le=10_000_000)
    ramp_up_seconds: float = Field(0.0, ge=0, le=MAX_DURATION_SECONDS)  # workers start evenly spread over it
    request_timeout_seconds: float = Field(10.0, gt=0, le=60)  # per request, connect included
    slo: Slo
    shard: int = Field(0, ge=0)  # this shard's index in a Map fan-out; also varies the sample
    seed: int = 0

    @model_validator(mode="after")
    def _bounded_and_one_source(self) -> Self:
        if (self.data_uri is None) == (self.payload_uri is None):
            raise ValueError("give exactly one payload source: data_uri or payload_uri")
        if self.duration_seconds is None and self.max_requests is None:
            raise ValueError("give duration_seconds or max_requests (or both): a load test must be bounded")
        if self.duration_seconds is not None and self.ramp_up_seconds >= self.duration_seconds:
            raise ValueError(
                f"ramp_up_seconds ({self.ramp_up_seconds}) must be shorter than duration_seconds ({self.duration_seconds})"
            )
        return self

    @property
    def time_limit_seconds(self) -> float:
        """How long the shard may send requests: its duration, else the Lambda-safe maximum."""
        return self.duration_seconds if self.duration_seconds is not None else MAX_DURATION_SECONDS


class MergeEvent(Event):
    """The shard results of a Map state (`{"shards.$": "$"}`), optionally the SLO to judge them by
    and where to store the merged result as JSON."""

    shards: list[dict[str, Any]] = Field(min_length=1)
    slo: Slo | None = None
    output_uri: S3Uri | None = None
