"""Per-execution names and locations: the execution input the state machine reads.

SageMaker names must be unique, at most 63 characters of [a-zA-Z0-9-]; every resource of
one execution shares its name, so the console, S3 and SageMaker line up:

    execution ddcicd-20261124-061502-3f9a
    -> training job ddcicd-20261124-061502-3f9a-train (-r0 added per redrive by the definition)
    -> s3://bucket/prefix/runs/ddcicd-20261124-061502-3f9a/processed/train.rec
"""
from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone

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
    }
