"""The API through boto3's own stepfunctions client, unchanged: every operation, its errors and its paging."""
from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.workflow.engine.api.conftest import ACCOUNT, REGION, ROLE, pass_machine
from workflow.engine.api import ApiServer


def error_code(call: Any, **arguments: Any) -> str:
    with pytest.raises(ClientError) as raised:
        call(**arguments)
    return raised.value.response["Error"]["Code"]


def wait_done(client: Any, execution_arn: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        described = client.describe_execution(executionArn=execution_arn)
        if described["status"] != "RUNNING" or time.monotonic() > deadline:
            return described
        time.sleep(0.01)


@pytest.fixture
def machine(client: Any) -> str:
    return client.create_state_machine(name="hello", definition=pass_machine({"hello": "world"}), roleArn=ROLE)["stateMachineArn"]


def test_state_machine_lifecycle_uses_the_callers_region_and_account(client: Any, machine: str) -> None:
    assert machine == f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:hello"
    described = client.describe_state_machine(stateMachineArn=machine)
    assert (described["name"], described["roleArn"], described["type"], described["status"]) == ("hello", ROLE, "STANDARD", "ACTIVE")
    assert json.loads(described["definition"])["StartAt"] == "P0"
    client.update_state_machine(stateMachineArn=machine, definition=pass_machine({"hello": "again"}))
    assert "again" in client.describe_state_machine(stateMachineArn=machine)["definition"]
    assert [item["name"] for item in client.list_state_machines()["stateMachines"]] == ["hello"]
    client.delete_state_machine(stateMachineArn=machine)
    assert error_code(client.describe_state_machine, stateMachineArn=machine) == "StateMachineDoesNotExist"
    client.delete_state_machine(stateMachineArn=machine)  # deleting what is gone succeeds, as on AWS


def test_create_is_idempotent_for_the_same_definition_and_refuses_a_different_one(client: Any, machine: str) -> None:
    again = client.create_state_machine(name="hello", definition=pass_machine({"hello": "world"}), roleArn=ROLE)
    assert again["stateMachineArn"] == machine
    with pytest.raises(client.exceptions.StateMachineAlreadyExists) as raised:
        client.create_state_machine(name="hello", definition=pass_machine({"other": 1}), roleArn=ROLE)
    assert raised.value.response["Error"]["Message"] == f"State Machine Already Exists: '{machine}'"


def test_bad_requests_get_aws_error_names(client: Any, machine: str) -> None:
    assert error_code(client.create_state_machine, name="bad name!", definition=pass_machine(), roleArn=ROLE) == "InvalidName"
    assert error_code(client.create_state_machine, name="x", definition='{"StartAt": "Nope", "States": {}}', roleArn=ROLE) == "InvalidDefinition"
    assert error_code(client.describe_state_machine, stateMachineArn="not-an-arn") == "InvalidArn"
    assert error_code(client.start_execution, stateMachineArn=machine, input="{not json") == "InvalidExecutionInput"
    assert error_code(client.describe_execution, executionArn=f"arn:aws:states:{REGION}:{ACCOUNT}:execution:hello:nope") == "ExecutionDoesNotExist"
    assert error_code(client.start_sync_execution, stateMachineArn=machine) == "StateMachineTypeNotSupported"
    assert error_code(client.list_executions, stateMachineArn=machine, nextToken="forged") == "InvalidToken"


def test_unknown_operations_and_unsigned_requests_are_refused_with_aws_errors(server: ApiServer, client: Any) -> None:
    assert error_code(client.list_state_machine_aliases, stateMachineArn=f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:x") == "UnknownOperationException"
    unsigned = requests.post(server.url, data="{}", headers={"X-Amz-Target": "AWSStepFunctions.ListStateMachines",
                                                             "Content-Type": "application/x-amz-json-1.0"})
    assert unsigned.status_code == 403
    assert unsigned.json()["__type"] == "MissingAuthenticationToken"


def test_start_runs_the_execution_and_describe_and_history_show_it(client: Any, machine: str) -> None:
    started = client.start_execution(stateMachineArn=machine, name="run-1", input='{"a": 1}')
    assert started["executionArn"] == f"arn:aws:states:{REGION}:{ACCOUNT}:execution:hello:run-1"
    described = wait_done(client, started["executionArn"])
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {"hello": "world"}
    assert described["startDate"] == started["startDate"]
    assert (described["redriveStatus"], described["redriveCount"]) == ("NOT_REDRIVABLE", 0)
    machine_for = client.describe_state_machine_for_execution(executionArn=started["executionArn"])
    assert machine_for["stateMachineArn"] == machine
    events = client.get_execution_history(executionArn=started["executionArn"])["events"]
    assert [event["type"] for event in events] == ["ExecutionStarted", "PassStateEntered", "PassStateExited", "ExecutionSucceeded"]
    assert json.loads(events[0]["executionStartedEventDetails"]["input"]) == {"a": 1}
    assert events[0]["executionStartedEventDetails"]["roleArn"] == ROLE


def test_start_is_idempotent_while_running_and_a_taken_name_is_execution_already_exists(client: Any) -> None:
    waiting = client.create_state_machine(name="slow", roleArn=ROLE, definition=json.dumps(
        {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 30, "End": True}}}))["stateMachineArn"]
    first = client.start_execution(stateMachineArn=waiting, name="once", input='{"k": 1}')
    again = client.start_execution(stateMachineArn=waiting, name="once", input='{"k": 1}')
    assert again["executionArn"] == first["executionArn"]
    assert error_code(client.start_execution, stateMachineArn=waiting, name="once", input='{"k": 2}') == "ExecutionAlreadyExists"
    stopped = client.stop_execution(executionArn=first["executionArn"], error="Enough", cause="test over")
    assert stopped["stopDate"]
    described = wait_done(client, first["executionArn"])
    assert (described["status"], described["error"], described["cause"]) == ("ABORTED", "Enough", "test over")
    # ended: the same name and input is no longer idempotent
    assert error_code(client.start_execution, stateMachineArn=waiting, name="once", input='{"k": 1}') == "ExecutionAlreadyExists"


