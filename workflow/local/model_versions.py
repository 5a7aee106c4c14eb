"""The pipeline's model versions as people read them, and moving production to one of them.

    versions(config)                  # newest first: status, metrics, lineage, which one production serves
    deploy_version(config, 3)         # production -> version 3's model (Approved only), through endpoint.rollout

What `ddcicd models` and the console's Models page show. A version's metrics are its
registered ModelMetrics documents (evaluation: ModelQuality.Statistics, load test:
ModelQuality.Constraints), read from the local S3 root. Production serves a version when
its endpoint's model loads that version's ModelDataUrl.

Deploying is workflow/model_deploy.py's, shared with `ddcicd aws models deploy`: the same
guarded rollout as a promotion, and the registry's rule that the newest Approved version is
the one production serves.
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from workflow.config import PipelineConfig
from workflow.definition.registry import model_package_group
from workflow.home import ddcicd_home
from workflow.local.alarms import put_rollout_alarms
from workflow.local.endpoints import LocalEndpoints, ValidationError
from workflow.local.model_registry import ModelRegistry, RegistryError
from workflow.local.s3 import S3Root


class VersionError(Exception):
    """A version that cannot be shown or deployed, and why."""


def _local_document(s3: S3Root) -> Callable[[str], dict[str, Any] | None]:
    def read(uri: str) -> dict[str, Any] | None:
        try:
            document = json.loads(s3.path(uri).read_text())
        except (OSError, ValueError):  # not written (a run that stopped before its load test) or not ours
            return None
        return document if isinstance(document, dict) else None

    return read


def production_model_data_url(endpoints: LocalEndpoints, production: str) -> str | None:
    """The ModelDataUrl production's endpoint serves (its first variant's model), or None without production."""
    try:
        endpoint = endpoints.describe_endpoint(production)
        endpoint_config = endpoints.describe_endpoint_config(endpoint["EndpointConfigName"])
        model = endpoints.describe_model(endpoint_config["ProductionVariants"][0]["ModelName"])
    except (ValidationError, KeyError, IndexError):
        return None
    return model.get("PrimaryContainer", {}).get("ModelDataUrl")


def version_summary(described: dict[str, Any], read: Callable[[str], dict[str, Any] | None], serving_url: str | None) -> dict[str, Any]:
    """One DescribeModelPackage as `models list` shows it; `read(uri)` fetches a metrics document (None if absent)."""
    quality = described.get("ModelMetrics", {}).get("ModelQuality", {})
    uris = (quality.get("Statistics", {}).get("S3Uri"), quality.get("Constraints", {}).get("S3Uri"))
    evaluation, load_test = (read(uri) if uri else None for uri in uris)
    [container] = described["InferenceSpecification"]["Containers"][:1] or [{}]
    lineage = described.get("CustomerMetadataProperties", {})
    created = described["CreationTime"]
    execution_arn = lineage.get("ExecutionArn", "")
    return {
        "version": described["ModelPackageVersion"],
        "arn": described["ModelPackageArn"],
        "status": described["ModelApprovalStatus"],
        "approval_description": described.get("ApprovalDescription", ""),
        "created": created.isoformat() if isinstance(created, datetime) else created,  # boto3 parses it, the local registry does not
        "model_data_url": container.get("ModelDataUrl"),
        "execution_arn": execution_arn,
        "execution_name": execution_arn.rsplit(":", 1)[-1] if execution_arn else "",
        "lineage": lineage,
        "accuracy": (evaluation or {}).get("accuracy"),
        "log_loss": (evaluation or {}).get("log_loss"),
        "p99_ms": (load_test or {}).get("p99_ms"),
        "error_rate": (load_test or {}).get("error_rate"),
        "in_production": serving_url is not None and container.get("ModelDataUrl") == serving_url,
    }


def versions(config: PipelineConfig, home: Path | None = None) -> list[dict[str, Any]]:
    """Every version of the pipeline's group, newest first, with metrics and whether production serves it."""
    registry, s3 = ModelRegistry.default(home), S3Root.default()
    serving = production_model_data_url(LocalEndpoints(home, resolve_uri=s3.path), config.endpoint.production_name)
    request: dict[str, Any] = {"ModelPackageGroupName": model_package_group(config), "SortOrder": "Descending"}
    found = []
    while True:
        page = registry.list_model_packages(request)
        found += [registry.describe_model_package({"ModelPackageName": item["ModelPackageArn"]})
                  for item in page["ModelPackageSummaryList"]]  # fmt: skip
        if "NextToken" not in page:
            break
        request["NextToken"] = page["NextToken"]
    return [version_summary(described, _local_document(s3), serving) for described in found]


def describe_version(config: PipelineConfig, version: int, home: Path | None = None) -> dict[str, Any]:
    """DescribeModelPackage of `version` in the pipeline's group; VersionError if there is none."""
    try:
        return ModelRegistry.default(home).describe_model_package({"ModelPackageName": f"{model_package_group(config)}/{version}"})
    except RegistryError as error:
        raise VersionError(f"model version {version}: {error.message}") from None


def local_sagemaker(home: Path | None = None) -> Callable[[str, dict[str, Any]], dict[str, Any]]:
    """SageMaker's API over this home: the registry's operations in SQLite, the rest on the local control plane.

    Refused requests raise VersionError with SageMaker's message, naming the operation.
    """
    from workflow.local.sagemaker_control import SageMakerControlPlane

    registry = ModelRegistry.default(home)
    plane = SageMakerControlPlane(LocalEndpoints(home, resolve_uri=S3Root.default().path))

    def call(action: str, parameters: dict[str, Any]) -> dict[str, Any]:
        method = getattr(registry, re.sub(r"(?<!^)(?=[A-Z])", "_", action).lower(), None)
        try:
            return method(parameters) if method is not None else plane.call(action, parameters)
        except (RegistryError, ValidationError) as error:
            raise VersionError(f"{action}: {getattr(error, 'message', error)}") from None

    return call


def deploy_version(config: PipelineConfig, version: int, home: Path | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Production -> `version`'s model through endpoint.rollout (workflow/model_deploy.py), waiting for the end.

    The rollout alarms are written from the config first, as `ddcicd run` writes them, so a
    guarded deployment is judged by the thresholds the pipeline's own promotion uses.
    """
    from workflow.model_deploy import DeployError
    from workflow.model_deploy import deploy_version as deploy

    home = home or ddcicd_home()
    described = describe_version(config, version, home)
    put_rollout_alarms(home, config)
    wait = timeout if timeout is not None else config.endpoint.rollout.max_seconds + 300
    try:
        return deploy(config, described, local_sagemaker(home), timeout=wait)
    except DeployError as error:
        raise VersionError(f"model version {version}: {error}") from None


__all__ = ["VersionError", "deploy_version", "local_sagemaker", "describe_version", "production_model_data_url", "version_summary", "versions"]
