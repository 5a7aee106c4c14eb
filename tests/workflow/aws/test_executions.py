"""start, status, executions, wait, redrive and approve against a real Step Functions API: the local engine's.

The engine's API server runs in a thread (`workflow.engine.api`), reached through
`aws.stepfunctions_endpoint_url`; moto answers S3, IAM, SageMaker and autoscaling. The
executions really run, so a failure, its root cause and a redrive are the engine's own.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner

from workflow.aws.clients import AwsContext
from workflow.aws.deploy import deploy_state_machine
from workflow.aws.executions import Failure, find_failure, start_execution, wait_for_execution
from workflow.cli import cli
from workflow.config import load_config
from workflow.engine import Engine
from workflow.engine.api import ApiServer, Backend
from workflow.engine.history import HistoryStore
from workflow.engine.integrations import LambdaFunctionError
from workflow.naming import execution_input

PASS_ONLY = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}
BUCKET = "ddcicd-test-bucket"  # conftest.BUCKET
FLAKY = "arn:aws:lambda:eu-west-1:000000000000:function:flaky"


class Flaky:
    """A Lambda that fails with Flaky.Broken until repaired."""

    def __init__(self) -> None:
        self.repaired = False
        self.calls = 0

    def __call__(self, event: Any, context: Any) -> Any:
        self.calls += 1
        if not self.repaired:
            raise LambdaFunctionError("Flaky.Broken", "the disk is full")
        return {"ok": True}


@pytest.fixture
def flaky() -> Flaky:
    return Flaky()


@pytest.fixture
def endpoint(tmp_path: Path, flaky: Flaky) -> Iterator[str]:
    def make_engine(store: HistoryStore, region: str, account: str) -> Engine:
        return Engine(store, region=region, account=account, functions={"flaky": flaky, "accept": lambda event, context: {}})

    server = ApiServer(Backend(tmp_path / "engine.sqlite3", make_engine), port=0).start()
    yield server.url
    server.stop()


@pytest.fixture
def local_overrides(overrides: list[str], endpoint: str) -> list[str]:
    return [*overrides, f"aws.stepfunctions_endpoint_url={endpoint}"]


@pytest.fixture
def local(local_overrides: list[str]) -> AwsContext:
    return AwsContext.from_config(load_config(None, local_overrides))


def deployed(context: AwsContext, definition: dict[str, Any]) -> str:
    arn, _ = deploy_state_machine(context, definition)
    return arn


@pytest.fixture
def machine(local: AwsContext) -> str:
    return deployed(local, PASS_ONLY)


def invoke(overrides: list[str], *arguments: str) -> Any:
    return CliRunner().invoke(cli, ["aws", *arguments, *(f"--set={item}" for item in overrides)])


def finished(context: AwsContext, execution_arn: str) -> dict[str, Any]:
    return wait_for_execution(context, execution_arn, poll_seconds=0.02)


def test_the_endpoint_flag_reaches_the_engine(machine: str, overrides: list[str], endpoint: str) -> None:
    result = invoke(overrides, "start", "--data-uri", f"s3://{BUCKET}/d/", "--stepfunctions-endpoint-url", endpoint)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().startswith(machine.replace(":stateMachine:", ":execution:"))


def test_start_gives_the_same_input_as_a_local_run(local: AwsContext, machine: str) -> None:
    started = start_execution(local, f"s3://{BUCKET}/pipeline/datasets/kaggle")
    described = finished(local, started.execution_arn)
    assert described["stateMachineArn"] == machine
    assert described["name"] == started.execution_name
    assert started.execution_name.startswith("ddcicd-")
    assert json.loads(described["input"]) == execution_input(local.config, started.execution_name, f"s3://{BUCKET}/pipeline/datasets/kaggle/")
    assert described["status"] == "SUCCEEDED"


def test_start_command_resolves_a_dataset_name_to_its_prefix(local: AwsContext, machine: str, local_overrides: list[str]) -> None:
    result = invoke(local_overrides, "start", "--dataset", "state-farm")
    assert result.exit_code == 0, result.output
    described = local.client("stepfunctions").describe_execution(executionArn=result.stdout.strip())
    assert json.loads(described["input"])["RawDataUri"] == f"s3://{BUCKET}/pipeline/datasets/state-farm/"


@pytest.mark.parametrize("arguments", [(), ("--dataset", "a", "--data-uri", "s3://b/c/")])
def test_start_needs_exactly_one_dataset(local_overrides: list[str], machine: str, arguments: tuple[str, ...]) -> None:
    result = invoke(local_overrides, "start", *arguments)
    assert result.exit_code == 2
    assert "give exactly one of --dataset NAME" in result.output


def test_start_before_deploy_says_to_deploy(local_overrides: list[str], endpoint: str) -> None:
    result = invoke(local_overrides, "start", "--dataset", "kaggle")
    assert result.exit_code == 2
    assert f"no state machine ddcicd at {endpoint}: deploy it with `ddcicd aws deploy`" in result.stderr


def test_start_wait_on_a_fault_exits_1_with_the_root_cause_and_a_redrive_resumes_it(
    local: AwsContext, local_overrides: list[str], flaky: Flaky, tmp_path: Path
) -> None:
    deployed(local, {"StartAt": "Prepare", "States": {
        "Prepare": {"Type": "Pass", "Result": "ready", "ResultPath": "$.prepared", "Next": "Work"},
        "Work": {"Type": "Task", "Resource": FLAKY, "End": True}}})  # fmt: skip
    summary_path = tmp_path / "build" / "execution.json"
    result = invoke(local_overrides, "start", "--dataset", "kaggle", "--wait", "--poll", "0.1", "--summary-out", str(summary_path))
    assert result.exit_code == 1, result.output
    assert "failed in state Work: Flaky.Broken (LambdaFunctionFailed)" in result.stdout
    assert "LambdaFunctionFailed" in result.stdout.split("last events:")[1]
    name = json.loads(summary_path.read_text())["name"]
    assert f"resume: ddcicd aws redrive {name}" in result.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "FAILED"
    assert summary["failure"]["state"] == "Work" and summary["failure"]["redrivable"] is True
    assert summary["failure"]["cause"] == "the disk is full"

    flaky.repaired = True
    redriven = invoke(local_overrides, "redrive", name, "--wait", "--poll", "0.1")
    assert redriven.exit_code == 0, redriven.output
    assert f"execution {name}: SUCCEEDED (redriven 1x)" in redriven.stdout
    assert flaky.calls == 2
    status = invoke(local_overrides, "status", name, "--json")
    assert json.loads(status.stdout)["redriveCount"] == 1


def test_a_caught_failure_is_not_redrivable(local: AwsContext, local_overrides: list[str]) -> None:
    deployed(local, {"StartAt": "Work", "States": {
        "Work": {"Type": "Task", "Resource": FLAKY, "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "CleanUp"}], "End": True},
        "CleanUp": {"Type": "Pass", "Next": "PipelineFailed"},
        "PipelineFailed": {"Type": "Fail", "Error": "PipelineFailed", "Cause": "see the history"}}})  # fmt: skip
    result = invoke(local_overrides, "start", "--dataset", "kaggle", "--wait", "--poll", "0.1")
    assert result.exit_code == 1, result.output
    assert "failed in state Work: Flaky.Broken (LambdaFunctionFailed)" in result.stdout
    assert "start a new run: ddcicd aws start" in result.stderr


def test_status_and_executions_list_the_latest_first(local: AwsContext, machine: str, local_overrides: list[str]) -> None:
    first = start_execution(local, f"s3://{BUCKET}/d/", name="ddcicd-first")
    finished(local, first.execution_arn)
    second = start_execution(local, f"s3://{BUCKET}/d/", name="ddcicd-second")
    finished(local, second.execution_arn)
    listing = invoke(local_overrides, "executions")
    assert listing.exit_code == 0, listing.output
    assert [line.split()[0] for line in listing.stdout.splitlines()] == ["ddcicd-second", "ddcicd-first"]
    status = invoke(local_overrides, "status", "ddcicd-first", "--json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["executionArn"] == first.execution_arn
    latest = invoke(local_overrides, "status")
    assert latest.stdout.startswith("execution ddcicd-second: SUCCEEDED")


def test_status_without_executions_says_how_to_start_one(machine: str, local_overrides: list[str]) -> None:
    result = invoke(local_overrides, "status")
    assert result.exit_code == 2
    assert "has no executions yet: start one with `ddcicd aws start`" in result.output


def test_wait_reports_each_new_state_until_the_end(local: AwsContext) -> None:
    deployed(local, {"StartAt": "Process", "States": {
        "Process": {"Type": "Wait", "Seconds": 1, "Next": "Train"},
        "Train": {"Type": "Wait", "Seconds": 1, "Next": "DeleteStagingEndpoint"},
        "DeleteStagingEndpoint": {"Type": "Pass", "End": True}}})  # fmt: skip
    started = start_execution(local, f"s3://{BUCKET}/d/")
    seen: list[str] = []
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)

    description = wait_for_execution(local, started.execution_arn, poll_seconds=0.05, on_state=seen.append, sleep=sleep)
    assert description["status"] == "SUCCEEDED"
    assert seen[:2] == ["Process", "Train"] and seen[-1] == "DeleteStagingEndpoint"
    assert set(sleeps) == {0.05}


def test_redrive_of_a_succeeded_execution_is_a_one_line_error(local: AwsContext, machine: str, local_overrides: list[str]) -> None:
    started = start_execution(local, f"s3://{BUCKET}/d/", name="ddcicd-done")
    finished(local, started.execution_arn)
    result = invoke(local_overrides, "redrive", "ddcicd-done")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: AWS RedriveExecution: ExecutionNotRedrivable: ")


def test_approve_and_reject_answer_the_waiting_task_token(local: AwsContext, local_overrides: list[str]) -> None:
    """The token is read from the TaskScheduled parameters where the definition puts $$.Task.Token (Message.task_token)."""
    deployed(local, {"StartAt": "RequestApproval", "States": {"RequestApproval": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken", "ResultPath": "$.approval",
        "Parameters": {"FunctionName": "accept", "Payload": {"Message": {"subject": "approve?", "task_token.$": "$$.Task.Token"}}},
        "Catch": [{"ErrorEquals": ["ApprovalRejected"], "ResultPath": "$.error", "Next": "Rejected"}], "End": True},
        "Rejected": {"Type": "Fail", "Error": "ApprovalRejected"}}})  # fmt: skip
    for arguments, status in ((("--reason", "looks good"), "SUCCEEDED"), (("--reject", "--reason", "too slow"), "FAILED")):
        started = start_execution(local, f"s3://{BUCKET}/d/")
        result = _approve_when_waiting(local_overrides, started.execution_name, arguments)
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == f"{'rejected' if '--reject' in arguments else 'approved'} RequestApproval of {started.execution_name}"
        described = finished(local, started.execution_arn)
        assert described["status"] == status
        if status == "SUCCEEDED":
            assert json.loads(described["output"])["approval"] == {"approved": True, "reason": "looks good"}
        else:
            events = local.client("stepfunctions").get_execution_history(executionArn=started.execution_arn)["events"]
            failed = next(event["taskFailedEventDetails"] for event in events if event["type"] == "TaskFailed")
            assert (failed["error"], failed["cause"]) == ("ApprovalRejected", "too slow")
    result = invoke(local_overrides, "approve", started.execution_name)
    assert result.exit_code == 2
    assert "is FAILED: nothing waits for approval" in result.stderr


def _approve_when_waiting(overrides: list[str], name: str, arguments: tuple[str, ...], timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = invoke(overrides, "approve", name, *arguments)
        if result.exit_code == 0 or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


# ---------------------------------------------------------------- reading the root cause from a history


def event(kind: str, **details: Any) -> dict[str, Any]:
    if kind.endswith("StateEntered"):
        return {"type": kind, "stateEnteredEventDetails": details}
    if kind.endswith("StateExited"):
        return {"type": kind, "stateExitedEventDetails": details}
    field = kind[0].lower() + kind[1:] + "EventDetails"
    return {"type": kind, field: details}


def test_failure_is_the_caught_error_not_the_clean_up_or_a_retried_one() -> None:
    events = [
        event("ExecutionStarted"),
        event("TaskStateEntered", name="Train"),
        event("TaskScheduled", resourceType="sagemaker"),
        event("TaskFailed", error="SageMaker.AmazonSageMakerException", cause="throttled"),
        event("TaskScheduled", resourceType="sagemaker"),  # the Retry
        event("TaskSucceeded"),
        event("TaskStateExited", name="Train"),
        event("TaskStateEntered", name="Evaluate"),
        event("LambdaFunctionScheduled"),
        event("LambdaFunctionFailed", error="Lambda.Unknown", cause="out of memory"),
        event("TaskStateExited", name="Evaluate"),  # caught -> CleanUpAfterFailure
        event("TaskStateEntered", name="CleanUpAfterFailure"),
        event("TaskStateExited", name="CleanUpAfterFailure"),
        event("FailStateEntered", name="PipelineFailed"),
        event("ExecutionFailed", error="Lambda.Unknown", cause="out of memory"),
    ]
    assert find_failure(None, "arn", events) == Failure("Evaluate", "LambdaFunctionFailed", "Lambda.Unknown", "out of memory", redrivable=False)  # type: ignore[arg-type]


def test_failure_of_an_uncaught_state_and_of_the_latest_redrive() -> None:
    first_attempt = [
        event("TaskStateEntered", name="Process"),
        event("TaskFailed", error="States.TaskFailed", cause="disk full"),
        event("ExecutionFailed", error="States.TaskFailed", cause="disk full"),
    ]
    assert find_failure(None, "arn", first_attempt) == Failure("Process", "TaskFailed", "States.TaskFailed", "disk full")  # type: ignore[arg-type]
    redriven = [
        *first_attempt,
        event("ExecutionRedriven"),
        event("TaskStateEntered", name="Process"),
        event("TaskSucceeded"),
        event("TaskStateExited", name="Process"),
        event("TaskStateEntered", name="Train"),
        event("TaskTimedOut", error="States.Timeout", cause=""),
        event("ExecutionFailed", error="States.Timeout"),
    ]
    assert find_failure(None, "arn", redriven) == Failure("Train", "TaskTimedOut", "States.Timeout", "")  # type: ignore[arg-type]
    assert find_failure(None, "arn", [event("ExecutionStarted"), event("ExecutionSucceeded")]) is None  # type: ignore[arg-type]




def test_start_wait_on_success_registers_production_autoscaling(
    local: AwsContext, machine: str, local_overrides: list[str], tmp_path: Path
) -> None:
    """The run on the engine succeeds; SageMaker and autoscaling are moto's (the endpoint as a promotion leaves it)."""
    sagemaker = local.client("sagemaker")
    sagemaker.create_model(ModelName="m", ExecutionRoleArn=local.config.aws.sagemaker_role_arn,
                           PrimaryContainer={"Image": "1.dkr.ecr.eu-west-1.amazonaws.com/x:1"})  # fmt: skip
    sagemaker.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])  # fmt: skip
    sagemaker.create_endpoint(EndpointName="ddcicd-production", EndpointConfigName="c")
    result = invoke(local_overrides, "start", "--data-uri", f"s3://{BUCKET}/any/", "--wait", "--poll", "0.1",
                    "--summary-out", str(tmp_path / "s.json"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert re.search(r"^ +\d+:\d\d  A$", result.stderr, re.MULTILINE), result.stderr
    assert "autoscaling   endpoint/ddcicd-production/variant/AllTraffic: 1..4 instances" in result.stderr
    assert json.loads((tmp_path / "s.json").read_text())["status"] == "SUCCEEDED"
    targets = local.client("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [target["ResourceId"] for target in targets] == ["endpoint/ddcicd-production/variant/AllTraffic"]
