"""The run report: every section from real artifacts, and one line per missing artifact."""
from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path
from typing import Any

import pytest

from lambdas.load_test.histogram import Histogram
from workflow.console.report import render_report, write_report
from workflow.engine import Engine
from workflow.local.reader import Artifacts
from workflow.local.s3 import S3Root

RUN = "s3://bucket/runs/r1"
RAW = "s3://bucket/datasets/d1"
CLASSES = ["c0", "c1", "c2"]


def _artifacts(s3: S3Root) -> dict[str, Any]:
    """Writes what a pipeline run leaves behind; returns the payloads its states output."""
    manifest = {"classes": CLASSES, "split_by": "driver",
                "splits": {"train": {"count": 9, "per_class": {"c0": 3, "c1": 3, "c2": 3}, "drivers": ["p002", "p012"]},
                           "validation": {"count": 4, "per_class": {"c0": 2, "c1": 1, "c2": 1}, "drivers": ["p015"]}},
                "skipped": [{"path": "imgs/train/c1/broken.jpg", "reason": "not a JPEG"}]}  # fmt: skip
    s3.put_bytes(json.dumps(manifest).encode(), f"{RUN}/processed/manifest.json")
    drivers = {"p002": ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"], "p012": ["f.jpg", "g.jpg", "h.jpg", "i.jpg"], "p015": ["j.jpg", "k.jpg", "l.jpg", "m.jpg"]}
    rows = ["subject,classname,img"] + [f"{driver},c0,{image}" for driver, images in drivers.items() for image in images]
    s3.put_bytes("\n".join(rows).encode(), f"{RAW}/driver_imgs_list.csv")
    train = ["0\t0.000000\timgs/train/c0/a.jpg", "1\t1.000000\timgs/train/c1/b.jpg", "2\t2.000000\timgs/train/c2/c.jpg",
             "3\t0.000000\timgs/train/c0/d.jpg", "4\t1.000000\timgs/train/c1/e.jpg", "5\t2.000000\timgs/train/c2/f.jpg",
             "6\t0.000000\timgs/train/c0/g.jpg", "7\t1.000000\timgs/train/c1/h.jpg", "8\t2.000000\timgs/train/c2/i.jpg"]
    validation = ["0\t0.000000\timgs/train/c0/j.jpg", "1\t0.000000\timgs/train/c0/k.jpg", "2\t1.000000\timgs/train/c1/l.jpg",
                  "3\t2.000000\timgs/train/c2/m.jpg"]  # fmt: skip
    s3.put_bytes("\n".join(train).encode(), f"{RUN}/processed/train.lst")
    s3.put_bytes("\n".join(validation).encode(), f"{RUN}/processed/validation.lst")
    metrics = {"epochs": [{"epoch": 0, "train_loss": 1.1, "train_accuracy": 0.4, "validation_loss": 1.0, "validation_accuracy": 0.5},
                          {"epoch": 1, "train_loss": 0.7, "train_accuracy": 0.7, "validation_loss": 0.8, "validation_accuracy": 0.75}],
               "final": {"validation_accuracy": 0.75, "validation_log_loss": 0.8}}  # fmt: skip
    s3.put_bytes(json.dumps(metrics).encode(), f"{RUN}/model/job-r0/output/data/metrics.json")
    evaluation = {"accuracy": 0.75, "log_loss": 0.8, "evaluated": 4, "failed_invocations": 0, "macro_f1": 0.7, "classes": CLASSES,
                  "per_class": {name: {"precision": 0.8, "recall": 0.7, "f1": 0.75, "support": 1} for name in CLASSES},
                  "confusion_matrix": [[2, 0, 0], [0, 1, 0], [1, 0, 0]], "has_production": True, "better_than_production": True,
                  "production": {"accuracy": 0.5, "log_loss": 1.2}, "metrics_uri": f"{RUN}/evaluation/evaluation.json"}  # fmt: skip
    s3.put_bytes(json.dumps(evaluation).encode(), f"{RUN}/evaluation/evaluation.json")
    histogram = Histogram()
    for microseconds in (2_000, 2_500, 3_000, 8_000, 40_000):
        histogram.record(microseconds, 10)
    load = {"requests": 50, "shards": 2, "duration_seconds": 1.0, "throughput_rps": 50.0, "error_rate": 0.0, "errors_by_kind": {"timeout": 1},
            "p50_ms": 2.5, "p90_ms": 8.0, "p95_ms": 40.0, "p99_ms": 40.0, "max_ms": 40.0, "slo": {"p99_ms": 250.0, "max_error_rate": 0.001},
            "slo_met": True, "histogram": histogram.to_json()}  # fmt: skip
    return {"evaluation": evaluation, "load": load}


def _boom(event: Any, context: Any) -> Any:
    raise RuntimeError(f"{event['state']} broke")


def _pipeline_like(engine: Engine, payloads: dict[str, Any], fail_at: str | None = None) -> str:
    """The pipeline's state names and outputs, as Pass states; `fail_at` turns one into a Fail."""
    states: dict[str, Any] = {
        "Process": {"Type": "Pass", "Result": {"ProcessingJobStatus": "Completed"}, "ResultPath": "$.processing", "Next": "Train"},
        "Train": {"Type": "Pass", "Result": {"ModelArtifacts": {"S3ModelArtifacts": f"{RUN}/model/job-r0/output/model.tar.gz"}},
                  "ResultPath": "$.training", "Next": "Evaluate"},
        "Evaluate": {"Type": "Pass", "Result": {"Payload": payloads["evaluation"]}, "ResultPath": "$.evaluation", "Next": "QualityGate"},
        "QualityGate": {"Type": "Choice", "Choices": [{"Variable": "$.evaluation.Payload.accuracy", "NumericGreaterThanEquals": 0.7,
                                                       "Next": "PrepareLoadTest"}], "Default": "ModelRejected"},
        "ModelRejected": {"Type": "Fail", "Error": "QualityGateFailed"},
        "PrepareLoadTest": {"Type": "Pass", "Next": "MergeLoadTest"},
        "MergeLoadTest": {"Type": "Pass", "Result": {"Payload": payloads["load"]}, "ResultPath": "$.load_test", "Next": "SloGate"},
        "SloGate": {"Type": "Choice", "Choices": [{"Variable": "$.load_test.Payload.slo_met", "BooleanEquals": True,
                                                   "Next": "CreateProductionEndpointConfig"}], "Default": "SloNotMet"},
        "SloNotMet": {"Type": "Fail"},
        "CreateProductionEndpointConfig": {"Type": "Succeed"},
    }  # fmt: skip
    if fail_at:  # a Lambda that raises, keeping the state's place in the flow
        states[fail_at] = {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Next": states[fail_at]["Next"],
                           "ResultPath": states[fail_at].get("ResultPath", "$"),
                           "Parameters": {"FunctionName": "boom", "Payload": {"state": fail_at}}}  # fmt: skip
    arn = engine.create_state_machine("pipeline", {"StartAt": "Process", "States": states})
    execution_input = {"ProcessedDataUri": f"{RUN}/processed/", "RawDataUri": f"{RAW}/", "ModelOutputUri": f"{RUN}/model/", "LoadTestUri": f"{RUN}/load-test.json"}
    return engine.run_execution(arn, execution_input, name=f"run-{fail_at or 'ok'}")["executionArn"]


@pytest.fixture()
def s3(tmp_path: Path) -> S3Root:
    return S3Root(tmp_path / "s3")


def _text(html: str) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def test_full_report_has_every_section(tmp_path: Path, s3: S3Root) -> None:
    engine = Engine(tmp_path / "engine.sqlite3")
    arn = _pipeline_like(engine, _artifacts(s3))
    html = render_report(engine, arn, Artifacts(s3))
    text = _text(html)
    assert "run-ok SUCCEEDED" in text
    assert "train: 9 images from 2 drivers, validation: 4 images from 1 drivers" in text
    assert "imgs/train/c1/broken.jpg" in text and "not a JPEG" in text
    assert "train: images per driver and class driver c0 c1 c2 total p002 2 2 1 5 p012 1 1 2 4" in text
    assert "validation: images per driver and class driver c0 c1 c2 total p015 2 1 1 4" in text
    assert "2 epochs; final validation accuracy 0.7500" in text
    assert "Accuracy 0.7500 , log loss 0.8000 on 4 images" in text
    assert "QualityGate passed accuracy >= 0.7 → PrepareLoadTest" in text
    assert "SloGate passed" in text and "The new model is better than production" in text
    assert "50 requests in 1.0 s" in text and "met" in text and "timeout" in text
    assert html.count("<svg") == 5  # classes, drivers, training curves, confusion matrix, latency
    assert "Under 0.05 s each: Process, Train" in text  # Pass states are too quick for a time-per-state bar
    assert "No " not in text.replace("No files", "")  # nothing reported missing
    assert "<script" not in html and not re.search(r"(src|href)=[\"']?(https?:)?//", html)  # self-contained


def test_early_failure_says_what_is_missing(tmp_path: Path, s3: S3Root) -> None:
    engine = Engine(tmp_path / "engine.sqlite3", functions={"boom": _boom})
    arn = _pipeline_like(engine, _artifacts(S3Root(tmp_path / "elsewhere")), fail_at="Train")
    text = _text(render_report(engine, arn, Artifacts(s3)))
    assert "run-Train FAILED" in text and "RuntimeError in state Train: Train broke full cause" in text
    assert "No processing manifest: the file is missing from the local S3 root" in text
    assert "Images per driver" not in text
    assert "No training metrics: the Train state failed." in text
    assert "No evaluation: the Evaluate state did not run in this execution." in text
    assert "No load-test results: the MergeLoadTest state did not run in this execution." in text
    assert "QualityGate not reached" in text


def test_write_report_is_atomic_and_readable(tmp_path: Path, s3: S3Root) -> None:
    engine = Engine(tmp_path / "engine.sqlite3")
    arn = _pipeline_like(engine, _artifacts(s3))
    out = write_report(engine, arn, tmp_path / "reports" / "r.html", Artifacts(s3))
    assert out.read_text().startswith("<!doctype html>")
    assert out.stat().st_mode & 0o044 == 0o044
    assert [path.name for path in out.parent.iterdir()] == ["r.html"]


def test_manifest_without_the_driver_list_still_shows_the_split(tmp_path: Path, s3: S3Root) -> None:
    engine = Engine(tmp_path / "engine.sqlite3")
    payloads = _artifacts(s3)
    s3.path(f"{RAW}/driver_imgs_list.csv").unlink()
    text = _text(render_report(engine, _pipeline_like(engine, payloads), Artifacts(s3)))
    assert "Drivers per split split drivers train p002, p012 validation p015" in text
    assert "No per-driver counts: the processed .lst files or the dataset's driver list are missing." in text
