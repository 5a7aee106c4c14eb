"""Submission Lambda: Batch Transform's per-image `.out` files -> Kaggle's submission.csv.

    {"transform_output_uri": "s3://b/runs/x/batch-score/",        # img_1.jpg.out, ...
     "sample_submission_uri": "s3://b/datasets/d/sample_submission.csv",
     "output_uri": "s3://b/runs/x/submission.csv"}
    -> {"rows": 79726, "scored": 79726, "missing": 0, "submission_uri": "s3://b/runs/x/submission.csv"}

Rows follow sample_submission.csv, and the columns its header names; an image without an
output (it failed to score) gets the uniform distribution, so the file is always complete,
and `missing` says how many. The CSV itself comes from steps/batch_score.py (vendored into the
zip), the same code `ddcicd predict` writes it with.
"""
from __future__ import annotations

import csv
import io
import json
from typing import Any

from lambdas import storage
from lambdas.errors import InvalidData
from lambdas.events import Event, S3Uri, parse_event
from steps.batch_score import submission_csv


class SubmissionEvent(Event):
    transform_output_uri: S3Uri  # the TransformOutput.S3OutputPath
    sample_submission_uri: S3Uri
    output_uri: S3Uri


def read_sample(uri: str) -> tuple[list[str], list[str]]:
    """(class columns, image order) from sample_submission.csv."""
    rows = list(csv.reader(io.StringIO(storage.read_bytes(uri).decode("utf-8", errors="replace"))))
    if not rows or not rows[0] or rows[0][0] != "img" or len(rows[0]) < 3:
        raise InvalidData(f"{uri}: expected a header 'img,c0,...', got {rows[0] if rows else 'nothing'}")
    return rows[0][1:], [row[0] for row in rows[1:] if row]


def read_scores(prefix: str, classes: list[str]) -> dict[str, list[float]]:
    scores: dict[str, list[float]] = {}
    for uri in storage.list_uris(prefix.rstrip("/") + "/"):
        if not uri.endswith(".out"):
            continue
        try:
            probabilities = json.loads(storage.read_bytes(uri))
        except ValueError as error:
            raise InvalidData(f"{uri}: not JSON ({error})") from error
        if not isinstance(probabilities, list) or len(probabilities) != len(classes):
            raise InvalidData(f"{uri}: expected a list of {len(classes)} probabilities")
        scores[uri.rsplit("/", 1)[-1].removesuffix(".out")] = [float(value) for value in probabilities]
    return scores


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    request = parse_event(SubmissionEvent, event, "submission")
    classes, order = read_sample(request.sample_submission_uri)
    scores = read_scores(request.transform_output_uri, classes)
    storage.write_bytes(request.output_uri, submission_csv(scores, classes, order).encode(), "text/csv")
    scored = sum(1 for name in order if name in scores)
    return {"rows": len(order), "scored": scored, "missing": len(order) - scored, "submission_uri": request.output_uri}
