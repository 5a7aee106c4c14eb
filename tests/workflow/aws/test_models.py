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
