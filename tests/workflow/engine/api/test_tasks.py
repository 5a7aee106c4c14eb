"""Task tokens over the API: an activity worker written with boto3, and SendTask* for `.waitForTaskToken` tasks."""
from __future__ import annotations

import json
import threading
import time
from typing import Any

from tests.workflow.engine.api.conftest import ACCOUNT, REGION, ROLE, TOKENS
from tests.workflow.engine.api.test_boto3 import error_code, wait_done

def worker(client: Any, activity_arn: str, answers: dict[str, Any], polls: int = 40) -> None:
    """A plain boto3 activity worker: poll, then succeed (doubling x) or fail (x < 0)."""
    for _ in range(polls):
        task = client.get_activity_task(activityArn=activity_arn, workerName="worker-1")
        if not task.get("taskToken"):
            continue
        work = json.loads(task["input"])
        answers.setdefault("inputs", []).append(work)
        if work["x"] < 0:
            client.send_task_failure(taskToken=task["taskToken"], error="NegativeX", cause=f"x was {work['x']}")
        else:
            client.send_task_heartbeat(taskToken=task["taskToken"])
            client.send_task_success(taskToken=task["taskToken"], output=json.dumps({"doubled": work["x"] * 2}))
        return


def test_an_activity_worker_polls_and_completes_tasks(sfn: Any) -> None:
    activity = sfn.create_activity(name="double")
    assert sfn.create_activity(name="double")["activityArn"] == activity["activityArn"]  # idempotent
    assert activity["activityArn"] == f"arn:aws:states:{REGION}:{ACCOUNT}:activity:double"
    assert sfn.describe_activity(activityArn=activity["activityArn"])["name"] == "double"
    assert [item["name"] for item in sfn.list_activities()["activities"]] == ["double"]
    assert sfn.get_activity_task(activityArn=activity["activityArn"]).get("taskToken") is None  # nothing queued: empty after the poll
    definition = {"StartAt": "Work", "States": {"Work": {"Type": "Task", "Resource": activity["activityArn"],
                                                         "TimeoutSeconds": 30, "End": True}}}  # fmt: skip
    machine = sfn.create_state_machine(name="with-activity", definition=json.dumps(definition), roleArn=ROLE)["stateMachineArn"]
    for x, status in ((21, "SUCCEEDED"), (-1, "FAILED")):
        answers: dict[str, Any] = {}
        thread = threading.Thread(target=worker, args=(sfn, activity["activityArn"], answers))
        thread.start()
        execution = sfn.start_execution(stateMachineArn=machine, input=json.dumps({"x": x}))["executionArn"]
        thread.join(30)
        described = wait_done(sfn, execution)
        assert described["status"] == status
        assert answers["inputs"] == [{"x": x}]
        if status == "SUCCEEDED":
            assert json.loads(described["output"]) == {"doubled": 42}
        else:
            assert (described["error"], described["cause"]) == ("NegativeX", "x was -1")
    sfn.delete_activity(activityArn=activity["activityArn"])
    assert error_code(sfn.describe_activity, activityArn=activity["activityArn"]) == "ActivityDoesNotExist"


def test_send_task_success_completes_a_wait_for_task_token_task(sfn: Any) -> None:
    TOKENS.clear()
    definition = {"StartAt": "Ask", "States": {"Ask": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
        "Parameters": {"FunctionName": "remember", "Payload": {"token.$": "$$.Task.Token"}}, "End": True}}}
    machine = sfn.create_state_machine(name="callback", definition=json.dumps(definition), roleArn=ROLE)["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine)["executionArn"]
    deadline = time.monotonic() + 10
    while not TOKENS and time.monotonic() < deadline:
        time.sleep(0.02)
    token = TOKENS[0]
    assert error_code(sfn.send_task_success, taskToken=token, output="{not json") == "InvalidOutput"
    sfn.send_task_heartbeat(taskToken=token)
    sfn.send_task_success(taskToken=token, output='{"approved": true}')
    described = wait_done(sfn, execution)
    assert (described["status"], json.loads(described["output"])) == ("SUCCEEDED", {"approved": True})
    assert error_code(sfn.send_task_success, taskToken=token, output="{}") == "TaskTimedOut"  # answered already
    assert error_code(sfn.send_task_failure, taskToken="not-a-token") == "InvalidToken"
    types = [event["type"] for event in sfn.get_execution_history(executionArn=execution)["events"]]
    assert "TaskSubmitted" in types and types[-2:] == ["TaskStateExited", "ExecutionSucceeded"]
