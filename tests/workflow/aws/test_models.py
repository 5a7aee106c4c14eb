"""`ddcicd aws models list|describe` against moto's SageMaker Model Registry and S3."""
from __future__ import annotations

import json
from typing import Any

import boto3
from click.testing import CliRunner

from workflow.cli import cli

REGION = "eu-west-1"  # conftest.REGION
BUCKET = "ddcicd-test-bucket"


def aws(overrides: list[str], *arguments: str) -> Any:
    return CliRunner().invoke(cli, ["aws", *arguments, *(f"--set={item}" for item in overrides)])


def _register(sagemaker: Any, s3: Any, version: int, log_loss: float, p99: float | None) -> str:
    run = f"pipeline/runs/run-{version}"
    s3.put_object(Bucket=BUCKET, Key=f"{run}/evaluation.json", Body=json.dumps({"accuracy": 0.5 + version / 10, "log_loss": log_loss}))
    if p99 is not None:  # version 2's run stopped before its load test: no document
        s3.put_object(Bucket=BUCKET, Key=f"{run}/load-test.json", Body=json.dumps({"p99_ms": p99, "error_rate": 0.0}))
    return sagemaker.create_model_package(
        ModelPackageGroupName="ddcicd", ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={"Containers": [{"Image": "img", "ModelDataUrl": f"s3://{BUCKET}/{run}/model.tar.gz"}],
                                "SupportedContentTypes": ["application/x-image"], "SupportedResponseMIMETypes": ["application/json"]},
        ModelMetrics={"ModelQuality": {
            "Statistics": {"ContentType": "application/json", "S3Uri": f"s3://{BUCKET}/{run}/evaluation.json"},
            "Constraints": {"ContentType": "application/json", "S3Uri": f"s3://{BUCKET}/{run}/load-test.json"}}},
        CustomerMetadataProperties={"ExecutionArn": f"arn:aws:states:{REGION}:123456789012:execution:ddcicd:run-{version}"},
    )["ModelPackageArn"]  # fmt: skip


def test_list_shows_versions_metrics_and_production(overrides: list[str]) -> None:
    sagemaker, s3 = boto3.client("sagemaker", region_name=REGION), boto3.client("s3", region_name=REGION)
    sagemaker.create_model_package_group(ModelPackageGroupName="ddcicd")
    arns = [_register(sagemaker, s3, 1, 1.2, 40.0), _register(sagemaker, s3, 2, 0.9, None)]
    sagemaker.update_model_package(ModelPackageArn=arns[0], ModelApprovalStatus="Approved", ApprovalDescription="promoted")
    sagemaker.update_model_package(ModelPackageArn=arns[1], ModelApprovalStatus="Rejected", ApprovalDescription="SloNotMet: slow")
    role = [item for item in overrides if item.startswith("aws.sagemaker_role_arn=")][0].split("=", 1)[1]
    sagemaker.create_model(ModelName="run-1-model", ExecutionRoleArn=role,
                           PrimaryContainer={"Image": "img", "ModelDataUrl": f"s3://{BUCKET}/pipeline/runs/run-1/model.tar.gz"})  # fmt: skip
    sagemaker.create_endpoint_config(EndpointConfigName="run-1-production-config", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "run-1-model", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])  # fmt: skip
    sagemaker.create_endpoint(EndpointName="ddcicd-production", EndpointConfigName="run-1-production-config")

    listed = aws(overrides, "models", "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = [(v["version"], v["status"], v["log_loss"], v["p99_ms"], v["in_production"], v["approval_description"])
            for v in json.loads(listed.output)]  # fmt: skip
    assert rows == [(2, "Rejected", 0.9, None, False, "SloNotMet: slow"), (1, "Approved", 1.2, 40.0, True, "promoted")]
    table = aws(overrides, "models", "list").output.splitlines()
    assert table[1].split()[:2] == ["2", "Rejected"] and table[2].split()[:3] == ["*", "1", "Approved"]
    described = aws(overrides, "models", "describe", "1")
    assert described.exit_code == 0 and json.loads(described.output)["ModelPackageArn"] == arns[0]


