"""The Model Registry states: the champion's metrics for Evaluate, every candidate that passes
the quality gate registered as a version, approved when production serves it, rejected with
the decision's reason otherwise. All through `arn:aws:states:::aws-sdk:sagemaker:*`, so the
same ASL runs on AWS and on the local engine (workflow/local/model_registry.py).

    ... -> FindChampion -> HasChampion? -> DescribeChampion | NoChampion -> Evaluate -> QualityGate
    -> CreateModelPackageGroup (refused: DescribeModelPackageGroup) -> HashManifest -> RegisterCandidate -> PrepareLoadTest ...
    ... production InService -> RecordProductionMetrics -> ApproveCandidate -> ...
    a decision -> CandidateRegistered? -> RejectCandidate (ApprovalDescription = "<error>: <cause>") -> DecisionCleanUp

The champion is the newest Approved version of the group (a promotion approves; `ddcicd
models deploy` of an older version rejects the newer approved ones, so the newest Approved
version is the one production serves). Its ModelMetrics.ModelQuality.Statistics is its
evaluation document, which Evaluate compares the candidate with; with no champion the URI
is null and every threshold still applies. The load-test document is the version's
ModelQuality.Constraints: the SLO check of its latency and error rate.

The group is named after the pipeline (`model_package_group(config)`), so no config field.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from workflow.config import PipelineConfig
from workflow.definition.common import _retry, _set
from workflow.definition.endpoints import serving_container

if TYPE_CHECKING:
    from stepfunctions.inputs import ExecutionInput
    from stepfunctions.steps import State

SDK = "arn:aws:states:::aws-sdk:sagemaker:"
REFUSED = ["SageMaker.SageMakerException"]  # how aws-sdk names SageMaker's ValidationException


def model_package_group(config: PipelineConfig) -> str:
    """The model package group of this pipeline: its name, in SageMaker's name alphabet (no underscores)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", config.name).strip("-")[:63] or "ddcicd"


def create_champion_steps(config: PipelineConfig, evaluate: State) -> State:
    """FindChampion -> HasChampion? -> DescribeChampion | NoChampion -> evaluate; sets $.champion.

    $.champion is {"arn", "version", "metrics_uri"}: all null when no version is approved yet.
    """
    from stepfunctions.steps import Choice, ChoiceRule, Pass, Task

    find = Task("FindChampion", resource=SDK + "listModelPackages", result_path="$.champion", parameters={
        "ModelPackageGroupName": model_package_group(config), "ModelApprovalStatus": "Approved",
        "SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": 1,
    })  # fmt: skip
    _set(find, result_selector={"count.$": "States.ArrayLength($.ModelPackageSummaryList)",
                                "versions.$": "$.ModelPackageSummaryList"})  # fmt: skip
    describe = Task("DescribeChampion", resource=SDK + "describeModelPackage", result_path="$.champion",
                    parameters={"ModelPackageName.$": "$.champion.versions[0].ModelPackageArn"})  # fmt: skip
    _set(describe, result_selector={"arn.$": "$.ModelPackageArn", "version.$": "$.ModelPackageVersion",
                                    "metrics_uri.$": "$.ModelMetrics.ModelQuality.Statistics.S3Uri"})  # fmt: skip
    none = Pass("NoChampion", result={"arn": None, "version": None, "metrics_uri": None}, result_path="$.champion")
    has = Choice("HasChampion")
    has.add_choice(ChoiceRule.NumericGreaterThan("$.champion.count", 0), describe)
    has.default_choice(none)
    for step in (find, describe):
        step.add_retry(_retry(config))
    find.next(has)
    describe.next(evaluate)
    none.next(evaluate)
    return find


