"""What every part of the definition shares: the execution input, SDK set-up done offline,
Retry policies, and the ASL fields the SDK 2.3.0 predates."""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from workflow.config import PipelineConfig

if TYPE_CHECKING:
    from stepfunctions.steps import State

TRANSIENT_ERRORS = [
    "SageMaker.AmazonSageMakerException",
    "SageMaker.SageMakerException",
    "ThrottlingException",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]

# The execution input, declared once. `workflow.naming.execution_input()` fills it.
EXECUTION_INPUT_SCHEMA: dict[str, type] = {
    "RawDataUri": str,  # s3 prefix of the Kaggle layout (imgs/train/c0.., driver_imgs_list.csv)
    "ProcessedDataUri": str,  # s3 prefix the processing job writes RecordIO + manifest.json to
    "ProcessedDataBucket": str,  # its bucket and the manifest's key, as S3 GetObject wants them
    "ManifestKey": str,
    "TrainChannelUri": str,  # ProcessedDataUri + train.rec
    "ValidationChannelUri": str,  # ProcessedDataUri + validation.rec
    "ModelOutputUri": str,
    "CheckpointUri": str,  # shared by retries and redrives, so a rerun resumes training
    "CodeUri": str,  # s3 prefix holding steps/ for the processing container
    "ProcessingJobName": str,
    "TrainingJobName": str,
    "ModelName": str,
    "StagingEndpointConfigName": str,
    "ProductionEndpointConfigName": str,
    "StagingEndpointName": str,
    "EvaluationUri": str,
    "EvaluationCopySource": str,  # EvaluationUri as S3 CopyObject wants it: bucket/key
    "LoadTestUri": str,
    "TestImagesUri": str,
    "TransformJobName": str,
    "TransformOutputUri": str,
    "SampleSubmissionUri": str,  # RawDataUri + sample_submission.csv: the submission's row order
    "SubmissionUri": str,
    "ConfigHash": str,  # lineage the model registry records (workflow/definition/registry.py)
    "SourceCommit": str,
}


@dataclass(frozen=True)
class Resources:
    """What the definition refers to that is not per execution (from the config)."""

    production_metrics_uri: str
    lambda_arns: dict[str, str]  # workflow.contracts.functions key -> function ARN
    approval_topic_arn: str = ""  # where RequestApproval publishes (approval.required only)


def _quiet_sdk_imports() -> None:
    """The SDKs print deprecation banners and config INFO lines on import; none is ours to act on."""
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    warnings.filterwarnings("ignore", module="sagemaker")
    logging.getLogger("sagemaker.config").setLevel(logging.WARNING)


@functools.lru_cache(maxsize=4)
def _partition(region: str) -> str:
    import boto3

    return boto3.session.Session().get_partition_for_region(region)


@contextlib.contextmanager
def _partition_of(config: PipelineConfig) -> Iterator[None]:
    """Make the SDK build ARNs in the configured region's partition.

    stepfunctions 2.3.0 derives the partition from the *environment's* default region on
    every step (0.2 s each, and wrong when the config names another partition).
    """
    from stepfunctions.steps import integration_resources

    original = integration_resources.get_aws_partition
    integration_resources.get_aws_partition = lambda: _partition(config.aws.region)
    try:
        yield
    finally:
        integration_resources.get_aws_partition = original


@functools.lru_cache(maxsize=4)
def _cached_sagemaker_session(region: str, bucket: str) -> Any:
    import boto3
    import sagemaker

    boto_session = boto3.Session(
        region_name=region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "offline"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "offline"),
    )
    return sagemaker.session.Session(boto_session=boto_session, default_bucket=bucket)


def _sagemaker_session(config: PipelineConfig) -> Any:
    """A session with an explicit region and dummy credentials: building never calls AWS."""
    return _cached_sagemaker_session(config.aws.region, config.aws.bucket)


def _set(step: State, **fields: Any) -> State:
    """Set ASL fields the SDK 2.3.0 predates (ResultSelector, ErrorPath, CausePath).

    The SDK serialises every entry of `step.fields` with its name in PascalCase, so
    `result_selector` becomes `ResultSelector`; it only refuses unknown names in __init__.
    """
    step.fields.update(fields)
    return step


def _retry(config: PipelineConfig, errors: list[str] | None = None) -> Any:
    from stepfunctions.steps import Retry

    return Retry(
        error_equals=errors or TRANSIENT_ERRORS,
        interval_seconds=config.retry.interval_seconds,
        max_attempts=config.retry.max_attempts,
        backoff_rate=config.retry.backoff_rate,
    )


def _unique_per_attempt(input_name: str) -> str:
    """A job name unique per redrive: SageMaker refuses to reuse one, Step Functions reruns with the same input."""
    return f"States.Format('{{}}-r{{}}', $$.Execution.Input.{input_name}, $$.Execution.RedriveCount)"
