"""Approving or rejecting a promotion that waits for a person (`approval.required: true`).

    pending = pending_approval(engine, execution)    # None, or the figures, the deadline, the token
    decide(engine, execution, approve=True)           # SendTaskSuccess: the run promotes
    decide(engine, execution, approve=False, reason="p99 too close to the SLO")
                                                       # SendTaskFailure(ApprovalRejected, reason): clean-up

`ddcicd approve` and the console's Approve/Reject buttons both call these, so a decision
reads and is recorded the same way wherever it is made. The waiting task is the
execution's `sns:publish.waitForTaskToken` Task (workflow/definition/approval.py); its
figures are read back from the message it published (the effective Parameters the
engine keeps with the token), so what a person approves is exactly what was sent.
"""
from __future__ import annotations

import getpass
import json
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from workflow.definition.approval import APPROVAL_REJECTED

if TYPE_CHECKING:
    from workflow.engine import Engine

APPROVAL_RESOURCE = ":sns:publish.waitForTaskToken"


class ApprovalError(Exception):
    """Nothing to approve: the execution does not exist, has ended, or is not waiting for an approval."""


@dataclass(frozen=True)
class PendingApproval:
    """A promotion waiting for a decision, with what the request showed."""

    execution_arn: str
    execution_name: str
    state_name: str
    token: str
    requested: datetime
    deadline: datetime | None
    evaluation: dict[str, Any] = field(default_factory=dict)
    load_test: dict[str, Any] = field(default_factory=dict)
    message: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """What was decided, by whom and when (the approval Task's output when approved)."""

    execution_name: str
    approved: bool
    by: str
    at: datetime
    reason: str | None = None

    def output(self) -> dict[str, Any]:
        return {"decision": "approved" if self.approved else "rejected", "by": self.by, "at": self.at.isoformat(),
                "reason": self.reason}  # fmt: skip


def _message(parameters: str) -> dict[str, Any]:
    try:
        sent = json.loads(parameters)
        message = sent.get("Message") if isinstance(sent, dict) else None
        message = json.loads(message) if isinstance(message, str) else message
    except ValueError:
        return {}
    return message if isinstance(message, dict) else {}


def pending_approval(engine: Engine, execution: str) -> PendingApproval | None:
    """The approval `execution` (name or ARN) waits for now, or None when it waits for none.

    Raises ApprovalError when there is no such execution.
    """
    from workflow.engine import EngineError

    try:
        description = engine.describe_execution(execution)
        waiting = engine.waiting_tasks(description["executionArn"])
    except EngineError as error:
        raise ApprovalError(str(error)) from error
    for task in waiting:
        if task.resource.endswith(APPROVAL_RESOURCE):
            message = _message(task.parameters)
            return PendingApproval(
                execution_arn=task.execution_arn, execution_name=description["name"], state_name=task.state_name,
                token=task.token, requested=task.submitted, deadline=task.timeout_at,
                evaluation=message.get("evaluation") or {}, load_test=message.get("load_test") or {}, message=message,
            )  # fmt: skip
    return None


def who() -> str:
    """user@host of whoever runs this process: the approver a CLI decision records."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def decide(engine: Engine, execution: str, approve: bool, reason: str | None = None, by: str | None = None) -> Decision:
    """Approves (SendTaskSuccess) or rejects (SendTaskFailure, error ApprovalRejected, cause the reason)
    the approval `execution` waits for. Raises ApprovalError when it waits for none, or when
    the wait ended meanwhile (the engine's TaskTimedOut / TaskDoesNotExist)."""
    from workflow.engine import EngineError

    pending = pending_approval(engine, execution)
    if pending is None:
        description = engine.describe_execution(execution)
        raise ApprovalError(f"execution {description['name']} is {description['status']} and not waiting for an approval"
                            + ("" if description["status"] == "RUNNING" else
                               f" (redrive it with `ddcicd redrive {description['name']}` to ask again)"))  # fmt: skip
    decision = Decision(pending.execution_name, approve, by or who(), datetime.now(timezone.utc),
                        reason or (None if approve else "rejected without a reason"))
    try:
        if approve:
            engine.send_task_success(pending.token, json.dumps(decision.output()))
        else:
            engine.send_task_failure(pending.token, error=APPROVAL_REJECTED,
                                     cause=f"{decision.reason} (rejected by {decision.by} at {decision.at.isoformat()})")
    except EngineError as error:
        raise ApprovalError(f"the approval of {pending.execution_name} is no longer waiting: {error}") from error
    return decision
