"""The pipeline's model versions as people read them, and moving production to one of them.

    versions(config)                  # newest first: status, metrics, lineage, which one production serves
    deploy_version(config, 3)         # production -> version 3's model (Approved only), blue/green

What `ddcicd models` and the console's Models page show. A version's metrics are its
registered ModelMetrics documents (evaluation: ModelQuality.Statistics, load test:
ModelQuality.Constraints), read from the local S3 root. Production serves a version when
its endpoint's model loads that version's ModelDataUrl.

Deploying keeps the registry's rule that the newest Approved version is the one production
serves (the champion the pipeline's Evaluate compares with, workflow/definition/registry.py):
approved versions newer than the deployed one are Rejected, "rolled back to version N".
"""
from __future__ import annotations

import json
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from workflow.config import PipelineConfig
from workflow.definition.registry import model_package_group
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


def deploy_version(config: PipelineConfig, version: int, home: Path | None = None, timeout: float = 300.0) -> dict[str, Any]:
    """Production -> an endpoint config for `version`'s model (created for it), waiting for InService.

    Only an Approved version deploys. Returns the endpoint's description. Approved versions
    newer than `version` are Rejected afterwards (rolled back), so the champion stays the
    version production serves.
    """
    described = describe_version(config, version, home)
    if described["ModelApprovalStatus"] != "Approved":
        raise VersionError(f"model version {version} is {described['ModelApprovalStatus']}, not Approved: only an approved "
                           f"version deploys ({described.get('ApprovalDescription', 'no reason recorded')})")  # fmt: skip
    s3 = S3Root.default()
    endpoints = LocalEndpoints(home, resolve_uri=s3.path)
    container = dict(described["InferenceSpecification"]["Containers"][0])
    name = f"{model_package_group(config)[:30]}-v{version}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    production = config.endpoint.production_name
    try:
        endpoints.create_model(name, primary_container={key: container[key] for key in ("Image", "ModelDataUrl", "Environment")
                                                        if key in container})  # fmt: skip
        endpoints.create_endpoint_config(name, [{"VariantName": "AllTraffic", "ModelName": name, "InstanceType": config.endpoint.instance_type,
                                                 "InitialInstanceCount": config.endpoint.production_instances}])  # fmt: skip
        if endpoints.state_path(production).exists():
            endpoints.update_endpoint(production, name)
        else:
            endpoints.create_endpoint(production, name)
    except ValidationError as error:
        raise VersionError(f"deploying model version {version}: {error.message}") from None
    described_endpoint = _wait_in_service(endpoints, production, name, timeout)
    _record_deployment(ModelRegistry.default(home), described, version)
    return described_endpoint


def _wait_in_service(endpoints: LocalEndpoints, production: str, config_name: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        endpoint = endpoints.describe_endpoint(production)
        status = endpoint["EndpointStatus"]
        if status == "Failed" or (status == "InService" and endpoint.get("FailureReason")):
            raise VersionError(f"endpoint {production}: {endpoint.get('FailureReason', 'Failed')}; production is unchanged")
        if status == "InService" and endpoint["EndpointConfigName"] == config_name:
            return endpoint
        if time.monotonic() > deadline:
            raise VersionError(f"endpoint {production} is not InService on {config_name} after {timeout:g} s (it is {status})")
        time.sleep(0.2)


def _record_deployment(registry: ModelRegistry, described: dict[str, Any], version: int) -> None:
    group = described["ModelPackageGroupName"]
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    registry.update_model_package({"ModelPackageArn": described["ModelPackageArn"],
                                   "ApprovalDescription": f"deployed to production by ddcicd models deploy at {stamp}"})  # fmt: skip
    newer = registry.list_model_packages({"ModelPackageGroupName": group, "ModelApprovalStatus": "Approved"})
    for item in newer["ModelPackageSummaryList"]:
        if item["ModelPackageVersion"] > version:
            registry.update_model_package({"ModelPackageArn": item["ModelPackageArn"], "ModelApprovalStatus": "Rejected",
                                           "ApprovalDescription": f"rolled back to version {version} at {stamp}"})  # fmt: skip


__all__ = ["VersionError", "deploy_version", "describe_version", "production_model_data_url", "version_summary", "versions"]