def create_register_steps(config: PipelineConfig, inputs: ExecutionInput, then: State) -> State:
    """The group (created once, idempotently), the manifest's SHA-256, then the candidate as a
    PendingManualApproval version with its metrics documents and lineage; sets $.candidate.arn."""
    from stepfunctions.steps import Catch, Task

    group = model_package_group(config)
    create_group = Task("CreateModelPackageGroup", resource=SDK + "createModelPackageGroup", result_path=None, parameters={
        "ModelPackageGroupName": group, "ModelPackageGroupDescription": f"candidates of the {config.name} pipeline",
    })  # fmt: skip
    # A refused create is a group that exists already, or a fault the describe then meets.
    describe_group = Task("DescribeModelPackageGroup", resource=SDK + "describeModelPackageGroup",
                          parameters={"ModelPackageGroupName": group}, result_path=None)  # fmt: skip
    create_group.add_catch(Catch(error_equals=REFUSED, next_step=describe_group, result_path=None))
    hash_manifest = Task("HashManifest", resource="arn:aws:states:::aws-sdk:s3:getObject", result_path="$.candidate",
                         parameters={"Bucket": inputs["ProcessedDataBucket"], "Key": inputs["ManifestKey"]})  # fmt: skip
    _set(hash_manifest, result_selector={"dataset_sha256.$": "States.Hash($.Body, 'SHA-256')"})
    hash_manifest.add_retry(_retry(config, ["S3.SdkClientException", "S3.S3Exception", "ThrottlingException"]))
    register = Task("RegisterCandidate", resource=SDK + "createModelPackage", result_path="$.candidate", parameters={
        "ModelPackageGroupName": group,
        "ModelPackageDescription.$": "States.Format('candidate of execution {}', $$.Execution.Name)",
        "InferenceSpecification": {
            "Containers": [{**serving_container(config), "ModelDataUrl.$": "$.training.ModelArtifacts.S3ModelArtifacts"}],
            "SupportedContentTypes": ["application/x-image"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        "ModelMetrics": {"ModelQuality": {
            "Statistics": {"ContentType": "application/json", "S3Uri": inputs["EvaluationUri"]},
            "Constraints": {"ContentType": "application/json", "S3Uri": inputs["LoadTestUri"]},
        }},
        "ModelApprovalStatus": "PendingManualApproval",
        "CustomerMetadataProperties": {
            "ExecutionArn.$": "$$.Execution.Id",
            "DatasetManifestSha256.$": "$.candidate.dataset_sha256",
            "ConfigHash": inputs["ConfigHash"],
            "SourceCommit": inputs["SourceCommit"],
        },
    })  # fmt: skip
    _set(register, result_selector={"arn.$": "$.ModelPackageArn"})
    for step in (create_group, describe_group, register):
        step.add_retry(_retry(config))
    create_group.next(hash_manifest)
    describe_group.next(hash_manifest)
    hash_manifest.next(register)
    register.next(then)
    return create_group


def create_approve_step(config: PipelineConfig, then: State) -> State:
    """ApproveCandidate: production serves the candidate now, so it is the champion."""
    from stepfunctions.steps import Task

    approve = Task("ApproveCandidate", resource=SDK + "updateModelPackage", result_path=None, parameters={
        "ModelPackageArn.$": "$.candidate.arn", "ModelApprovalStatus": "Approved",
        "ApprovalDescription.$": "States.Format('promoted to production by {}', $$.Execution.Id)",
    })  # fmt: skip
    approve.add_retry(_retry(config))
    approve.next(then)
    return approve


def create_reject_steps(config: PipelineConfig, clean_up: State) -> State:
    """CandidateRegistered? -> RejectCandidate -> clean_up: a registered candidate a decision
    turned down is Rejected with the decision's error and cause. Recording it never keeps
    the clean-up from running (a refused update goes on to clean_up, kept in $.reject_error)."""
    from stepfunctions.steps import Catch, Choice, ChoiceRule, Task

    reject = Task("RejectCandidate", resource=SDK + "updateModelPackage", result_path=None, parameters={
        "ModelPackageArn.$": "$.candidate.arn", "ModelApprovalStatus": "Rejected",
        "ApprovalDescription.$": "States.Format('{}: {}', $.error.Error, $.error.Cause)",
    })  # fmt: skip
    reject.add_retry(_retry(config))
    reject.add_catch(Catch(error_equals=["States.ALL"], next_step=clean_up, result_path="$.reject_error"))
    reject.next(clean_up)
    registered = Choice("CandidateRegistered")
    registered.add_choice(ChoiceRule.IsPresent("$.candidate.arn", True), reject)
    registered.default_choice(clean_up)
    return registered
