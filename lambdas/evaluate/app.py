"""Evaluate Lambda: score the staging endpoint on the validation set, compare with production.

`handler(event, context)` with events.EvaluateEvent in, and out (also stored as JSON at
`output_uri`, with a confusion-matrix PNG beside it) a document whose flat fields a Choice
state can gate on:

    {"endpoint_name": "...", "images": 1200, "evaluated": 1198, "failed_invocations": 2,
     "failure_share": 0.0017, "failures_by_kind": {"ModelError": 2},
     "accuracy": 0.91, "log_loss": 0.31, "macro_precision": ..., "macro_recall": ..., "macro_f1": ...,
     "per_class": {"c0": {"precision": ..., "recall": ..., "f1": ..., "support": 120}, ...},
     "confusion_matrix": [[...], ...], "classes": ["c0", ...],
     "has_production": true, "better_than_production": true, "accuracy_delta": 0.02,
     "log_loss_delta": -0.05, "production": {"accuracy": 0.89, "log_loss": 0.36},
     "metrics_uri": "s3://.../evaluation.json", "confusion_matrix_uri": "s3://.../evaluation-confusion-matrix.png"}

Errors a Catch can match: InvalidEvent, ObjectNotFound / InvalidData (validation data or
the champion's metrics), StorageError, TooManyFailedInvocations (failed share above
`max_failure_share`; nothing is stored then).
"""
from __future__ import annotations

import json
import math
import time
from typing import Any

from lambdas import storage
from lambdas.dataset import read_classes, read_validation_images
from lambdas.errors import InvalidData, TooManyFailedInvocations
from lambdas.evaluate.events import EvaluateEvent
from lambdas.evaluate.invocations import InvocationSettings, Tally, invoke_all
from lambdas.evaluate.metrics import classification_metrics, compare_with_production, production_scores
from lambdas.evaluate.plot import confusion_matrix_png
from lambdas.events import parse_event

REPORT_MARGIN_SECONDS = 30.0  # stop invoking this long before the Lambda times out, to compute and store


def _deadline(context: Any, time_limit_seconds: float) -> float:
    """Monotonic time after which no invocation starts: the event's time limit, and on AWS
    also the Lambda's end minus a margin to compute and store the result."""
    limit = time_limit_seconds
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is not None:
        limit = min(limit, max(0.0, remaining() / 1000 - REPORT_MARGIN_SECONDS))
    return time.monotonic() + limit


def _png_uri(output_uri: str) -> str:
    stem = output_uri.rsplit("/", 1)[-1].removesuffix(".json")
    return storage.sibling_uri(output_uri, f"{stem}-confusion-matrix.png")


def _production(uri: str | None) -> tuple[float, float] | None:
    """The champion's (accuracy, log loss), or None when there is no champion yet."""
    if uri is None or not storage.exists(uri):
        return None
    try:
        document = json.loads(storage.read_bytes(uri))
    except json.JSONDecodeError as error:
        raise InvalidData(f"{uri} is not JSON: {error}") from None
    return production_scores(document, uri)


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    request = parse_event(EvaluateEvent, event, "evaluate")
    classes = read_classes(request.data_uri)
    images = read_validation_images(request.data_uri, len(classes))[: request.max_images]
    production = _production(request.production_metrics_uri)

    settings = InvocationSettings(
        endpoint_name=request.endpoint_name,
        content_type=request.content_type,
        class_count=len(classes),
        concurrency=request.max_concurrency,
        timeout_seconds=request.invocation_timeout_seconds,
        max_attempts=request.max_attempts,
    )
    max_failures = math.floor(request.max_failure_share * len(images))
    invocations = invoke_all(settings, [item.image for item in images], _deadline(context, request.time_limit_seconds), max_failures)
    tally = Tally.of(invocations)
    share = tally.failed / len(images)
    if tally.failed == len(images) or share > request.max_failure_share:
        raise TooManyFailedInvocations(
            f"evaluate: {tally.failed} of {len(images)} invocations of endpoint {request.endpoint_name} failed "
            f"(share {share:.4f} > max_failure_share {request.max_failure_share})"
            + (f", {tally.not_sent} more images not sent after that" if tally.not_sent else "")
            + f"; by kind: {tally.by_kind}"
        )

    scored = [(item.label, outcome.probabilities) for item, outcome in zip(images, invocations) if outcome.probabilities is not None]
    metrics = classification_metrics([label for label, _ in scored], [scores for _, scores in scored], classes)
    png_uri = _png_uri(request.output_uri)
    result: dict[str, Any] = {
        "endpoint_name": request.endpoint_name,
        "data_uri": request.data_uri,
        "classes": classes,
        "images": len(images),
        "evaluated": len(scored),
        "failed_invocations": tally.failed,
        "failure_share": share,
        "failures_by_kind": tally.by_kind,
        **metrics,
        **compare_with_production(metrics["accuracy"], metrics["log_loss"], production, request.min_log_loss_improvement),
        "metrics_uri": request.output_uri,
        "confusion_matrix_uri": png_uri,
    }
    title = f"{request.endpoint_name}: accuracy {metrics['accuracy']:.3f}, log loss {metrics['log_loss']:.3f}"
    storage.write_bytes(png_uri, confusion_matrix_png(metrics["confusion_matrix"], classes, title), "image/png")
    storage.write_bytes(request.output_uri, json.dumps(result, indent=2).encode(), "application/json")
    return result
