"""/api/approve and the execution's `approval` field over real HTTP (the buttons are in test_browser_approval.py)."""
from __future__ import annotations

import time
from typing import Any, Callable
from urllib.parse import quote

MACHINE = {
    "StartAt": "RequestApproval",
    "States": {
        "RequestApproval": {"Type": "Task", "Resource": "arn:aws:states:::sns:publish.waitForTaskToken",
                            "Parameters": {"TopicArn": "arn:aws:sns:us-east-1:000000000000:ddcicd-approval",
                                           "Message": {"evaluation": {"accuracy": 0.9}, "load_test": {"p99_ms": 12.0},
                                                       "task_token.$": "$$.Task.Token"}},
                            "End": True},
    },
}  # fmt: skip


def waiting(engine: Any) -> str:
    arn = engine.start_execution(engine.create_state_machine("approval", MACHINE), {})
    deadline = time.monotonic() + 30
    while not engine.waiting_tasks(arn):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return arn


def test_the_execution_shows_the_waiting_approval_then_an_approval_ends_it(
        setup: Any, console: str, http: Callable[..., Any], wait: Callable[..., dict], auth: dict[str, str]) -> None:
    arn = waiting(setup.engine)
    approval = http(console, "GET", f"/api/execution?arn={quote(arn)}").json()["approval"]
    assert approval["state"] == "RequestApproval"
    assert approval["evaluation"] == {"accuracy": 0.9} and approval["loadTest"] == {"p99_ms": 12.0}
    reply = http(console, "POST", "/api/approve", {"arn": arn, "decision": "approve"}, auth | {"Origin": console})
    assert reply.status == 200 and reply.json()["decision"] == "approved"
    wait(setup.engine, arn, "SUCCEEDED")
    assert http(console, "GET", f"/api/execution?arn={quote(arn)}").json()["approval"] is None
    again = http(console, "POST", "/api/approve", {"arn": arn, "decision": "approve"}, auth | {"Origin": console})
    assert again.status == 409 and "not waiting for an approval" in again.json()["error"]


def test_a_malformed_decision_is_a_400_and_changes_nothing(
        setup: Any, console: str, http: Callable[..., Any], auth: dict[str, str]) -> None:
    arn = waiting(setup.engine)
    for body in ({"arn": arn, "decision": "maybe"}, {"arn": arn}, {"arn": arn, "decision": "reject", "reason": 7},
                 {"decision": "approve"}):
        reply = http(console, "POST", "/api/approve", body, auth | {"Origin": console})
        assert reply.status == 400, (body, reply.status)
        assert "error" in reply.json()
    assert setup.engine.waiting_tasks(arn)
    setup.engine.stop_execution(arn)