def test_without_versions_or_production(overrides: list[str]) -> None:
    boto3.client("sagemaker", region_name=REGION).create_model_package_group(ModelPackageGroupName="ddcicd")
    listed = aws(overrides, "models", "list")
    assert listed.exit_code == 0 and "no model versions registered yet" in listed.output
    missing = aws(overrides, "models", "describe", "3")
    assert missing.exit_code == 2 and "has no version 3" in missing.output


def test_deploy_creates_production_from_an_approved_version_and_rejects_the_newer_ones(overrides: list[str]) -> None:
    """The first deployment (no production yet) through moto: CreateModel/EndpointConfig/Endpoint,
    then the registry's rule: newer Approved versions are rolled back (Rejected)."""
    sagemaker, s3 = boto3.client("sagemaker", region_name=REGION), boto3.client("s3", region_name=REGION)
    sagemaker.create_model_package_group(ModelPackageGroupName="ddcicd")
    arns = [_register(sagemaker, s3, version, 1.0, 40.0) for version in (1, 2, 3)]
    for arn, status in zip(arns, ("Approved", "Approved", "PendingManualApproval")):
        sagemaker.update_model_package(ModelPackageArn=arn, ModelApprovalStatus=status)
    refused = aws(overrides, "models", "deploy", "3")
    assert refused.exit_code == 2 and "PendingManualApproval, not Approved" in refused.output

    deployed = aws(overrides, "models", "deploy", "1")
    assert deployed.exit_code == 0, deployed.output
    assert "serves model version 1" in deployed.output
    endpoint = sagemaker.describe_endpoint(EndpointName="ddcicd-production")
    assert "-v1-" in endpoint["EndpointConfigName"]
    model = sagemaker.describe_model(ModelName=endpoint["EndpointConfigName"])
    assert model["PrimaryContainer"]["ModelDataUrl"] == f"s3://{BUCKET}/pipeline/runs/run-1/model.tar.gz"
    statuses = {arn: sagemaker.describe_model_package(ModelPackageName=arn) for arn in arns}
    assert statuses[arns[0]]["ModelApprovalStatus"] == "Approved"
    assert statuses[arns[1]]["ModelApprovalStatus"] == "Rejected"
    assert statuses[arns[1]]["ApprovalDescription"].startswith("rolled back to version 1")
    assert json.loads(aws(overrides, "models", "list", "--json").output)[-1]["in_production"]


GUARDED = ["endpoint.rollout.mode=CANARY", "endpoint.rollout.canary_percent=10", "endpoint.rollout.bake_seconds=600"]


def test_a_guarded_deploy_needs_the_stacks_alarms_to_match_the_config(overrides: list[str]) -> None:
    from workflow.aws.rollout_alarms import stack_parameters
    from workflow.config import load_config
    from workflow.definition.endpoints import rollout_alarms

    sagemaker, s3 = boto3.client("sagemaker", region_name=REGION), boto3.client("s3", region_name=REGION)
    sagemaker.create_model_package_group(ModelPackageGroupName="ddcicd")
    sagemaker.update_model_package(ModelPackageArn=_register(sagemaker, s3, 1, 1.0, 40.0), ModelApprovalStatus="Approved")
    missing = aws([*overrides, *GUARDED], "models", "deploy", "1")
    assert missing.exit_code == 2 and "ddcicd-rollout-errors does not exist" in missing.output
    assert "--parameter-overrides $(ddcicd aws stack-parameters)" in missing.output

    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    config = load_config(overrides=[*overrides, *GUARDED])
    for alarm in rollout_alarms(config):
        cloudwatch.put_metric_alarm(**{**alarm, "Threshold": 0.05} if alarm["MetricName"] == "Invocation5XXErrors" else alarm)
    differs = aws([*overrides, *GUARDED], "deploy")
    assert differs.exit_code == 2 and "ddcicd-rollout-errors.Threshold is 0.05, the config says 0.01" in differs.output

    printed = aws([*overrides, *GUARDED], "stack-parameters")
    assert printed.exit_code == 0, printed.output
    assert printed.output.split() == [f"{key}={value}" for key, value in stack_parameters(config).items()]
    assert "RolloutErrorRate=0.01" in printed.output and "RolloutP99LatencyMicroseconds=1e+06" in printed.output
    apart = aws([*overrides, "endpoint.rollout.p99_latency_ms.period_seconds=30"], "stack-parameters")
    assert apart.exit_code == 2 and "p99_latency_ms.period_seconds=30" in apart.output


