"""The evaluate handler's event.

    {"endpoint_name": "ddcicd-staging-20261124",
     "data_uri": "s3://ddcicd/processed",                       # manifest.json + validation.rec
     "output_uri": "s3://ddcicd/runs/<id>/evaluation.json",      # PNG goes beside it
     "production_metrics_uri": "s3://ddcicd/runs/<champion>/evaluation.json",   # null: no champion yet
     "max_concurrency": 8, "max_failure_share": 0.05}
"""
from __future__ import annotations

from pydantic import Field

from lambdas.events import EndpointName, Event, S3Uri


class EvaluateEvent(Event):
    """Score `endpoint_name` on every validation image under `data_uri`."""

    endpoint_name: EndpointName
    data_uri: S3Uri  # prefix holding manifest.json and validation.rec
    output_uri: S3Uri  # where the result JSON goes; the confusion-matrix PNG is written beside it
    # The champion's evaluation document: the ModelMetrics.ModelQuality.Statistics URI of the
    # newest approved model version, which the state machine looks up (FindChampion); None = no champion yet.
    production_metrics_uri: S3Uri | None = None
    max_concurrency: int = Field(8, ge=1, le=64)  # invocations in flight
    max_failure_share: float = Field(0.05, ge=0, le=1)  # failed / all images above this fails the evaluation
    max_images: int | None = Field(None, ge=1)  # evaluate only the first N images (quick runs)
    invocation_timeout_seconds: float = Field(30.0, gt=0, le=300)  # read timeout per InvokeEndpoint attempt
    max_attempts: int = Field(3, ge=1, le=10)  # boto3 standard retries: throttling and 5xx, not ModelError
    time_limit_seconds: float = Field(840.0, gt=0, le=900)  # no invocation starts after this (Lambda max: 900)
    content_type: str = Field("application/x-image", min_length=1)
    min_log_loss_improvement: float = Field(0.0, ge=0)  # how much lower than the champion's the log loss must be
