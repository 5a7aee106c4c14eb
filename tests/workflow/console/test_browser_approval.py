"""Approve and reject a promotion from the console's execution page, in a real browser.

The execution waits in an `sns:publish.waitForTaskToken` Task shaped like the pipeline's
RequestApproval (workflow/definition/approval.py): the page shows the figures the message
carried, and its buttons go through workflow/approval.py as `ddcicd approve` does.
"""
from __future__ import annotations

import json
import time
from typing import Any

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOKEN = "test-token-0123456789"  # conftest.TOKEN
APPROVAL_MACHINE = {
    "StartAt": "RequestApproval",
    "States": {
        "RequestApproval": {
            "Type": "Task", "Resource": "arn:aws:states:::sns:publish.waitForTaskToken", "TimeoutSeconds": 600,
            "Parameters": {"TopicArn": "arn:aws:sns:us-east-1:000000000000:ddcicd-approval", "Message": {
                "evaluation": {"accuracy": 0.93, "log_loss": 0.21, "better_than_production": True},
                "load_test": {"p99_ms": 41.5, "throughput_rps": 180.0, "error_rate": 0.0, "slo_met": True},
                "task_token.$": "$$.Task.Token"}},
            "ResultPath": "$.approval",
            "Catch": [{"ErrorEquals": ["ApprovalRejected"], "ResultPath": "$.error", "Next": "Rejected"}],
            "Next": "Promote"},
        "Promote": {"Type": "Succeed"},
        "Rejected": {"Type": "Fail", "Error": "ApprovalRejected", "Cause": "rejected"},
    },
}  # fmt: skip


def waiting(engine: Any, name: str) -> str:
    arn = engine.start_execution(engine.create_state_machine("approval", APPROVAL_MACHINE), {}, name=name)
    deadline = time.monotonic() + 30
    while not engine.waiting_tasks(arn):
        assert time.monotonic() < deadline, "the approval task never started waiting"
        time.sleep(0.05)
    return arn


def test_approve_from_the_console(setup: Any, console: str, page: Any) -> None:
    arn = waiting(setup.engine, "needs-approval")
    page.goto(f"{console}/?token={TOKEN}#/execution/{arn}")
    page.wait_for_selector("#approval >> text=Waiting for approval before promotion")
    figures = page.text_content("#approval-figures")
    assert "0.93" in figures and "41.5" in figures and "Better than production" in figures
    page.click("#approve-button")
    page.wait_for_selector("h1 .badge.status-succeeded")
    assert page.is_hidden("#approval")
    approval = json.loads(setup.engine.describe_execution(arn)["output"])["approval"]
    assert approval["decision"] == "approved" and approval["by"] == "console"


def test_reject_with_a_reason_from_the_console(setup: Any, console: str, page: Any) -> None:
    arn = waiting(setup.engine, "to-reject")
    page.goto(f"{console}/?token={TOKEN}#/execution/{arn}")
    page.wait_for_selector("#approve-button")
    page.fill("#approval-reason", "p99 too close to the SLO")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#reject-button")
    page.wait_for_selector("h1 .badge.status-failed")
    history = setup.engine.get_execution_history(arn)["events"]
    [failed] = [event for event in history if event["type"] == "TaskFailed"]
    assert failed["taskFailedEventDetails"]["error"] == "ApprovalRejected"
    assert "p99 too close to the SLO" in failed["taskFailedEventDetails"]["cause"]


def test_without_the_token_approval_is_refused(setup: Any, console: str, page: Any) -> None:
    arn = waiting(setup.engine, "read-only-approval")
    page.goto(f"{console}/#/execution/{arn}")
    page.wait_for_selector("#approve-button")
    assert page.is_disabled("#approve-button") and page.is_disabled("#reject-button")
    status = page.evaluate("""async (arn) => (await fetch('/api/approve', {method: 'POST',
                                 body: JSON.stringify({arn, decision: 'approve'}),
                                 headers: {'Content-Type': 'application/json'}})).status""", arn)
    assert status == 403
    assert setup.engine.waiting_tasks(arn), "the approval must still be waiting"
    setup.engine.stop_execution(arn)