def test_a_guarded_update_that_sagemaker_rolls_back_rejects_the_version(overrides: list[str]) -> None:
    """moto has no UpdateEndpoint: the update path runs against botocore's Stubber, which checks each
    request against SageMaker's service model (DeploymentConfig included) and answers as SageMaker
    does after an automatic rollback: InService, the old config, a FailureReason."""
    from botocore.stub import ANY, Stubber

    from workflow.config import load_config
    from workflow.definition.endpoints import deployment_config
    from workflow.model_deploy import RolledBack, deploy_version

    config = load_config(overrides=[*overrides, *GUARDED])
    client = boto3.client("sagemaker", region_name=REGION)
    arn = f"arn:aws:sagemaker:{REGION}:123456789012:model-package/ddcicd/1"
    described = {"ModelPackageArn": arn, "ModelPackageGroupName": "ddcicd", "ModelPackageVersion": 1, "ModelApprovalStatus": "Approved",
                 "InferenceSpecification": {"Containers": [{"Image": "img", "ModelDataUrl": f"s3://{BUCKET}/m.tar.gz"}]}}  # fmt: skip
    endpoint = {"EndpointName": "ddcicd-production", "EndpointArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/ddcicd-production",
                "CreationTime": "2026-12-01T00:00:00Z"}  # fmt: skip
    reason = "Deployment was rolled back due to the alarm ddcicd-rollout-errors in ALARM state"
    with Stubber(client) as stub:
        stub.add_response("create_model", {"ModelArn": f"arn:aws:sagemaker:{REGION}:123456789012:model/x"}, {
            "ModelName": ANY, "ExecutionRoleArn": config.aws.sagemaker_role_arn,
            "PrimaryContainer": {"Image": "img", "ModelDataUrl": f"s3://{BUCKET}/m.tar.gz"}})  # fmt: skip
        stub.add_response("create_endpoint_config", {"EndpointConfigArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint-config/x"},
                          {"EndpointConfigName": ANY, "ProductionVariants": ANY})  # fmt: skip
        stub.add_response("list_endpoints", {"Endpoints": [{**endpoint, "LastModifiedTime": "2026-12-01T00:00:00Z", "EndpointStatus": "InService"}]},
                          {"NameContains": "ddcicd-production", "MaxResults": 100})  # fmt: skip
        stub.add_response("update_endpoint", {"EndpointArn": endpoint["EndpointArn"]}, {
            "EndpointName": "ddcicd-production", "EndpointConfigName": ANY, "DeploymentConfig": deployment_config(config)})  # fmt: skip
        for status, config_name, extra in (("Updating", "old-config", {}), ("InService", "old-config", {"FailureReason": reason})):
            stub.add_response("describe_endpoint", {**endpoint, "EndpointConfigName": config_name, "EndpointStatus": status,
                                                    "LastModifiedTime": "2026-12-01T00:00:00Z", **extra},
                              {"EndpointName": "ddcicd-production"})  # fmt: skip
        stub.add_response("update_model_package", {"ModelPackageArn": arn}, {
            "ModelPackageArn": arn, "ModelApprovalStatus": "Rejected",
            "ApprovalDescription": f"PromotionRolledBack: {reason}; production ddcicd-production is back on old-config"})  # fmt: skip
        call = lambda action, parameters: getattr(client, {"CreateModel": "create_model", "CreateEndpointConfig": "create_endpoint_config",  # noqa: E731
            "ListEndpoints": "list_endpoints", "UpdateEndpoint": "update_endpoint", "DescribeEndpoint": "describe_endpoint",
            "UpdateModelPackage": "update_model_package"}[action])(**parameters)  # fmt: skip
        try:
            deploy_version(config, described, call, timeout=30, poll_seconds=0)
        except RolledBack as error:
            assert "back on old-config" in str(error)
        else:
            raise AssertionError("a rolled-back update must raise RolledBack")
        stub.assert_no_pending_responses()
