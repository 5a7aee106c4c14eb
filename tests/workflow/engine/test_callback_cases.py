"""Conformance-style cases for callbacks, heartbeats and task timeouts: callback_cases/*.json.

The shared corpus (../shared/asl-conformance) has no task-token recordings (its 21 callback
executions were skipped), so these cases are ours. Each file names the AWS documentation
it follows (`follows`) and, where one exists, the AWS recording whose event shapes it
copies (`shape`). A case holds the definition and input, a `script` of what the outside
world does while the execution waits, the expected result, the expected history (event
types in order; ids, previousEventIds and detail fields where given; `exact` for events
whose details must have exactly the listed keys) and the messages the SNS/SQS tasks sent.

Script steps (the engine runs on a virtual clock: time moves only when a step moves it):
    {"answer": "success", "output": X}          SendTaskSuccess to the oldest unanswered waiting token
    {"answer": "failure", "error": E, "cause": C}
    {"answer": "heartbeat"}                     SendTaskHeartbeat, then wait until the task has noticed it
    {"advance": S}                              once a task waits, move the clock S seconds
    {"advance": S, "closes": true}              ... and wait until that ends the task's wait
    {"wait_for": N}                             until N tasks wait at once
Tokens are compared as placeholders: <token:1> is the first token the execution issued.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from workflow.engine import Engine, VirtualClock
from workflow.engine.callbacks import WaitingTask
from workflow.engine.messaging import Mailbox

CASES = sorted((Path(__file__).parent / "callback_cases").glob("*.json"))
PATIENCE = 20.0  # seconds of real time a step may wait for the execution to get somewhere
JSON_FIELDS = ("input", "output", "parameters")


def _functions(kinds: dict[str, str], engine: Callable[[], Engine]) -> dict[str, Any]:
    def echo(event: Any, context: Any) -> Any:
        return event

    def send_task_success(event: Any, context: Any) -> Any:
        engine().send_task_success(event["token"], json.dumps(event["value"]))
        return {"sent": True}

    known = {"echo": echo, "send_task_success": send_task_success}
    return {name: known[kind] for name, kind in kinds.items()}


def _until(what: str, found: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + PATIENCE
    while True:
        value = found()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def _next_waiting(engine: Engine, arn: str, answered: set[str]) -> WaitingTask:
    def waiting() -> WaitingTask | None:
        return next((task for task in engine.waiting_tasks(arn) if task.token not in answered), None)
    return _until("a waiting task", waiting)


def _run_step(engine: Engine, clock: VirtualClock, arn: str, step: dict[str, Any], answered: set[str]) -> None:
    if "wait_for" in step:
        _until(f"{step['wait_for']} waiting tasks", lambda: len(engine.waiting_tasks(arn)) >= step["wait_for"])
        return
    task = _next_waiting(engine, arn, answered)
    if "advance" in step:
        clock.advance(step["advance"])
        if step.get("closes"):  # the move ends the wait: let the task notice before the next step looks
            answered.add(task.token)
            _until("the task to stop waiting", lambda: all(other.token != task.token for other in engine.waiting_tasks(arn)))
    elif step["answer"] == "success":
        engine.send_task_success(task.token, json.dumps(step["output"]))
        answered.add(task.token)
    elif step["answer"] == "failure":
        engine.send_task_failure(task.token, step.get("error"), step.get("cause"))
        answered.add(task.token)
    else:
        engine.send_task_heartbeat(task.token)
        if task.heartbeat_deadline is not None:  # the waiting task restarts its HeartbeatSeconds on its own clock
            _until("the heartbeat to be noticed", lambda: any(
                other.token == task.token and other.heartbeat_deadline != task.heartbeat_deadline
                for other in engine.waiting_tasks(arn)))


def _placeholders(value: Any, tokens: dict[str, str]) -> Any:
    if isinstance(value, str):
        for token, placeholder in tokens.items():
            value = value.replace(token, placeholder)
        return value
    if isinstance(value, dict):
        return {key: _placeholders(item, tokens) for key, item in value.items()}
    if isinstance(value, list):
        return [_placeholders(item, tokens) for item in value]
    return value


def _matches(expected: Any, actual: Any) -> bool:
    if expected == "<any>":
        return actual is not None
    if isinstance(expected, dict):
        return isinstance(actual, dict) and set(expected) == set(actual) and all(
            _matches(value, actual[key]) for key, value in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(map(_matches, expected, actual))
    return expected == actual


def _details(event: dict[str, Any]) -> dict[str, Any]:
    details = next((value for key, value in event.items() if key.endswith("EventDetails")), {})
    return {key: json.loads(value) if key in JSON_FIELDS else value for key, value in details.items()}


def _check_history(expected: list[dict[str, Any]], events: list[dict[str, Any]]) -> None:
    assert [event["type"] for event in events] == [entry["type"] for entry in expected]
    for entry, event in zip(expected, events):
        where = f"event {event['id']} ({event['type']})"
        for key in ("id", "previousEventId"):
            if key in entry:
                assert event[key] == entry[key], f"{where}: {key}"
        details = _details(event)
        for key, value in entry.get("details", {}).items():
            assert _matches(value, details.get(key)), f"{where}: {key} = {details.get(key)!r}, expected {value!r}"
        if entry.get("exact"):
            assert set(details) == set(entry["details"]), f"{where}: details {sorted(details)}"


@pytest.mark.parametrize("path", CASES, ids=[path.stem for path in CASES])
def test_callback_case(path: Path, tmp_path: Path) -> None:
    case = json.loads(path.read_text())
    assert case["follows"], "every case names the AWS documentation it follows"
    clock = VirtualClock()
    engine = Engine(tmp_path / "engine.sqlite3", clock=clock,
                    functions=_functions(case.get("functions", {}), lambda: engine))
    arn = engine.start_execution(engine.create_state_machine("callbacks", case["definition"]), case["input"], name="case")
    answered: set[str] = set()
    for step in case["script"]:
        _run_step(engine, clock, arn, step, answered)
    result = engine.wait(arn, timeout=PATIENCE)

    expected = case["expected"]
    assert result["status"] == expected["status"], result
    for key in ("error", "cause"):
        if key in expected:
            assert result.get(key) == expected[key], result
    if "output" in expected:
        output = json.loads(result["output"])
        if expected.get("output_any_order"):
            assert sorted(output) == sorted(expected["output"])
        else:
            assert output == expected["output"]

    issued = [row[0] for row in engine.store.query("SELECT token FROM task_tokens WHERE execution_arn = ? ORDER BY rowid", (arn,))]
    tokens = {token: f"<token:{index}>" for index, token in enumerate(issued, start=1)}
    if case.get("history") is not None:
        _check_history(case["history"], _placeholders(engine.get_execution_history(arn)["events"], tokens))
    mailbox = Mailbox(engine.store)
    for destination, bodies in case.get("messages", {}).items():
        sent = [json.loads(message["Body"]) for message in mailbox.messages(destination)]
        assert _placeholders(sent, tokens) == bodies
    assert engine.waiting_tasks(arn) == []
