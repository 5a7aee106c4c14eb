"""How the handlers reach a SageMaker endpoint: boto3 `sagemaker-runtime`, here or on AWS.

On AWS the client uses the Lambda's role and region. Locally the engine sets
DDCICD_SAGEMAKER_RUNTIME_URL to its runtime router (which serves the same
`POST /endpoints/<name>/invocations` path), and the client is pointed there with
`endpoint_url`; dummy credentials stand in when none are in the environment, because the
local router does not check signatures and the default credential chain would otherwise
probe the EC2 metadata service first.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

RUNTIME_URL_VARIABLE = "DDCICD_SAGEMAKER_RUNTIME_URL"
DEFAULT_REGION = "us-east-1"
LOCAL_CREDENTIALS = {"aws_access_key_id": "ddcicd-local", "aws_secret_access_key": "ddcicd-local"}


def region() -> str:
    """The configured region: AWS_REGION (set inside Lambda), then AWS_DEFAULT_REGION."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def local_runtime_url() -> str | None:
    """The local runtime router's base URL, or None on AWS."""
    return os.environ.get(RUNTIME_URL_VARIABLE) or None


def _session_arguments() -> dict[str, Any]:
    arguments: dict[str, Any] = {"region_name": region()}
    if local_runtime_url() and not os.environ.get("AWS_ACCESS_KEY_ID"):
        arguments.update(LOCAL_CREDENTIALS)
    return arguments


@functools.cache
def session() -> Any:
    """The boto3 session both the client and the load test's signer take credentials from."""
    import boto3

    return boto3.session.Session(**_session_arguments())


@functools.cache
def sagemaker_runtime(connect_timeout: float, read_timeout: float, max_attempts: int, pool_size: int) -> Any:
    """A `sagemaker-runtime` client, one per setting, created on first use (moto-friendly).

    `pool_size` must cover the caller's concurrency, or threads queue for a connection.
    """
    from botocore.config import Config

    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        max_pool_connections=pool_size,
    )
    return session().client("sagemaker-runtime", endpoint_url=local_runtime_url(), config=config)


@dataclass(frozen=True)
class InvocationTarget:
    """Everything needed to send InvokeEndpoint requests without a boto3 call per request."""

    url: str  # https://runtime.sagemaker.<region>.amazonaws.com/endpoints/<name>/invocations
    region: str
    credentials: Any  # botocore ReadOnlyCredentials, frozen for the whole run
    operation_model: Any  # botocore OperationModel of InvokeEndpoint, for parsing error replies


def invocation_target(endpoint_name: str) -> InvocationTarget:
    """Resolve the endpoint URL, region and credentials once, as boto3 would for InvokeEndpoint."""
    client = sagemaker_runtime(5.0, 60.0, 1, 10)
    credentials = session().get_credentials()
    if credentials is None:
        raise RuntimeError("no AWS credentials found for signing sagemaker-runtime requests")
    base = client.meta.endpoint_url.rstrip("/")
    return InvocationTarget(
        url=f"{base}/endpoints/{quote(endpoint_name, safe='')}/invocations",
        region=client.meta.region_name,
        credentials=credentials.get_frozen_credentials(),
        operation_model=client.meta.service_model.operation_model("InvokeEndpoint"),
    )
