"""Activity tasks as AWS records them (Activity* events, checked against AWS's recorded histories), their
TimeoutSeconds and HeartbeatSeconds, and EXPRESS state machines refusing activities, `.sync` and
`.waitForTaskToken` with AWS's InvalidDefinition messages."""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable

import pytest
from botocore.exceptions import ClientError

from tests.workflow.engine.api.conftest import ACCOUNT, REGION, ROLE
from tests.workflow.engine.api.test_boto3 import wait_done

INPUT = {"Value1": "Hello", "Value2": "World"}


def activity_machine(sfn: Any, name: str, activity_arn: str, **fields: Any) -> str:
    definition = {"StartAt": "ActivityTask", "States": {"ActivityTask": {"Type": "Task", "Resource": activity_arn,
                                                                         "End": True, **fields}}}  # fmt: skip
    return sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=ROLE)["stateMachineArn"]


def work_on(sfn: Any, activity_arn: str, answer: Callable[[Any, str, Any], None], worker_name: str | None = "worker-1",
            delay: float = 0.0) -> threading.Thread:
    """A boto3 activity worker in a thread: waits `delay` seconds, takes one task, hands it to `answer(client, token, input)`."""
    def run() -> None:
        time.sleep(delay)
        for _ in range(40):
            named = {"workerName": worker_name} if worker_name is not None else {}
            task = sfn.get_activity_task(activityArn=activity_arn, **named)
            if task.get("taskToken"):
                answer(sfn, task["taskToken"], json.loads(task["input"]))
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def succeed(client: Any, token: str, work: Any) -> None:
    client.send_task_success(taskToken=token, output=json.dumps(work))


def history(sfn: Any, execution: str) -> list[dict[str, Any]]:
    """The events without timestamps, details' JSON text decoded (as AWS's recordings show them)."""
    events = []
    for event in sfn.get_execution_history(executionArn=execution)["events"]:
        event = {key: value for key, value in event.items() if key != "timestamp"}
        for key, details in event.items():
            if key.endswith("EventDetails"):
                event[key] = {name: json.loads(value) if name in ("input", "output") else value for name, value in details.items()}
        events.append(event)
    return events


def test_an_activity_task_records_aws_activity_events(sfn: Any) -> None:
    activity = sfn.create_activity(name="recorded")["activityArn"]
    machine = activity_machine(sfn, "recorded", activity, TimeoutSeconds=60, HeartbeatSeconds=10)
    worker = work_on(sfn, activity, succeed)
    execution = sfn.start_execution(stateMachineArn=machine, input=json.dumps(INPUT))["executionArn"]
    worker.join(30)
    assert wait_done(sfn, execution)["status"] == "SUCCEEDED"
    assert history(sfn, execution)[2:] == [  # as AWS recorded test_activity_task_with_heartbeat (LocalStack's snapshot)
        {"id": 3, "previousEventId": 2, "type": "ActivityScheduled", "activityScheduledEventDetails": {
            "heartbeatInSeconds": 10, "input": INPUT, "inputDetails": {"truncated": False}, "resource": activity,
            "timeoutInSeconds": 60}},
        {"id": 4, "previousEventId": 3, "type": "ActivityStarted", "activityStartedEventDetails": {"workerName": "worker-1"}},
        {"id": 5, "previousEventId": 4, "type": "ActivitySucceeded", "activitySucceededEventDetails": {
            "output": INPUT, "outputDetails": {"truncated": False}}},
        {"id": 6, "previousEventId": 5, "type": "TaskStateExited", "stateExitedEventDetails": {
            "name": "ActivityTask", "output": INPUT, "outputDetails": {"truncated": False}}},
        {"id": 7, "previousEventId": 6, "type": "ExecutionSucceeded", "executionSucceededEventDetails": {
            "output": INPUT, "outputDetails": {"truncated": False}}},
    ]  # fmt: skip


def test_a_failed_activity_and_one_taken_without_a_worker_name(sfn: Any) -> None:
    activity = sfn.create_activity(name="failing")["activityArn"]
    machine = activity_machine(sfn, "failing", activity)

    def fail(client: Any, token: str, work: Any) -> None:
        client.send_task_failure(taskToken=token, error="Programmatic Error", cause=json.dumps(work))

    worker = work_on(sfn, activity, fail, worker_name=None)
    execution = sfn.start_execution(stateMachineArn=machine, input=json.dumps(INPUT))["executionArn"]
    worker.join(30)
    assert wait_done(sfn, execution)["status"] == "FAILED"
    events = history(sfn, execution)
    assert [event["type"] for event in events] == ["ExecutionStarted", "TaskStateEntered", "ActivityScheduled",
                                                   "ActivityStarted", "ActivityFailed", "ExecutionFailed"]  # fmt: skip
    assert events[2]["activityScheduledEventDetails"] == {"input": INPUT, "inputDetails": {"truncated": False}, "resource": activity}
    assert events[3]["activityStartedEventDetails"] == {}  # no workerName given: AWS records empty details
    failed = {"error": "Programmatic Error", "cause": json.dumps(INPUT)}
    assert events[4]["activityFailedEventDetails"] == failed and events[4]["previousEventId"] == 4
    assert events[5]["executionFailedEventDetails"] == failed and events[5]["previousEventId"] == 5


def test_an_activity_that_does_not_exist_fails_the_execution_with_states_runtime(sfn: Any) -> None:
    activity = sfn.create_activity(name="gone")["activityArn"]
    machine = activity_machine(sfn, "gone", activity)
    sfn.delete_activity(activityArn=activity)
    execution = sfn.start_execution(stateMachineArn=machine, input=json.dumps(INPUT))["executionArn"]
    described = wait_done(sfn, execution)
    cause = f"An error occurred while executing the state 'ActivityTask' (entered at the event id #2). The activity {activity} does not exist."
    assert (described["status"], described["error"], described["cause"]) == ("FAILED", "States.Runtime", cause)
    assert [event["type"] for event in history(sfn, execution)] == ["ExecutionStarted", "TaskStateEntered", "ExecutionFailed"]


