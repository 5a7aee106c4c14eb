"""The local Model Registry: SageMaker's shapes (checked against botocore's model), versions, filters, errors."""
from __future__ import annotations

import sqlite3
import threading
from typing import Any

import pytest
from botocore.validate import ParamValidator

from workflow.engine import StatesError
from workflow.local.model_registry import ModelRegistry, ModelRegistryIntegration, RegistryError, _service_model


def _check_output(operation: str, response: Any) -> None:
    """The response fits botocore's output shape of `operation` (members, types, lengths)."""
    shape = _service_model().operation_model(operation).output_shape
    report = ParamValidator().validate(response, shape)
    assert not report.has_errors(), report.generate_report()
    missing = [name for name in shape.required_members if name not in response]
    assert not missing


def _package(group: str = "ddcicd", status: str = "PendingManualApproval", run: str = "run-1") -> dict[str, Any]:
    return {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": f"candidate of {run}",
        "InferenceSpecification": {
            "Containers": [{"Image": "ddcicd/image-classification:latest", "ModelDataUrl": f"s3://b/p/{run}/model.tar.gz"}],
            "SupportedContentTypes": ["application/x-image"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        "ModelMetrics": {"ModelQuality": {
            "Statistics": {"ContentType": "application/json", "S3Uri": f"s3://b/p/{run}/evaluation.json"},
            "Constraints": {"ContentType": "application/json", "S3Uri": f"s3://b/p/{run}/load_test.json"},
        }},
        "ModelApprovalStatus": status,
        "CustomerMetadataProperties": {"ExecutionArn": f"arn:aws:states:us-east-1:000000000000:execution:ddcicd:{run}",
                                       "DatasetSha256": "a" * 64, "ConfigHash": "b" * 16, "SourceCommit": "c" * 40},
    }


@pytest.fixture
def registry(tmp_path: Any) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "model_registry.sqlite3")
    _check_output("CreateModelPackageGroup", registry.create_model_package_group({"ModelPackageGroupName": "ddcicd"}))
    return registry


def test_versions_are_numbered_per_group_and_describe_in_sagemakers_shape(registry: ModelRegistry) -> None:
    first = registry.create_model_package(_package(run="run-1"))
    second = registry.create_model_package(_package(run="run-2"))
    _check_output("CreateModelPackage", first)
    assert first["ModelPackageArn"].endswith(":model-package/ddcicd/1") and second["ModelPackageArn"].endswith("/2")
    described = registry.describe_model_package({"ModelPackageName": second["ModelPackageArn"]})
    _check_output("DescribeModelPackage", described)
    assert described["ModelPackageVersion"] == 2 and described["ModelApprovalStatus"] == "PendingManualApproval"
    assert described["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == "s3://b/p/run-2/evaluation.json"
    assert described["CustomerMetadataProperties"]["SourceCommit"] == "c" * 40
    assert registry.describe_model_package({"ModelPackageName": "ddcicd/1"})["ModelPackageArn"] == first["ModelPackageArn"]
    group = registry.describe_model_package_group({"ModelPackageGroupName": "ddcicd"})
    _check_output("DescribeModelPackageGroup", group)


def test_update_sets_approval_and_its_reason(registry: ModelRegistry) -> None:
    arn = registry.create_model_package(_package())["ModelPackageArn"]
    _check_output("UpdateModelPackage", registry.update_model_package(
        {"ModelPackageArn": arn, "ModelApprovalStatus": "Rejected", "ApprovalDescription": "SloNotMet: p99 412 ms > 300 ms"}))
    described = registry.describe_model_package({"ModelPackageName": arn})
    assert (described["ModelApprovalStatus"], described["ApprovalDescription"]) == ("Rejected", "SloNotMet: p99 412 ms > 300 ms")
    assert described["LastModifiedTime"] >= described["CreationTime"]


def test_list_filters_sorts_and_paginates(registry: ModelRegistry) -> None:
    registry.create_model_package_group({"ModelPackageGroupName": "other"})
    registry.create_model_package(_package(group="other"))
    arns = [registry.create_model_package(_package(run=f"run-{i}"))["ModelPackageArn"] for i in range(5)]
    registry.update_model_package({"ModelPackageArn": arns[3], "ModelApprovalStatus": "Approved"})
    everything = registry.list_model_packages({"ModelPackageGroupName": "ddcicd"})
    _check_output("ListModelPackages", everything)
    assert [s["ModelPackageArn"] for s in everything["ModelPackageSummaryList"]] == arns
    approved = registry.list_model_packages({"ModelPackageGroupName": "ddcicd", "ModelApprovalStatus": "Approved"})
    assert [s["ModelPackageArn"] for s in approved["ModelPackageSummaryList"]] == [arns[3]]
    pages, token = [], None
    while True:
        request = {"ModelPackageGroupName": "ddcicd", "SortOrder": "Descending", "MaxResults": 2, **({"NextToken": token} if token else {})}
        page = registry.list_model_packages(request)
        pages.append([s["ModelPackageVersion"] for s in page["ModelPackageSummaryList"]])
        token = page.get("NextToken")
        if token is None:
            break
    assert pages == [[5, 4], [3, 2], [1]]
    assert registry.list_model_packages({})["ModelPackageSummaryList"] == []  # unversioned only, by default, as on AWS
    assert len(registry.list_model_packages({"ModelPackageType": "Versioned"})["ModelPackageSummaryList"]) == 6


@pytest.mark.parametrize("call, request_, message", [
    ("create_model_package_group", {"ModelPackageGroupName": "ddcicd"}, "already exists"),
    ("create_model_package_group", {"ModelPackageGroupName": "bad_name"}, "regular expression"),
    ("describe_model_package_group", {"ModelPackageGroupName": "missing"}, "does not exist"),
    ("create_model_package", {**_package(), "ModelPackageGroupName": "missing"}, "does not exist"),
    ("create_model_package", {**_package(), "ModelApprovalStatus": "Maybe"}, "enum value set"),
    ("create_model_package", {**_package(), "Colour": "red"}, "Unknown parameter"),
    ("describe_model_package", {"ModelPackageName": "ddcicd/9"}, "does not exist"),
    ("update_model_package", {"ModelPackageArn": "ddcicd/1", "ModelApprovalStatus": 1}, "Invalid type"),
    ("list_model_packages", {"MaxResults": 0}, "Invalid value"),
    ("list_model_packages", {"ModelPackageGroupName": "ddcicd", "NextToken": "garbage"}, "pagination token"),
])  # fmt: skip
def test_bad_requests_are_validation_exceptions(registry: ModelRegistry, call: str, request_: Any, message: str) -> None:
    registry.create_model_package(_package())
    with pytest.raises(RegistryError, match=message) as raised:
        getattr(registry, call)(request_)
    assert raised.value.code == "ValidationException"


def test_concurrent_registrations_get_distinct_versions(registry: ModelRegistry) -> None:
    arns: list[str] = []
    threads = [threading.Thread(target=lambda: arns.append(registry.create_model_package(_package())["ModelPackageArn"]))
               for _ in range(8)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(int(arn.rsplit("/", 1)[1]) for arn in arns) == list(range(1, 9))
    with sqlite3.connect(registry.path) as connection:
        assert connection.execute("SELECT count(*) FROM model_packages").fetchone() == (8,)


def test_the_integration_answers_aws_sdk_resources_and_names_errors_as_aws_sdk_does(registry: ModelRegistry) -> None:
    integration = ModelRegistryIntegration(registry)
    resource = "arn:aws:states:::aws-sdk:sagemaker:"
    arn = integration.invoke(resource + "createModelPackage", _package(), None)["ModelPackageArn"]
    integration.invoke(resource + "updateModelPackage", {"ModelPackageArn": arn, "ModelApprovalStatus": "Approved"}, None)
    assert integration.invoke(resource + "describeModelPackage", {"ModelPackageName": arn}, None)["ModelApprovalStatus"] == "Approved"
    with pytest.raises(StatesError) as raised:
        integration.invoke(resource + "createModelPackageGroup", {"ModelPackageGroupName": "ddcicd"}, None)
    assert raised.value.error == "SageMaker.SageMakerException" and "already exists" in raised.value.cause
