"""`ddcicd aws models list|describe|deploy`: the pipeline's model versions in SageMaker Model Registry.

The same rows as the local `ddcicd models list` (workflow/local/model_versions.py): each
version's metrics documents are read from S3, and production is the ModelDataUrl its
endpoint's model serves. The group is named after the pipeline (model_package_group).
"""
from __future__ import annotations

import json
from typing import Any, Callable

from workflow.aws.clients import AwsContext, AwsError
from workflow.definition.registry import model_package_group
from workflow.local.model_versions import version_summary


def _s3_document(context: AwsContext) -> Callable[[str], dict[str, Any] | None]:
    from botocore.exceptions import ClientError

    def read(uri: str) -> dict[str, Any] | None:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        try:
            body = context.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
            document = json.loads(body)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None  # a run that stopped before writing it
            raise
        except ValueError:
            return None
        return document if isinstance(document, dict) else None

    return read


def production_model_data_url(context: AwsContext) -> str | None:
    """The ModelDataUrl the production endpoint's first variant serves, or None without production."""
    from botocore.exceptions import ClientError

    sagemaker = context.client("sagemaker")
    try:
        endpoint = sagemaker.describe_endpoint(EndpointName=context.config.endpoint.production_name)
        endpoint_config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        model = sagemaker.describe_model(ModelName=endpoint_config["ProductionVariants"][0]["ModelName"])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ValidationException":  # no production endpoint (yet)
            return None
        raise
    return model.get("PrimaryContainer", {}).get("ModelDataUrl")


def versions(context: AwsContext) -> list[dict[str, Any]]:
    """Every version of the group, newest first, as `models list` shows it."""
    sagemaker = context.client("sagemaker")
    pages = sagemaker.get_paginator("list_model_packages").paginate(
        ModelPackageGroupName=model_package_group(context.config), SortOrder="Descending")
    serving, read = production_model_data_url(context), _s3_document(context)
    return [version_summary(sagemaker.describe_model_package(ModelPackageName=item["ModelPackageArn"]), read, serving)
            for page in pages for item in page["ModelPackageSummaryList"]]  # fmt: skip


def describe_version(context: AwsContext, version: int) -> dict[str, Any]:
    """DescribeModelPackage of `version` of the group; AwsError when there is no such version."""
    group = model_package_group(context.config)
    for page in context.client("sagemaker").get_paginator("list_model_packages").paginate(ModelPackageGroupName=group):
        for item in page["ModelPackageSummaryList"]:
            if item.get("ModelPackageVersion") == version:
                return context.client("sagemaker").describe_model_package(ModelPackageName=item["ModelPackageArn"])
    raise AwsError(f"model package group {group} has no version {version}")


def deploy_version(context: AwsContext, version: int, timeout: float | None = None) -> dict[str, Any]:
    """Production -> `version`'s model through endpoint.rollout (workflow/model_deploy.py), waiting for the end.

    The stack's rollout alarms are checked against the config first (a guarded update names
    them); SageMaker's errors reach the caller as botocore's ClientError.
    """
    from botocore import xform_name

    from workflow.aws.rollout_alarms import check_rollout_alarms
    from workflow.model_deploy import DeployError
    from workflow.model_deploy import deploy_version as deploy

    described = describe_version(context, version)
    check_rollout_alarms(context)
    sagemaker = context.client("sagemaker")
    wait = timeout if timeout is not None else context.config.endpoint.rollout.max_seconds + 900
    try:
        return deploy(context.config, described, lambda action, parameters: getattr(sagemaker, xform_name(action))(**parameters),
                      timeout=wait, poll_seconds=context.config.endpoint.poll_seconds)  # fmt: skip
    except DeployError as error:
        raise AwsError(f"model version {version}: {error}") from None


__all__ = ["deploy_version", "describe_version", "production_model_data_url", "versions"]
