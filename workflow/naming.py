"""Per-execution names and locations: the execution input the state machine reads.

SageMaker names must be unique, at most 63 characters of [a-zA-Z0-9-]; every resource of
one execution shares its name, so the console, S3 and SageMaker line up:

    execution ddcicd-20261124-061502-3f9a
    -> training job ddcicd-20261124-061502-3f9a-train (-r0 added per redrive by the definition)
    -> s3://bucket/prefix/runs/ddcicd-20261124-061502-3f9a/processed/train.rec
"""
from __future__ import annotations

import hashlib
import re
import secrets
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from workflow.config import PipelineConfig

_NAME_ALLOWED = re.compile(r"[^a-zA-Z0-9-]")
_SUFFIXES = ("-process", "-train", "-transform", "-staging-config", "-production-config", "-staging", "-model")
MAX_EXECUTION_NAME = 63 - max(len(suffix) for suffix in _SUFFIXES) - len("-r99")


def new_execution_name(config: PipelineConfig, now: datetime | None = None) -> str:
    """`<name>-YYYYMMDD-HHMMSS-xxxx`: sortable, unique, short enough for every SageMaker suffix."""
    moment = (now or datetime.now(timezone.utc)).strftime("%Y%m%d-%H%M%S")
    stem = _NAME_ALLOWED.sub("-", config.name)[: MAX_EXECUTION_NAME - len(moment) - 6]
    return f"{stem}-{moment}-{secrets.token_hex(2)}"


def execution_input(config: PipelineConfig, execution_name: str, raw_data_uri: str) -> dict[str, str]:
    """Everything EXECUTION_INPUT_SCHEMA asks for, derived from the execution name."""
    if len(execution_name) > MAX_EXECUTION_NAME or _NAME_ALLOWED.search(execution_name):
        raise ValueError(
            f"execution name {execution_name!r} must be at most {MAX_EXECUTION_NAME} characters of a-z, A-Z, 0-9 and -"
        )
    raw = raw_data_uri.rstrip("/") + "/"
    run = f"s3://{config.aws.bucket}/{config.aws.prefix}/runs/{execution_name}"
    evaluation = f"{run}/evaluation/evaluation.json"
    return {
        "RawDataUri": raw,
        "ProcessedDataUri": f"{run}/processed/",
        "ProcessedDataBucket": config.aws.bucket,
        "ManifestKey": f"{config.aws.prefix}/runs/{execution_name}/processed/manifest.json",
        "TrainChannelUri": f"{run}/processed/train.rec",
        "ValidationChannelUri": f"{run}/processed/validation.rec",
        "ModelOutputUri": f"{run}/model/",
        "CheckpointUri": f"{run}/checkpoints/",
        "CodeUri": f"s3://{config.aws.bucket}/{config.aws.prefix}/code/",
        "ProcessingJobName": f"{execution_name}-process",
        "TrainingJobName": f"{execution_name}-train",
        "ModelName": f"{execution_name}-model",
        "StagingEndpointConfigName": f"{execution_name}-staging-config",
        "ProductionEndpointConfigName": f"{execution_name}-production-config",
        "StagingEndpointName": f"{execution_name}-staging",
        "EvaluationUri": evaluation,
        "EvaluationCopySource": evaluation.removeprefix("s3://"),
        "LoadTestUri": f"{run}/load-test/load-test.json",
        "TestImagesUri": f"{raw}imgs/test/",
        "TransformJobName": f"{execution_name}-transform",
        "TransformOutputUri": f"{run}/batch-score/",
        "SampleSubmissionUri": f"{raw}sample_submission.csv",
        "SubmissionUri": f"{run}/submission.csv",
        "ConfigHash": config_hash(config),  # lineage of the registered model version
        "SourceCommit": source_commit(),
    }


def config_hash(config: PipelineConfig) -> str:
    """The first 16 hex digits of the SHA-256 of the effective configuration, as JSON."""
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]


def source_commit() -> str:
    """The git commit this code is checked out at (with "+dirty" for local changes), or "unknown"."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                               text=True, timeout=10).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + ("+dirty" if dirty else "")) if commit else "unknown"
