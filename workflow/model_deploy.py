"""Moving production to a registered model version, through the promotion's guarded rollout.

    deploy_version(config, described, sagemaker, timeout=900)   # -> production's DescribeEndpoint

`ddcicd models deploy` and `ddcicd aws models deploy` share these steps; they differ only in
`sagemaker`, a call in SageMaker's own API shapes (`sagemaker("UpdateEndpoint", {...})`):
locally the engine's control plane and the SQLite registry (local_sagemaker in
workflow/local/model_versions.py), on AWS a boto3 client. So a rollback to yesterday's model
takes the same path as a promotion: UpdateEndpoint with the config's DeploymentConfig
(canary or linear steps, the alarms that roll it back), and the same reading of the outcome
as the state machine's wait loop: InService on the new config is done, InService on another
config after the update began is an automatic rollback, and production is unchanged.

The registry keeps its rule that the newest Approved version is what production serves (the
champion the pipeline's Evaluate compares with): a deployed version's newer Approved
versions become Rejected ("rolled back to version N"), and a version whose rollout is rolled
back by the alarms becomes Rejected with SageMaker's reason.
"""
from __future__ import annotations

import secrets
import time
from datetime import datetime, timezone
from typing import Any, Callable

from workflow.config import PipelineConfig
from workflow.definition.endpoints import deployment_config
from workflow.definition.registry import model_package_group

SageMakerCall = Callable[[str, dict[str, Any]], dict[str, Any]]
POLL_SECONDS = 0.2


class DeployError(Exception):
    """A version that cannot be deployed, or a deployment that did not end on it; says why and what production serves."""


class RolledBack(DeployError):
    """The alarms rolled the deployment back: production still serves the previous config."""


def version_resource_name(config: PipelineConfig, version: int) -> str:
    """A fresh name for `version`'s model and endpoint config (63 characters at most, as SageMaker allows)."""
    stamp = f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    return f"{model_package_group(config)[:30]}-v{version}-{stamp}"


def deploy_version(config: PipelineConfig, described: dict[str, Any], sagemaker: SageMakerCall, *,
                   timeout: float, poll_seconds: float = POLL_SECONDS) -> dict[str, Any]:
    """Production -> `described`'s model (a DescribeModelPackage), through endpoint.rollout; waits for the end.

    Only an Approved version deploys. Returns production's description on the new config;
    raises RolledBack when the alarms moved traffic back, DeployError for anything else.
    """
    version = described["ModelPackageVersion"]
    if described["ModelApprovalStatus"] != "Approved":
        raise DeployError(f"model version {version} is {described['ModelApprovalStatus']}, not Approved: only an approved "
                          f"version deploys ({described.get('ApprovalDescription') or 'no reason recorded'})")  # fmt: skip
    production = config.endpoint.production_name
    name = version_resource_name(config, version)
    container = described["InferenceSpecification"]["Containers"][0]
    sagemaker("CreateModel", {
        "ModelName": name,
        "ExecutionRoleArn": config.aws.sagemaker_role_arn,
        "PrimaryContainer": {key: container[key] for key in ("Image", "ModelDataUrl", "Environment") if key in container},
    })  # fmt: skip
    sagemaker("CreateEndpointConfig", {"EndpointConfigName": name, "ProductionVariants": [{
        "VariantName": "AllTraffic", "ModelName": name, "InstanceType": config.endpoint.instance_type,
        "InitialInstanceCount": config.endpoint.production_instances}]})  # fmt: skip
    listed = sagemaker("ListEndpoints", {"NameContains": production, "MaxResults": 100})["Endpoints"]
    if any(item["EndpointName"] == production for item in listed):
        update: dict[str, Any] = {"EndpointName": production, "EndpointConfigName": name}
        guarded = deployment_config(config)
        if guarded is not None:
            update["DeploymentConfig"] = guarded
        sagemaker("UpdateEndpoint", update)
    else:
        sagemaker("CreateEndpoint", {"EndpointName": production, "EndpointConfigName": name})
    try:
        endpoint = wait_for_rollout(sagemaker, production, name, timeout, poll_seconds)
    except RolledBack as rolled_back:
        _set_approval(sagemaker, described["ModelPackageArn"], "Rejected", f"PromotionRolledBack: {rolled_back}")
        raise
    _record_deployment(sagemaker, described, version)
    return endpoint


def wait_for_rollout(sagemaker: SageMakerCall, production: str, config_name: str, timeout: float,
                     poll_seconds: float = POLL_SECONDS) -> dict[str, Any]:
    """Poll DescribeEndpoint until production is InService on `config_name` (done) or on another one (rolled back).

    UpdateEndpoint answers after the endpoint is Updating, so InService on another config is
    never the moment before the update: it is SageMaker's (or the local router's) rollback.
    """
    deadline = time.monotonic() + timeout
    while True:
        endpoint = sagemaker("DescribeEndpoint", {"EndpointName": production})
        status = endpoint["EndpointStatus"]
        if status == "InService":
            if endpoint["EndpointConfigName"] == config_name:
                return endpoint
            reason = endpoint.get("FailureReason") or "the update did not complete"
            raise RolledBack(f"{reason}; production {production} is back on {endpoint['EndpointConfigName']}")
        if status == "Failed":
            raise DeployError(f"endpoint {production} Failed: {endpoint.get('FailureReason', 'no reason given')}")
        if time.monotonic() > deadline:
            raise DeployError(f"endpoint {production} is not InService on {config_name} after {timeout:g} s (it is {status}); "
                              "the deployment goes on: follow it with `endpoints describe`")  # fmt: skip
        time.sleep(poll_seconds)


def _set_approval(sagemaker: SageMakerCall, arn: str, status: str, reason: str) -> None:
    sagemaker("UpdateModelPackage", {"ModelPackageArn": arn, "ModelApprovalStatus": status, "ApprovalDescription": reason[:1024]})


def _record_deployment(sagemaker: SageMakerCall, described: dict[str, Any], version: int) -> None:
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    _set_approval(sagemaker, described["ModelPackageArn"], "Approved", f"deployed to production by models deploy at {stamp}")
    request: dict[str, Any] = {"ModelPackageGroupName": described["ModelPackageGroupName"], "ModelApprovalStatus": "Approved"}
    while True:
        page = sagemaker("ListModelPackages", request)
        for item in page["ModelPackageSummaryList"]:
            if item["ModelPackageVersion"] > version:
                _set_approval(sagemaker, item["ModelPackageArn"], "Rejected", f"rolled back to version {version} at {stamp}")
        if not page.get("NextToken"):
            return
        request["NextToken"] = page["NextToken"]


__all__ = ["DeployError", "RolledBack", "SageMakerCall", "deploy_version", "wait_for_rollout"]
