"""SageMaker's errors as the Step Functions integrations raise them, so Retry and Catch match as on AWS.

    optimized integrations (arn:aws:states:::sagemaker:*):  SageMaker.AmazonSageMakerException,
        the cause naming the error code, worded like the Java SDK's
    aws-sdk integrations (arn:aws:states:::aws-sdk:sagemaker:*): SageMaker.SageMakerException
        for errors the SDK does not model (see sagemaker_control.py)
"""
from __future__ import annotations

import uuid

from workflow.engine import StatesError
from workflow.engine.values import Json


def sagemaker_error(code: str, message: str) -> StatesError:
    """An error from a SageMaker optimized integration."""
    return StatesError(
        "SageMaker.AmazonSageMakerException",
        f"{message} (Service: AmazonSageMaker; Status Code: 400; Error Code: {code}; Request ID: {uuid.uuid4()}; Proxy: null)",
    )


def unmodelled_error(message: str) -> StatesError:
    """An error the aws-sdk integration passes on without a modelled name."""
    return StatesError("SageMaker.SageMakerException", f"{message} (Service: SageMaker, Status Code: 400, Request ID: {uuid.uuid4()})")


def required(parameters: Json, key: str) -> str:
    """A required string parameter, or SageMaker's 'Member must not be null' validation error."""
    value = parameters.get(key) if isinstance(parameters, dict) else None
    if not isinstance(value, str) or not value:
        raise sagemaker_error("ValidationException", f"1 validation error detected: Value null at '{key}' failed to "
                                                     "satisfy constraint: Member must not be null")  # fmt: skip
    return value