def test_an_activity_nobody_takes_times_out_without_ever_starting(sfn: Any) -> None:
    activity = sfn.create_activity(name="idle")["activityArn"]
    machine = activity_machine(sfn, "idle", activity, TimeoutSeconds=1)
    execution = sfn.start_execution(stateMachineArn=machine)["executionArn"]
    described = wait_done(sfn, execution)
    assert (described["status"], described["error"]) == ("FAILED", "States.Timeout")
    events = history(sfn, execution)
    assert [event["type"] for event in events][2:] == ["ActivityScheduled", "ActivityTimedOut", "ExecutionFailed"]
    assert events[3]["activityTimedOutEventDetails"] == {"error": "States.Timeout"}


def test_heartbeat_seconds_count_from_when_a_worker_takes_the_task(sfn: Any) -> None:
    activity = sfn.create_activity(name="beating")["activityArn"]
    machine = activity_machine(sfn, "beating", activity, TimeoutSeconds=30, HeartbeatSeconds=1)

    def silent(client: Any, token: str, work: Any) -> None:  # takes the task and is never heard of again
        pass

    def beating(client: Any, token: str, work: Any) -> None:  # 2.4 s of work, a heartbeat every 0.4 s
        for _ in range(6):
            time.sleep(0.4)
            client.send_task_heartbeat(taskToken=token)
        client.send_task_success(taskToken=token, output='{"done": true}')

    worker = work_on(sfn, activity, silent)
    execution = sfn.start_execution(stateMachineArn=machine)["executionArn"]
    described = wait_done(sfn, execution)
    worker.join(5)
    assert (described["status"], described["error"]) == ("FAILED", "States.HeartbeatTimeout")
    events = history(sfn, execution)
    assert [event["type"] for event in events][2:] == ["ActivityScheduled", "ActivityStarted", "ActivityTimedOut", "ExecutionFailed"]
    assert events[4]["activityTimedOutEventDetails"] == {"error": "States.HeartbeatTimeout"}
    # a worker that comes 1.5 s late (past HeartbeatSeconds, but no clock ran yet) and then keeps beating succeeds
    worker = work_on(sfn, activity, beating, delay=1.5)
    execution = sfn.start_execution(stateMachineArn=machine)["executionArn"]
    worker.join(30)
    described = wait_done(sfn, execution)
    assert (described["status"], json.loads(described["output"])) == ("SUCCEEDED", {"done": True})


EXPRESS_REFUSALS = [
    ("arn:aws:states:::sqs:sendMessage.waitForTaskToken",
     "Express state machine does not support '.waitForTaskToken' service integration  at /States/Publish/Resource"),
    ("arn:aws:states:::states:startExecution.sync",
     "Express state machine does not support '.sync' service integration at /States/Publish/Resource"),
    (f"arn:aws:states:{REGION}:{ACCOUNT}:activity:review",
     "Express state machine does not support Activity ARN at /States/Publish/Resource"),
]  # fmt: skip


@pytest.mark.parametrize("resource, problem", EXPRESS_REFUSALS)
def test_express_state_machines_refuse_what_waits_for_others(sfn: Any, resource: str, problem: str) -> None:
    """The messages are AWS's, as recorded against AWS (LocalStack's test_sfn_api_express snapshot), two spaces included."""
    definition = json.dumps({"StartAt": "Publish", "States": {"Publish": {"Type": "Task", "Resource": resource, "End": True}}})
    with pytest.raises(ClientError) as refused:
        sfn.create_state_machine(name="express", definition=definition, roleArn=ROLE, type="EXPRESS")
    assert refused.value.response["Error"]["Code"] == "InvalidDefinition"
    assert refused.value.response["Error"]["Message"] == f"Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: {problem}'"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    if "startExecution" not in resource:  # (this test engine has no states:startExecution integration at all)
        assert sfn.create_state_machine(name="standard", definition=definition, roleArn=ROLE)["stateMachineArn"]  # STANDARD may
    validated = sfn.validate_state_machine_definition(definition=definition, type="EXPRESS")
    assert validated["result"] == "FAIL" and validated["diagnostics"][0]["location"] == "/States/Publish/Resource"


def test_express_refusal_reaches_nested_states_and_updates(sfn: Any) -> None:
    plain = {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}
    machine = sfn.create_state_machine(name="express-nested", definition=json.dumps(plain), roleArn=ROLE,
                                       type="EXPRESS")["stateMachineArn"]  # fmt: skip
    nested = {"StartAt": "Fan", "States": {"Fan": {"Type": "Parallel", "End": True, "Branches": [
        plain, {"StartAt": "Job", "States": {"Job": {"Type": "Task", "Resource": "arn:aws:states:::sagemaker:createTrainingJob.sync",
                                                      "End": True}}}]}}}  # fmt: skip
    with pytest.raises(ClientError) as refused:
        sfn.update_state_machine(stateMachineArn=machine, definition=json.dumps(nested))
    assert refused.value.response["Error"]["Code"] == "InvalidDefinition"
    assert refused.value.response["Error"]["Message"].endswith(
        "Express state machine does not support '.sync' service integration at /States/Fan/Branches/1/States/Job/Resource'")
    assert json.loads(sfn.describe_state_machine(stateMachineArn=machine)["definition"]) == plain  # unchanged