def test_list_executions_filters_by_status_and_pages(client: Any, machine: str) -> None:
    arns = [client.start_execution(stateMachineArn=machine, name=f"run-{index}")["executionArn"] for index in range(5)]
    for arn in arns:
        wait_done(client, arn)
    seen, token = [], None
    while True:
        page = client.list_executions(stateMachineArn=machine, maxResults=2, **({"nextToken": token} if token else {}))
        assert len(page["executions"]) <= 2
        seen += [item["executionArn"] for item in page["executions"]]
        token = page.get("nextToken")
        if not token:
            break
    assert seen == list(reversed(arns))  # newest first
    assert len(client.list_executions(stateMachineArn=machine, statusFilter="SUCCEEDED")["executions"]) == 5
    assert client.list_executions(stateMachineArn=machine, statusFilter="FAILED")["executions"] == []
    paged = [item["name"] for page in client.get_paginator("list_executions").paginate(stateMachineArn=machine, PaginationConfig={"PageSize": 3})
             for item in page["executions"]]  # fmt: skip
    assert paged == [f"run-{index}" for index in (4, 3, 2, 1, 0)]


def test_history_pages_in_reverse_and_without_execution_data(client: Any) -> None:
    arn = client.create_state_machine(name="chain", definition=pass_machine({"x": 1}, states=5), roleArn=ROLE)["stateMachineArn"]
    execution = client.start_execution(stateMachineArn=arn, input='{"secret": 1}')["executionArn"]
    wait_done(client, execution)
    forward = client.get_execution_history(executionArn=execution)["events"]
    assert len(forward) == 12
    backward = [event for page in client.get_paginator("get_execution_history").paginate(
        executionArn=execution, reverseOrder=True, PaginationConfig={"PageSize": 5}) for event in page["events"]]  # fmt: skip
    assert [event["id"] for event in backward] == list(range(12, 0, -1))
    bare = client.get_execution_history(executionArn=execution, includeExecutionData=False, maxResults=2)
    assert "input" not in bare["events"][0]["executionStartedEventDetails"]
    assert bare["events"][0]["executionStartedEventDetails"]["roleArn"] == ROLE
    assert "nextToken" in bare


def test_express_runs_synchronously(client: Any) -> None:
    arn = client.create_state_machine(name="quick", type="EXPRESS", definition=pass_machine({"done": True}), roleArn=ROLE)["stateMachineArn"]
    result = client.start_sync_execution(stateMachineArn=arn, input="{}")
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"]) == {"done": True}
    assert ":express:quick:" in result["executionArn"]


def test_a_fault_is_redriven_from_the_failed_state(client: Any, flaky: Any) -> None:
    definition = {"StartAt": "First", "States": {
        "First": {"Type": "Task", "Resource": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:echo", "Next": "Flaky"},
        "Flaky": {"Type": "Task", "Resource": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:flaky", "End": True}}}
    arn = client.create_state_machine(name="faulty", definition=json.dumps(definition), roleArn=ROLE)["stateMachineArn"]
    execution = client.start_execution(stateMachineArn=arn)["executionArn"]
    failed = wait_done(client, execution)
    assert (failed["status"], failed["error"], failed["redriveStatus"]) == ("FAILED", "Flaky", "REDRIVABLE")
    flaky.repaired = True
    assert client.redrive_execution(executionArn=execution)["redriveDate"]
    redriven = wait_done(client, execution)
    assert (redriven["status"], redriven["redriveCount"]) == ("SUCCEEDED", 1)
    entered = [event["stateEnteredEventDetails"]["name"] for event in client.get_execution_history(executionArn=execution)["events"]
               if "stateEnteredEventDetails" in event]  # fmt: skip
    assert entered == ["First", "Flaky", "Flaky"]  # First did not run again
    assert error_code(client.redrive_execution, executionArn=execution) == "ExecutionNotRedrivable"


def test_tags_on_state_machines(client: Any) -> None:
    arn = client.create_state_machine(name="tagged", definition=pass_machine(), roleArn=ROLE,
                                      tags=[{"key": "project", "value": "ddcicd"}])["stateMachineArn"]
    client.tag_resource(resourceArn=arn, tags=[{"key": "stage", "value": "dev"}, {"key": "project", "value": "other"}])
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "project", "value": "other"}, {"key": "stage", "value": "dev"}]
    client.untag_resource(resourceArn=arn, tagKeys=["project"])
    assert client.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "stage", "value": "dev"}]
    too_many = [{"key": f"k{index}", "value": "v"} for index in range(50)]
    assert error_code(client.tag_resource, resourceArn=arn, tags=too_many) == "TooManyTags"
    missing = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:absent"
    assert error_code(client.list_tags_for_resource, resourceArn=missing) == "ResourceNotFound"


def test_validate_state_machine_definition(client: Any) -> None:
    assert client.validate_state_machine_definition(definition=pass_machine())["result"] == "OK"
    bad = json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Missing"}}})
    result = client.validate_state_machine_definition(definition=bad)
    assert result["result"] == "FAIL"
    assert result["diagnostics"][0]["severity"] == "ERROR"
    assert "Missing" in result["diagnostics"][0]["message"]


def test_every_reply_was_checked_against_the_service_model(client: Any, checker: Any, machine: str) -> None:
    client.describe_state_machine(stateMachineArn=machine)
    assert checker.checked == ["CreateStateMachine", "DescribeStateMachine"]
