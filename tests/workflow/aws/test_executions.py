"""start, status, wait, redrive and executions: moto for what it models, Stubber for the rest.

moto's Step Functions records executions but does not run them (their status and history
are canned: SF_EXECUTION_HISTORY_TYPE=FAILURE makes them FAILED), and it has no
RedriveExecution; botocore's Stubber stands in there and checks the exact parameters.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from click.testing import CliRunner

from workflow.aws import clients
from workflow.aws.clients import AwsContext
from workflow.aws.deploy import deploy_state_machine
from workflow.aws.executions import Failure, find_failure, redrive_execution, start_execution, wait_for_execution
from workflow.cli import cli
from workflow.naming import execution_input

PASS_ONLY = {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}
BUCKET = "ddcicd-test-bucket"  # conftest.BUCKET
WHEN = datetime(2026, 11, 24, 6, 0, tzinfo=timezone.utc)


@pytest.fixture
def machine(context: AwsContext) -> str:
    arn, _ = deploy_state_machine(context, PASS_ONLY)
    return arn


def invoke(overrides: list[str], *arguments: str) -> Any:
    return CliRunner().invoke(cli, ["aws", *arguments, *(f"--set={item}" for item in overrides)])


def test_start_gives_the_same_input_as_a_local_run(context: AwsContext, machine: str) -> None:
    started = start_execution(context, f"s3://{BUCKET}/pipeline/datasets/kaggle")
    described = context.client("stepfunctions").describe_execution(executionArn=started.execution_arn)
    assert described["stateMachineArn"] == machine
    assert described["name"] == started.execution_name
    assert started.execution_name.startswith("ddcicd-")
    assert json.loads(described["input"]) == execution_input(context.config, started.execution_name, f"s3://{BUCKET}/pipeline/datasets/kaggle/")


def test_start_command_resolves_a_dataset_name_to_its_prefix(context: AwsContext, machine: str, overrides: list[str]) -> None:
    result = invoke(overrides, "start", "--dataset", "state-farm")
    assert result.exit_code == 0, result.output
    execution_arn = result.stdout.strip()
    described = context.client("stepfunctions").describe_execution(executionArn=execution_arn)
    assert json.loads(described["input"])["RawDataUri"] == f"s3://{BUCKET}/pipeline/datasets/state-farm/"


@pytest.mark.parametrize("arguments", [(), ("--dataset", "a", "--data-uri", "s3://b/c/")])
def test_start_needs_exactly_one_dataset(overrides: list[str], machine: str, arguments: tuple[str, ...]) -> None:
    result = invoke(overrides, "start", *arguments)
    assert result.exit_code == 2
    assert "give exactly one of --dataset NAME" in result.output


def test_start_wait_on_a_failed_run_exits_1_with_the_state_error_and_summary(
    context: AwsContext, machine: str, overrides: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SF_EXECUTION_HISTORY_TYPE", "FAILURE")
    summary_path = tmp_path / "build" / "execution.json"
    result = invoke(overrides, "start", "--dataset", "kaggle", "--wait", "--poll", "0.1", "--summary-out", str(summary_path))
    assert result.exit_code == 1, result.output
    assert "failed in state A State: AnError (ExecutionFailed)" in result.stdout
    assert "cause: An error occurred!" in result.stdout
    assert "FailStateEntered" in result.stdout
    # moto's failed run ends in a Fail state: redrive would only fail again, so a new run is advised.
    assert "start a new run: ddcicd aws start" in result.stderr
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "FAILED"
    assert summary["failure"] == {"state": "A State", "event_type": "ExecutionFailed", "error": "AnError", "cause": "An error occurred!",
                                  "redrivable": False}
    assert summary["input"]["RawDataUri"] == f"s3://{BUCKET}/pipeline/datasets/kaggle/"


def test_status_and_executions_list_the_latest_first(context: AwsContext, machine: str, overrides: list[str]) -> None:
    first = start_execution(context, f"s3://{BUCKET}/d/", name="ddcicd-first")
    start_execution(context, f"s3://{BUCKET}/d/", name="ddcicd-second")
    listing = invoke(overrides, "executions")
    assert listing.exit_code == 0, listing.output
    names = [line.split()[0] for line in listing.stdout.splitlines()]
    assert set(names) == {"ddcicd-first", "ddcicd-second"}
    status = invoke(overrides, "status", "ddcicd-first", "--json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["executionArn"] == first.execution_arn
    latest = invoke(overrides, "status")
    assert latest.stdout.startswith(f"execution {names[0]}: RUNNING")


def test_status_without_executions_says_how_to_start_one(machine: str, overrides: list[str]) -> None:
    result = invoke(overrides, "status")
    assert result.exit_code == 2
    assert "has no executions yet: start one with `ddcicd aws start`" in result.output


def test_wait_reports_each_new_state_until_the_end(context: AwsContext) -> None:
    arn = "arn:aws:states:eu-west-1:123456789012:execution:ddcicd:run-1"
    sfn = context.client("stepfunctions")
    stubber = Stubber(sfn)

    def entered(*names: str) -> dict[str, Any]:
        events = [{"timestamp": WHEN, "type": "TaskStateEntered", "id": index + 2, "stateEnteredEventDetails": {"name": name}}
                  for index, name in enumerate(names)]  # fmt: skip
        return {"events": list(reversed(events))}  # reverseOrder=True: newest first

    history_request = {"executionArn": arn, "reverseOrder": True, "maxResults": 20, "includeExecutionData": False}
    for status, names in (("RUNNING", ("Process",)), ("RUNNING", ("Process",)), ("RUNNING", ("Process", "Train")), ("SUCCEEDED", ("Process", "Train", "DeleteStagingEndpoint"))):
        stubber.add_response("describe_execution", {"executionArn": arn, "stateMachineArn": arn, "status": status, "startDate": WHEN}, {"executionArn": arn})
        stubber.add_response("get_execution_history", entered(*names), history_request)
    seen: list[str] = []
    sleeps: list[float] = []
    with stubber:
        description = wait_for_execution(context, arn, poll_seconds=7, on_state=seen.append, sleep=sleeps.append)
        stubber.assert_no_pending_responses()
    assert description["status"] == "SUCCEEDED"
    assert seen == ["Process", "Train", "DeleteStagingEndpoint"]
    assert sleeps == [7, 7, 7]


def test_redrive_calls_redrive_execution_with_the_arn(context: AwsContext) -> None:
    arn = "arn:aws:states:eu-west-1:123456789012:execution:ddcicd:run-1"
    with Stubber(context.client("stepfunctions")) as stubber:
        stubber.add_response("redrive_execution", {"redriveDate": WHEN}, {"executionArn": arn})
        assert redrive_execution(context, arn)["redriveDate"] == WHEN
        stubber.assert_no_pending_responses()


def test_redrive_command_resolves_a_name_under_the_state_machine(
    context: AwsContext, overrides: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clients.AwsContext, "from_config", classmethod(lambda cls, config: context))
    expected = "arn:aws:states:eu-west-1:123456789012:execution:ddcicd:ddcicd-20261124-060000-abcd"
    with Stubber(context.client("stepfunctions")) as stubber:
        stubber.add_response("redrive_execution", {"redriveDate": WHEN}, {"executionArn": expected})
        result = invoke(overrides, "redrive", "ddcicd-20261124-060000-abcd")
        stubber.assert_no_pending_responses()
    assert result.exit_code == 0, result.output
    assert f"redriving {expected}" in result.stderr


def test_redrive_of_a_succeeded_execution_is_a_one_line_error(
    context: AwsContext, overrides: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clients.AwsContext, "from_config", classmethod(lambda cls, config: context))
    with Stubber(context.client("stepfunctions")) as stubber:
        stubber.add_client_error("redrive_execution", "ExecutionNotRedrivable", "Execution is SUCCEEDED")
        result = invoke(overrides, "redrive", "arn:aws:states:eu-west-1:123456789012:execution:ddcicd:done")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: AWS RedriveExecution: ExecutionNotRedrivable: Execution is SUCCEEDED"


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
    context: AwsContext, overrides: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """moto cannot run the pipeline, so Step Functions is stubbed; SageMaker and autoscaling are moto's."""
    sagemaker = context.client("sagemaker")
    sagemaker.create_model(ModelName="m", ExecutionRoleArn=context.config.aws.sagemaker_role_arn,
                           PrimaryContainer={"Image": "1.dkr.ecr.eu-west-1.amazonaws.com/x:1"})  # fmt: skip
    sagemaker.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[
        {"VariantName": "AllTraffic", "ModelName": "m", "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}])  # fmt: skip
    sagemaker.create_endpoint(EndpointName="ddcicd-production", EndpointConfigName="c")
    monkeypatch.setattr(clients.AwsContext, "from_config", classmethod(lambda cls, config: context))
    machine = "arn:aws:states:eu-west-1:123456789012:stateMachine:ddcicd"
    arn = "arn:aws:states:eu-west-1:123456789012:execution:ddcicd:run"
    described = {"executionArn": arn, "stateMachineArn": machine, "name": "run", "status": "SUCCEEDED", "startDate": WHEN,
                 "stopDate": WHEN, "input": "{}", "output": '{"ok": true}'}  # fmt: skip
    with Stubber(context.client("stepfunctions")) as stubber:
        stubber.add_response("start_execution", {"executionArn": arn, "startDate": WHEN},
                             {"stateMachineArn": machine, "name": ANY, "input": ANY})  # fmt: skip
        stubber.add_response("describe_execution", described, {"executionArn": arn})
        stubber.add_response("get_execution_history", {"events": [
            {"timestamp": WHEN, "type": "SucceedStateEntered", "id": 9, "stateEnteredEventDetails": {"name": "PipelineSucceeded"}}]},
            {"executionArn": arn, "reverseOrder": True, "maxResults": 20, "includeExecutionData": False})  # fmt: skip
        result = invoke(overrides, "start", "--data-uri", f"s3://{BUCKET}/any/", "--wait", "--summary-out", str(tmp_path / "s.json"))
        assert result.exit_code == 0, result.output
        stubber.assert_no_pending_responses()
    assert "PipelineSucceeded" in result.stderr
    assert "autoscaling   endpoint/ddcicd-production/variant/AllTraffic: 1..4 instances" in result.stderr
    assert json.loads((tmp_path / "s.json").read_text())["output"] == {"ok": True}
    targets = context.client("application-autoscaling").describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [target["ResourceId"] for target in targets] == ["endpoint/ddcicd-production/variant/AllTraffic"]
