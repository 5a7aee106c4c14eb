"""The pieces of issue 14 that need no pipeline run: the local sns:publish integration, the
approval decision (module and `ddcicd approve`) on a real engine waiting for a real token,
and API fault experiments on the local SageMaker control plane."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from workflow.approval import ApprovalError, decide, pending_approval
from workflow.cli import cli
from workflow.engine import Engine, StatesError, SystemClock, TaskContext
from workflow.home import engine_store_path
from workflow.local.api_faults import ExperimentError, injected_fault, start_experiment, stop_experiment
from workflow.local.endpoints import LocalEndpoints
from workflow.local.sagemaker_control import SageMakerControlPlane
from workflow.local.sns_integration import SnsIntegration, read_messages

TOPIC = "arn:aws:sns:us-east-1:000000000000:ddcicd-approval"
APPROVAL_MACHINE = {"StartAt": "RequestApproval", "States": {
    "RequestApproval": {
        "Type": "Task", "Resource": "arn:aws:states:::sns:publish.waitForTaskToken", "TimeoutSeconds": 60,
        "Parameters": {"TopicArn": TOPIC, "Message": {
            "evaluation": {"accuracy.$": "$.evaluation.accuracy"}, "load_test": {"p99_ms.$": "$.load_test.p99_ms"},
            "execution_name.$": "$$.Execution.Name", "task_token.$": "$$.Task.Token"}},
        "ResultPath": "$.approval", "Next": "Promote",
        "Catch": [{"ErrorEquals": ["ApprovalRejected"], "ResultPath": "$.error", "Next": "Rejected"}]},
    "Promote": {"Type": "Succeed"},
    "Rejected": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}}}  # fmt: skip
FIGURES = {"evaluation": {"accuracy": 0.93}, "load_test": {"p99_ms": 41.5}}


def _engine(home: Path) -> Engine:
    engine = Engine(engine_store_path())
    engine.integrations.register(r"arn:[^:]+:states:::sns:publish(\.waitForTaskToken)?", SnsIntegration(home))
    return engine


def _waiting(engine: Engine, name: str) -> str:
    arn = engine.start_execution(engine.create_state_machine("approval", APPROVAL_MACHINE), FIGURES, name=name)
    deadline = time.monotonic() + 30
    while pending_approval(engine, arn) is None:
        assert time.monotonic() < deadline, engine.describe_execution(arn)
        time.sleep(0.05)
    return arn


def test_publish_writes_the_message_where_a_subscriber_reads_it(isolated_home: Path) -> None:
    context = TaskContext("arn:exec", "Notify", "arn:aws:states:::sns:publish", SystemClock(), threading.Event())
    response = SnsIntegration(isolated_home).invoke("arn:aws:states:::sns:publish",
                                                    {"TopicArn": TOPIC, "Message": {"a": 1}, "Subject": "hi"}, context)  # fmt: skip
    [message] = read_messages(isolated_home, TOPIC)
    assert response["MessageId"] == message["MessageId"] and response["SdkResponseMetadata"]["RequestId"]
    assert json.loads(message["Message"]) == {"a": 1} and message["Subject"] == "hi"
    assert (isolated_home / "sns" / "ddcicd-approval" / f"{response['MessageId']}.json").is_file()
    assert not list((isolated_home / "sns" / "ddcicd-approval").glob("*.tmp*")), "written atomically"
    with pytest.raises(StatesError, match="TopicArn") as refused:
        SnsIntegration(isolated_home).invoke("arn:aws:states:::sns:publish", {"TopicArn": "topic", "Message": "x"}, context)
    assert refused.value.error == "SNS.InvalidParameterException"


def test_approving_sends_the_decision_to_the_waiting_task(isolated_home: Path) -> None:
    engine = _engine(isolated_home)
    arn = _waiting(engine, "to-approve")
    pending = pending_approval(engine, "to-approve")
    assert pending.evaluation == {"accuracy": 0.93} and pending.load_test == {"p99_ms": 41.5}
    assert pending.state_name == "RequestApproval" and pending.deadline is not None
    decision = decide(engine, "to-approve", approve=True, by="tester@here")
    assert engine.wait(arn, timeout=30)["status"] == "SUCCEEDED"
    output = json.loads(engine.describe_execution(arn)["output"])["approval"]
    assert output == {"decision": "approved", "by": "tester@here", "at": decision.at.isoformat(), "reason": None}
    with pytest.raises(ApprovalError, match="is SUCCEEDED and not waiting for an approval"):
        decide(engine, "to-approve", approve=True)
    with pytest.raises(ApprovalError, match="does not exist"):
        pending_approval(engine, "no-such-execution")


def test_ddcicd_approve_rejects_with_the_reason_as_cause(isolated_home: Path) -> None:
    engine = _engine(isolated_home)
    arn = _waiting(engine, "to-reject")
    result = CliRunner().invoke(cli, ["approve", "to-reject", "--reject", "--reason", "p99 too high"])
    assert result.exit_code == 0, result.output
    assert "to-reject waits in RequestApproval" in result.output and "p99 41.5 ms" in result.output
    assert "to-reject: rejected by " in result.output and ": p99 too high" in result.output
    ended = engine.wait(arn, timeout=30)
    assert ended["status"] == "FAILED" and ended["error"] == "ApprovalRejected"
    assert ended["cause"].startswith("p99 too high (rejected by ")
    again = CliRunner().invoke(cli, ["approve", "to-reject"])
    assert again.exit_code == 2 and "not waiting for an approval" in again.output and "ddcicd redrive to-reject" in again.output
    usage = CliRunner().invoke(cli, ["approve", "to-reject", "--reason", "why"])
    assert usage.exit_code == 2 and "--reason goes with --reject" in usage.output


def _control(home: Path) -> tuple[SageMakerControlPlane, TaskContext]:
    context = TaskContext("arn:exec", "S", "r", SystemClock(), threading.Event())
    return SageMakerControlPlane(LocalEndpoints(home)), context


def test_an_api_fault_experiment_refuses_the_named_operations_as_aws_names_them(isolated_home: Path) -> None:
    control, context = _control(isolated_home)
    start_experiment(isolated_home, "sagemaker", ["CreateModel", "ListModels"], "throttle")
    model = {"ModelName": "m1", "PrimaryContainer": {"ModelDataUrl": "s3://b/model.tar.gz"}}
    with pytest.raises(StatesError) as optimized:
        control.invoke("arn:aws:states:::sagemaker:createModel", model, context)
    assert optimized.value.error == "SageMaker.AmazonSageMakerException" and "Error Code: ThrottlingException" in optimized.value.cause
    with pytest.raises(StatesError) as sdk:
        control.invoke("arn:aws:states:::aws-sdk:sagemaker:listModels", {}, context)
    assert sdk.value.error == "SageMaker.SageMakerException" and "Rate exceeded" in sdk.value.cause
    assert control.invoke("arn:aws:states:::aws-sdk:sagemaker:listEndpoints", {}, context) == {"Endpoints": []}
    stop_experiment(isolated_home, "sagemaker")
    assert injected_fault(isolated_home, "sagemaker", "CreateModel") is None
    control.invoke("arn:aws:states:::sagemaker:createModel", model, context)
    with pytest.raises(ExperimentError, match="fault 'flood' is not one of"):
        start_experiment(isolated_home, "sagemaker", ["CreateModel"], "flood")


def test_models_and_endpoint_configs_can_be_found_by_name(isolated_home: Path) -> None:
    control, context = _control(isolated_home)
    for name in ("run-1-model", "run-12-model"):
        control.invoke("arn:aws:states:::sagemaker:createModel",
                       {"ModelName": name, "PrimaryContainer": {"ModelDataUrl": "s3://b/m.tar.gz"}}, context)  # fmt: skip
    control.invoke("arn:aws:states:::sagemaker:createEndpointConfig", {"EndpointConfigName": "run-1-staging-config",
                   "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": "run-1-model"}]}, context)  # fmt: skip
    found: Any = control.invoke("arn:aws:states:::aws-sdk:sagemaker:listModels", {"NameContains": "run-1-"}, context)
    assert [item["ModelName"] for item in found["Models"]] == ["run-1-model"]
    assert found["Models"][0]["ModelArn"].endswith(":model/run-1-model")
    configs = control.invoke("arn:aws:states:::aws-sdk:sagemaker:listEndpointConfigs", {"NameContains": "staging"}, context)
    assert [item["EndpointConfigName"] for item in configs["EndpointConfigs"]] == ["run-1-staging-config"]
    with pytest.raises(StatesError, match="already existing model"):  # what a second create meets: the definition looks first
        control.invoke("arn:aws:states:::sagemaker:createModel",
                       {"ModelName": "run-1-model", "PrimaryContainer": {"ModelDataUrl": "s3://b/m.tar.gz"}}, context)  # fmt: skip
