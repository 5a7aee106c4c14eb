"""The exported ASL: valid for AWS, wired as DESIGN.md says, identical for both engines."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from workflow.config import load_config
from workflow.contracts.algorithms import ALGORITHMS
from workflow.definition import EXECUTION_INPUT_SCHEMA, render_definition
from workflow.naming import execution_input, new_execution_name

ROOT = Path(__file__).resolve().parents[2]
ASL_VALIDATOR = ROOT / "node_modules" / ".bin" / "asl-validator"


@pytest.fixture(scope="module")
def asl() -> dict[str, Any]:
    return render_definition(load_config())


def test_asl_validator_accepts_the_definition(asl: dict[str, Any], tmp_path: Path) -> None:
    if not ASL_VALIDATOR.exists():
        pytest.fail("node_modules/.bin/asl-validator is missing: run `make install` (npm ci)")
    path = tmp_path / "definition.json"
    path.write_text(json.dumps(asl))
    result = subprocess.run([str(ASL_VALIDATOR), "--json-path", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_asl_validator_rejects_a_broken_definition(asl: dict[str, Any], tmp_path: Path) -> None:
    """Guards the test above: the validator really looks at Next targets."""
    broken = json.loads(json.dumps(asl))
    broken["States"]["Train"]["Next"] = "NoSuchState"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    result = subprocess.run([str(ASL_VALIDATOR), "--json-path", str(path)], capture_output=True, text=True)
    assert result.returncode != 0


def _walk(asl: dict[str, Any], start: str) -> list[str]:
    """State names in the order the happy path visits them (first Choice branch taken)."""
    names, current = [], start
    while current:
        names.append(current)
        state = asl["States"][current]
        if state["Type"] == "Choice":
            current = state["Choices"][0]["Next"]
        elif state.get("End") or state["Type"] in {"Succeed", "Fail"}:
            current = None
        else:
            current = state["Next"]
            if current in names:  # a poll loop; leave through the Choice
                break
    return names


def test_happy_path_follows_the_design(asl: dict[str, Any]) -> None:
    assert asl["StartAt"] == "Process"
    path = _walk(asl, "Process")
    expected_order = [
        "Process", "ReadManifest", "SummariseDataset", "Train", "CreateModel", "CreateStagingEndpointConfig", "CreateStagingEndpoint",
        "StartStagingPolls", "DescribeStagingEndpoint", "IsStagingEndpointInService", "FindChampion", "HasChampion",
        "DescribeChampion", "Evaluate", "QualityGate", "CreateModelPackageGroup", "HashManifest", "RegisterCandidate",
        "PrepareLoadTest", "LoadTest", "MergeLoadTest", "SloGate", "CreateProductionEndpointConfig",
        "FindProductionEndpoint", "ProductionEndpointExists", "UpdateProductionEndpoint", "StartProductionPolls",
        "DescribeProductionEndpoint", "IsProductionEndpointInService", "RecordProductionMetrics",
        "ApproveCandidate", "DeleteStagingEndpoint", "PipelineSucceeded",
    ]  # fmt: skip
    assert path == expected_order


def test_no_fault_is_caught_so_a_redrive_resumes_where_it_broke(asl: dict[str, Any]) -> None:
    """Only a refused create (checked and created again), the approval's decisions and the
    decision clean-up catch anything; no Catch names States.ALL, States.TaskFailed or a Lambda error."""
    caught = {}
    for name, state in asl["States"].items():
        for catcher in state.get("Catch", []):
            caught.setdefault(name, set()).update(catcher["ErrorEquals"])
    creates = {name: {"SageMaker.AmazonSageMakerException"} for name in
               ("CreateModel", "CreateStagingEndpointConfig", "CreateStagingEndpoint", "CreateProductionEndpointConfig")}
    assert caught == {**creates, "UpdateProductionEndpoint": {"SageMaker.AmazonSageMakerException"},
                      "CreateModelPackageGroup": {"SageMaker.SageMakerException"},  # exists already: described instead
                      "DecisionCleanUp": {"States.ALL"}, "RejectCandidate": {"States.ALL"}}
    assert asl["States"]["CreateModelPackageGroup"]["Catch"][0]["Next"] == "DescribeModelPackageGroup"
    assert "Catch" not in asl["States"]["DescribeModelPackageGroup"]
    assert asl["States"]["DecisionCleanUp"]["Next"] == "PipelineFailed"
    assert asl["States"]["PipelineFailed"] == {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}


@pytest.mark.parametrize("create", ["CreateModel", "CreateStagingEndpointConfig", "CreateStagingEndpoint",
                                    "CreateProductionEndpointConfig"])  # fmt: skip
def test_a_refused_create_looks_for_its_resource_before_creating_it_again(asl: dict[str, Any], create: str) -> None:
    states = asl["States"]
    label = create.removeprefix("Create")
    [catcher] = states[create]["Catch"]
    assert catcher["Next"] == f"Find{label}"
    find = states[f"Find{label}"]
    assert find["Resource"].startswith("arn:aws:states:::aws-sdk:sagemaker:list")
    assert find["Parameters"]["NameContains.$"].startswith("$$.Execution.Input.")
    assert find["Next"] == f"{label}Exists"
    exists = states[f"{label}Exists"]
    assert exists["Choices"][0]["Next"] == states[create]["Next"]
    again = states[exists["Default"]]
    assert exists["Default"] == f"{create}Again" and "Catch" not in again
    assert again["Next"] == states[create]["Next"]
    assert {key: value for key, value in again.items() if key != "Next"} == {
        key: value for key, value in states[create].items() if key not in ("Next", "Catch")}


def test_a_refused_production_update_checks_whether_a_first_call_went_through(asl: dict[str, Any]) -> None:
    states = asl["States"]
    [catcher] = states["UpdateProductionEndpoint"]["Catch"]
    assert catcher["Next"] == "CheckProductionUpdate"
    assert states["CheckProductionUpdate"]["Resource"].endswith(":describeEndpoint")
    assert "$$.Execution.Input.ProductionEndpointConfigName" in states["CheckProductionUpdate"]["ResultSelector"]["on_this_config.$"]
    started = states["ProductionUpdateStarted"]
    assert started["Choices"][0]["Next"] == "StartProductionPolls"
    assert started["Default"] == "UpdateProductionEndpointAgain" and "Catch" not in states["UpdateProductionEndpointAgain"]
    assert states["UpdateProductionEndpointAgain"]["Parameters"] == states["UpdateProductionEndpoint"]["Parameters"]


def test_decisions_clean_up_staging_and_name_their_error(asl: dict[str, Any]) -> None:
    decisions = {name: state["Result"]["Error"] for name, state in asl["States"].items()
                 if state["Type"] == "Pass" and state.get("ResultPath") == "$.error"}  # fmt: skip
    assert decisions == {
        "ModelRejected": "QualityGateFailed", "SloNotMet": "SloNotMet", "StagingEndpointFailed": "StagingEndpointFailed",
        "StagingEndpointTooSlow": "StagingEndpointNotInService", "ProductionEndpointFailed": "ProductionEndpointFailed",
        "ProductionEndpointTooSlow": "ProductionEndpointNotInService", "ProductionUpdateRolledBack": "ProductionUpdateRolledBack",
    }  # fmt: skip
    for name in decisions:  # a registered candidate is Rejected with the decision's error first
        assert asl["States"][name]["Next"] == "CandidateRegistered"
    registered = asl["States"]["CandidateRegistered"]
    assert registered["Choices"] == [{"Variable": "$.candidate.arn", "IsPresent": True, "Next": "RejectCandidate"}]
    assert registered["Default"] == asl["States"]["RejectCandidate"]["Next"] == "DecisionCleanUp"
    assert asl["States"]["RejectCandidate"]["Parameters"]["ModelApprovalStatus"] == "Rejected"
    assert asl["States"]["DecisionCleanUp"]["Parameters"] == {"EndpointName.$": "$$.Execution.Input['StagingEndpointName']"}
    assert asl["States"]["QualityGate"]["Default"] == "ModelRejected"
    assert asl["States"]["SloGate"]["Default"] == "SloNotMet"


def test_production_counts_as_promoted_only_on_this_executions_config(asl: dict[str, Any]) -> None:
    choice = asl["States"]["IsProductionEndpointInService"]["Choices"]
    assert choice[0]["Next"] == "RecordProductionMetrics"
    assert {"Variable": "$.endpoint_status.EndpointConfigName", "StringEqualsPath": "$.polls.config"} in choice[0]["And"]
    assert choice[1] == {"Variable": "$.endpoint_status.EndpointStatus", "StringEquals": "InService",
                         "Next": "ProductionUpdateRolledBack"}  # fmt: skip
    assert asl["States"]["StartProductionPolls"]["Parameters"]["config.$"] == "$$.Execution.Input.ProductionEndpointConfigName"


def test_approval_waits_for_a_token_before_promotion() -> None:
    asl = render_definition(load_config(None, ["approval.required=true", "approval.timeout_seconds=600"]))
    request = asl["States"]["RequestApproval"]
    assert asl["States"]["SloGate"]["Choices"][0]["Next"] == "RequestApproval"
    assert request["Resource"] == "arn:aws:states:::sns:publish.waitForTaskToken"
    assert request["Next"] == "CreateProductionEndpointConfig"
    assert request["TimeoutSeconds"] == 600
    assert request["Parameters"]["TopicArn"] == "arn:aws:sns:us-east-1:000000000000:ddcicd-approval"
    message = request["Parameters"]["Message"]
    assert message["task_token.$"] == "$$.Task.Token"
    assert message["evaluation"]["accuracy.$"] == "$.evaluation.Payload.accuracy"
    assert message["load_test"]["p99_ms.$"] == "$.load_test.Payload.p99_ms"
    assert "ddcicd approve" in message["commands"]["approve.$"]
    catchers = {tuple(catcher["ErrorEquals"]): catcher["Next"] for catcher in request["Catch"]}
    assert catchers == {("ApprovalRejected",): "CandidateRegistered", ("States.Timeout",): "ApprovalTimedOut"}
    assert asl["States"]["ApprovalTimedOut"]["Result"]["Error"] == "ApprovalTimedOut"
    assert "RequestApproval" not in render_definition(load_config())["States"]
    topic = "arn:aws:sns:eu-west-1:123456789012:approvals"
    configured = render_definition(load_config(None, ["approval.required=true", f"approval.topic_arn={topic}"]))
    assert configured["States"]["RequestApproval"]["Parameters"]["TopicArn"] == topic


def test_quality_gate_uses_the_configured_thresholds() -> None:
    asl = render_definition(load_config(None, ["quality_gate.min_accuracy=0.97", "quality_gate.max_log_loss=0.1"]))
    rule = json.dumps(asl["States"]["QualityGate"]["Choices"][0])
    assert '"NumericGreaterThanEquals": 0.97' in rule
    assert '"NumericLessThanEquals": 0.1' in rule


def test_job_names_are_unique_per_redrive(asl: dict[str, Any]) -> None:
    assert asl["States"]["Train"]["Parameters"]["TrainingJobName.$"].startswith("States.Format(")
    assert "$$.Execution.RedriveCount" in asl["States"]["Train"]["Parameters"]["TrainingJobName.$"]


def test_training_uses_the_built_in_contract(asl: dict[str, Any]) -> None:
    parameters = asl["States"]["Train"]["Parameters"]
    assert parameters["AlgorithmSpecification"]["TrainingImage"].endswith("/image-classification:1")
    assert [channel["ChannelName"] for channel in parameters["InputDataConfig"]] == ["train", "validation"]
    assert {channel["ContentType"] for channel in parameters["InputDataConfig"]} == {"application/x-recordio"}
    assert all(isinstance(value, str) for value in parameters["HyperParameters"].values())


def test_every_execution_input_the_definition_reads_is_generated(asl: dict[str, Any]) -> None:
    text = json.dumps(asl)
    config = load_config()
    generated = execution_input(config, new_execution_name(config), "s3://bucket/raw")
    assert set(generated) == set(EXECUTION_INPUT_SCHEMA)
    for name in EXECUTION_INPUT_SCHEMA:
        if f"Execution.Input['{name}']" in text or f"Execution.Input.{name}" in text:
            assert generated[name]


def test_batch_scoring_is_optional() -> None:
    asl = render_definition(load_config(None, ["batch_score.enabled=true"]))
    assert asl["States"]["RecordProductionMetrics"]["Next"] == "ApproveCandidate"
    assert asl["States"]["ApproveCandidate"]["Next"] == "BatchScore"
    assert asl["States"]["BatchScore"]["Resource"] == "arn:aws:states:::sagemaker:createTransformJob.sync"
    assert asl["States"]["BatchScore"]["Next"] == "AssembleSubmission"
    assert asl["States"]["AssembleSubmission"]["Next"] == "DeleteStagingEndpoint"


def test_rendering_is_deterministic() -> None:
    assert json.dumps(render_definition(load_config())) == json.dumps(render_definition(load_config()))


def test_arns_use_the_configured_regions_partition(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # the SDK alone would take this one
    asl = render_definition(load_config(None, ["aws.region=cn-north-1"]))
    assert asl["States"]["Train"]["Resource"] == "arn:aws-cn:states:::sagemaker:createTrainingJob.sync"


def test_the_pytorch_algorithm_runs_our_trainer_in_script_mode() -> None:
    asl = render_definition(load_config(None, ["training.algorithm=pytorch"]))
    parameters = asl["States"]["Train"]["Parameters"]
    assert "pytorch-training" in parameters["AlgorithmSpecification"]["TrainingImage"]
    assert parameters["HyperParameters"]["sagemaker_program"] == "steps/train.py"
    assert "sourcedir.tar.gz" in parameters["HyperParameters"]["sagemaker_submit_directory.$"]


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_the_model_is_served_by_the_image_of_the_algorithm_that_trained_it(name: str) -> None:
    """Train and CreateModel read one record: the built-in image serves what it trains; a PyTorch
    job's model goes to the PyTorch inference image with the entry point it imports."""
    algorithm = ALGORITHMS[name]
    asl = render_definition(load_config(None, [f"training.algorithm={name}", "aws.region=eu-west-1"]))
    training_image = asl["States"]["Train"]["Parameters"]["AlgorithmSpecification"]["TrainingImage"]
    container = asl["States"]["CreateModel"]["Parameters"]["PrimaryContainer"]
    assert f"/{algorithm.training_image.repository}:" in training_image
    assert f"/{algorithm.serving_image.repository}:" in container["Image"]
    assert ".eu-west-1." in container["Image"]
    if name == "builtin":
        assert container["Image"] == training_image
        assert "Environment" not in container
    else:
        assert container["Image"] != training_image
        assert "pytorch-inference" in container["Image"]
        assert container["Environment"] == {"SAGEMAKER_PROGRAM": algorithm.serving_program,
                                            "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                                            "SAGEMAKER_REGION": "eu-west-1"}  # fmt: skip
