"""The task-token API: SendTaskSuccess/Failure/Heartbeat and their errors, tokens across processes,
stops and redrives (https://docs.aws.amazon.com/step-functions/latest/dg/connect-to-resource.html#connect-wait-token).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from workflow.engine import DefinitionError, Engine, EngineError, SystemClock, VirtualClock
from workflow.engine.callbacks import WaitingTask, new_token
from workflow.engine.errors import ExecutionDoesNotExist, InvalidOutput, InvalidToken, TaskDoesNotExist, TaskTimedOut
from workflow.engine.messaging import Mailbox

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[3]
QUEUE = "https://sqs.us-east-1.amazonaws.com/000000000000/approvals"


def approval_machine(**task_fields: Any) -> dict[str, Any]:
    task = {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
            "Parameters": {"QueueUrl": QUEUE, "MessageBody": {"figures.$": "$.figures", "token.$": "$$.Task.Token"}},
            "ResultPath": "$.approval", "Next": "Promote", **task_fields}
    return {"StartAt": "Approve", "States": {"Approve": task, "Promote": {"Type": "Pass", "End": True}}}


def until(what: str, found: Callable[[], Any], patience: float = 20.0) -> Any:
    deadline = time.monotonic() + patience
    while not (value := found()):
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)
    return value


def first_waiting(engine: Engine, arn: str, other_than: str | None = None) -> WaitingTask:
    return until("a waiting task", lambda: next(
        (task for task in engine.waiting_tasks(arn) if task.token != other_than), None))


def start(engine: Engine, definition: dict[str, Any], name: str = "run") -> str:
    return engine.start_execution(engine.create_state_machine("approval", definition), {"figures": {"accuracy": 0.93}},
                                  name=name)


def test_a_waiting_task_is_listed_with_its_token_parameters_and_deadlines(tmp_path: Path) -> None:
    clock = VirtualClock(start=1_800_000_000.0)
    engine = Engine(tmp_path / "engine.sqlite3", clock=clock)
    arn = start(engine, approval_machine(TimeoutSeconds=3600, HeartbeatSeconds=600))
    task = first_waiting(engine, arn)
    assert (task.execution_arn, task.state_name) == (arn, "Approve")
    assert task.resource == "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
    assert json.loads(task.parameters) == {"QueueUrl": QUEUE, "MessageBody": {"figures": {"accuracy": 0.93}, "token": task.token}}
    assert task.submitted.timestamp() == 1_800_000_000.0
    assert task.timeout_at is not None and task.timeout_at.timestamp() == 1_800_003_600.0
    assert task.heartbeat_deadline is not None and task.heartbeat_deadline.timestamp() == 1_800_000_600.0
    assert json.loads(Mailbox(engine.store).receive(QUEUE)[0]["Body"])["token"] == task.token
    assert engine.waiting_tasks("run") == [task]  # by name too
    engine.send_task_success(task.token, json.dumps({"approved": True}))
    result = engine.wait(arn, timeout=20)
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"])["approval"] == {"approved": True}
    assert engine.waiting_tasks(arn) == []


def test_send_task_errors_are_the_ones_aws_names(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "engine.sqlite3", clock=VirtualClock())
    arn = start(engine, approval_machine())
    token = first_waiting(engine, arn).token
    for text in ("", "not-a-token", "x" * 3000, token + "x"):
        with pytest.raises(InvalidToken):
            engine.send_task_success(text, "{}")
    with pytest.raises(TaskDoesNotExist):
        engine.send_task_heartbeat(new_token())
    with pytest.raises(InvalidOutput):
        engine.send_task_success(token, "{not json")
    with pytest.raises(InvalidOutput):
        engine.send_task_success(token, json.dumps("x" * (300 * 1024)))
    with pytest.raises(EngineError, match="error must be a string of at most 256"):
        engine.send_task_failure(token, "E" * 300)
    assert [task.token for task in engine.waiting_tasks(arn)] == [token]  # none of that answered the task
    engine.send_task_heartbeat(token)
    engine.send_task_success(token, '"approved"')
    assert engine.wait(arn, timeout=20)["status"] == "SUCCEEDED"
    for answer in (lambda: engine.send_task_success(token, "{}"), lambda: engine.send_task_failure(token, "Late"),
                   lambda: engine.send_task_heartbeat(token)):
        with pytest.raises(TaskTimedOut, match="already succeeded"):
            answer()


def test_the_errors_are_engine_errors() -> None:
    for error in (InvalidToken, TaskDoesNotExist, TaskTimedOut, InvalidOutput):
        assert issubclass(error, EngineError)


def test_a_retried_task_gets_a_new_token_and_the_old_one_times_out(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "engine.sqlite3", clock=VirtualClock())
    arn = start(engine, approval_machine(Retry=[{"ErrorEquals": ["Rejected"], "MaxAttempts": 1}]))
    first = first_waiting(engine, arn)
    engine.send_task_failure(first.token, "Rejected", "ask again")
    second = first_waiting(engine, arn, other_than=first.token)
    assert json.loads(second.parameters)["MessageBody"]["token"] == second.token
    with pytest.raises(TaskTimedOut):
        engine.send_task_success(first.token, "{}")
    engine.send_task_success(second.token, '"yes"')
    assert engine.wait(arn, timeout=20)["status"] == "SUCCEEDED"
    bodies = [json.loads(message["Body"])["token"] for message in Mailbox(engine.store).receive(QUEUE)]
    assert bodies == [first.token, second.token]


def test_stop_execution_ends_the_wait_and_the_token(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "engine.sqlite3", clock=VirtualClock())
    arn = start(engine, approval_machine())
    token = first_waiting(engine, arn).token
    engine.stop_execution(arn, "Abandoned", "nobody answered")
    with pytest.raises(TaskTimedOut):  # at once, whether or not the waiting thread has noticed yet
        engine.send_task_success(token, "{}")
    result = engine.wait(arn, timeout=20)
    assert (result["status"], result["error"]) == ("ABORTED", "Abandoned")
    assert engine.waiting_tasks(arn) == []
    types = [event["type"] for event in engine.get_execution_history(arn)["events"]]
    assert types[-3:] == ["TaskStarted", "TaskSubmitted", "ExecutionAborted"]


def test_the_machines_timeout_ends_the_wait(tmp_path: Path) -> None:
    clock = VirtualClock()
    engine = Engine(tmp_path / "engine.sqlite3", clock=clock)
    arn = start(engine, {**approval_machine(), "TimeoutSeconds": 60})
    token = first_waiting(engine, arn).token
    clock.advance(61)
    assert engine.wait(arn, timeout=20)["status"] == "TIMED_OUT"
    with pytest.raises(TaskTimedOut):
        engine.send_task_success(token, "{}")


def test_the_task_token_exists_only_in_callback_tasks(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "engine.sqlite3", clock=VirtualClock(), functions={"echo": lambda event, context: event})
    definition = {"StartAt": "Call", "States": {"Call": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "echo", "Payload": {"token.$": "$$.Task.Token"}}, "End": True}}}
    result = engine.run_execution(engine.create_state_machine("no-token", definition))
    assert (result["status"], result["error"]) == ("FAILED", "States.Runtime")
    assert "$$.Task.Token" in result["cause"]


@pytest.mark.parametrize("resource", ["arn:aws:states:::sagemaker:createTrainingJob.waitForTaskToken",
                                      "arn:aws:states:::dynamodb:putItem.waitForTaskToken"])
def test_resources_without_the_callback_pattern_are_refused(tmp_path: Path, resource: str) -> None:
    engine = Engine(tmp_path / "engine.sqlite3")
    definition = {"StartAt": "Ask", "States": {"Ask": {"Type": "Task", "Resource": resource, "End": True}}}
    with pytest.raises(DefinitionError, match="cannot wait for a task token") as caught:
        engine.create_state_machine("refused", definition)
    assert caught.value.location == "States.Ask.Resource"


def _answer_in_another_process(store: Path, code: str) -> subprocess.CompletedProcess[str]:
    program = f"import json, sys\nfrom workflow.engine import Engine\nengine = Engine({str(store)!r})\n{code}\n"
    return subprocess.run([sys.executable, "-c", program], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=60)


def test_another_process_completes_the_task(tmp_path: Path) -> None:
    store = tmp_path / "engine.sqlite3"
    engine = Engine(store, clock=SystemClock())
    arn = start(engine, approval_machine(HeartbeatSeconds=60))
    token = first_waiting(engine, arn).token
    answered = _answer_in_another_process(store, f"engine.send_task_heartbeat({token!r})\n"
                                                 f"engine.send_task_success({token!r}, json.dumps({{'approved': True}}))")
    assert answered.returncode == 0, answered.stderr
    result = engine.wait(arn, timeout=20)
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"])["approval"] == {"approved": True}
    again = _answer_in_another_process(store, f"engine.send_task_success({token!r}, '{{}}')")
    assert again.returncode == 1 and "TaskTimedOut" in again.stderr


def test_a_stop_from_another_process_invalidates_the_token_at_once(tmp_path: Path) -> None:
    store = tmp_path / "engine.sqlite3"
    engine = Engine(store, clock=SystemClock())
    arn = start(engine, approval_machine())
    token = first_waiting(engine, arn).token
    stopped = _answer_in_another_process(store, f"engine.stop_execution({arn!r})")
    assert stopped.returncode == 0, stopped.stderr
    with pytest.raises(TaskTimedOut):
        engine.send_task_success(token, "{}")
    assert engine.wait(arn, timeout=20)["status"] == "ABORTED"


def test_after_an_engine_kill_a_redrive_waits_again_with_a_new_token(tmp_path: Path) -> None:
    store = tmp_path / "engine.sqlite3"
    log = tmp_path / "engine.log"
    with log.open("w") as stderr:
        process = subprocess.Popen([sys.executable, str(FIXTURES / "callback_run.py"), str(store)], cwd=REPO,
                                   env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=stderr)

    def waiting() -> list[WaitingTask]:
        assert process.poll() is None, f"the engine process ended before its task waited: {log.read_text()}"
        try:
            tasks = Engine(store).waiting_tasks("victim")
        except ExecutionDoesNotExist:
            return []
        return tasks if tasks and Mailbox(store).messages(QUEUE) else []  # the token was sent: TaskSubmitted

    try:
        until("the store", store.exists)
        old = until("the task to wait", waiting)[0]
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    engine = Engine(store, clock=SystemClock())
    assert engine.waiting_tasks("victim") == []  # the dead engine's task no longer waits...
    assert engine.describe_execution("victim")["status"] == "ABORTED"
    with pytest.raises(TaskTimedOut):
        engine.send_task_success(old.token, "{}")  # ...and its token cannot complete anything
    engine.redrive_execution("victim")
    new = first_waiting(engine, "victim", other_than=old.token)
    assert (new.state_name, new.execution_arn) == ("Approve", old.execution_arn)
    assert json.loads(new.parameters)["MessageBody"] == {"figures": {"accuracy": 0.93}, "token": new.token}
    with pytest.raises(TaskTimedOut):
        engine.send_task_success(old.token, "{}")
    engine.send_task_success(new.token, json.dumps({"approved": True}))
    result = engine.wait(old.execution_arn, timeout=20)
    assert (result["status"], result["redriveCount"]) == ("SUCCEEDED", 1)
    assert json.loads(result["output"]) == {"run": 1, "figures": {"accuracy": 0.93}, "approval": {"approved": True}}
    tokens = [json.loads(message["Body"])["token"] for message in Mailbox(store).receive(QUEUE)]
    assert tokens == [old.token, new.token]


def test_a_failing_sibling_branch_ends_the_wait_of_a_parallel_callback(tmp_path: Path) -> None:
    """A Parallel state fails as soon as one branch fails; a branch waiting for its token stops waiting."""
    engine: Engine

    def fail_once_the_other_waits(event: Any, context: Any) -> Any:
        until("the other branch to wait", lambda: engine.waiting_tasks("run"))
        raise RuntimeError("gate broke")

    engine = Engine(tmp_path / "engine.sqlite3", clock=VirtualClock(), functions={"gate": fail_once_the_other_waits})
    approve = {**approval_machine()["States"]["Approve"], "End": True}
    del approve["Next"]
    definition = {"StartAt": "Both", "States": {"Both": {"Type": "Parallel", "End": True, "Branches": [
        {"StartAt": "Gate", "States": {"Gate": {"Type": "Task", "End": True,
                                                "Resource": "arn:aws:lambda:us-east-1:000000000000:function:gate"}}},
        {"StartAt": "Approve", "States": {"Approve": approve}}]}}}
    arn = start(engine, definition)
    result = engine.wait(arn, timeout=20)
    assert (result["status"], result["error"]) == ("FAILED", "RuntimeError")
    token = json.loads(Mailbox(engine.store).receive(QUEUE)[0]["Body"])["token"]
    with pytest.raises(TaskTimedOut):
        engine.send_task_success(token, "{}")


def test_a_failing_map_iteration_aborts_the_iterations_waiting_for_tokens(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "engine.sqlite3", clock=VirtualClock())
    definition = {"StartAt": "Each", "States": {"Each": {
        "Type": "Map", "ItemsPath": "$.items", "End": True,
        "ItemProcessor": {"StartAt": "Approve", "States": {"Approve": {
            "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken", "End": True,
            "Parameters": {"QueueUrl": QUEUE, "MessageBody": {"item.$": "$", "token.$": "$$.Task.Token"}}}}}}}}
    arn = engine.start_execution(engine.create_state_machine("each", definition), {"items": [1, 2, 3]})
    tasks = until("three waiting iterations", lambda: len(engine.waiting_tasks(arn)) == 3 and engine.waiting_tasks(arn))
    engine.send_task_failure(tasks[0].token, "Rejected", "item refused")
    result = engine.wait(arn, timeout=20)
    assert (result["status"], result["error"]) == ("FAILED", "Rejected")
    types = [event["type"] for event in engine.get_execution_history(arn)["events"]]
    assert types.count("MapIterationFailed") == 1 and types.count("MapIterationAborted") == 2
    for task in tasks[1:]:
        with pytest.raises(TaskTimedOut):
            engine.send_task_success(task.token, "{}")
