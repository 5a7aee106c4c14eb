"""Executions on AWS: start with the same input as a local run, follow, explain, redrive.

    started = start_execution(context, "s3://bucket/ddcicd/datasets/kaggle/")
    description = wait_for_execution(context, started.execution_arn, on_state=print)
    failure = find_failure(context, started.execution_arn)   # state, error, cause
    redrive_execution(context, started.execution_arn)

An execution is named by its ARN or by its name alone (the state machine is config.name).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from workflow.aws.clients import AwsContext, AwsError
from workflow.naming import execution_input, new_execution_name

FINISHED = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
# History event types that end a task, a state or the execution with an error.
_FAILURE_SUFFIXES = ("Failed", "TimedOut", "Aborted")


@dataclass(frozen=True)
class StartedExecution:
    execution_arn: str
    execution_name: str
    input: dict[str, str]


@dataclass(frozen=True)
class Failure:
    """Where an execution failed and why, read from its event history."""

    state: str | None
    event_type: str
    error: str
    cause: str
    # False when the error was caught and the run ended in a Fail state (PipelineFailed):
    # redriving reruns only that Fail state, so a new execution is the way forward.
    redrivable: bool = True


def start_execution(context: AwsContext, raw_data_uri: str, name: str | None = None) -> StartedExecution:
    """StartExecution with naming.execution_input(): the same input `ddcicd run` gives the local engine."""
    if not raw_data_uri.startswith("s3://"):
        raise AwsError(f"dataset {raw_data_uri!r} must be an s3:// prefix")
    execution_name = name or new_execution_name(context.config)
    run_input = execution_input(context.config, execution_name, raw_data_uri)
    response = context.client("stepfunctions").start_execution(
        stateMachineArn=context.state_machine_arn(), name=execution_name, input=json.dumps(run_input)
    )
    return StartedExecution(response["executionArn"], execution_name, run_input)


def resolve_execution(context: AwsContext, identifier: str | None) -> str:
    """An ARN as is, a name -> its ARN under this state machine, None -> the latest execution."""
    if identifier and identifier.startswith("arn:"):
        return identifier
    if identifier:
        return context.execution_arn(identifier)
    latest = list_executions(context, limit=1)
    if not latest:
        raise AwsError(f"state machine {context.config.name} has no executions yet: start one with `ddcicd aws start`")
    return latest[0]["executionArn"]


def list_executions(context: AwsContext, limit: int = 20) -> list[dict[str, Any]]:
    """Newest first (ListExecutions' own order)."""
    paginator = context.client("stepfunctions").get_paginator("list_executions")
    found: list[dict[str, Any]] = []
    for page in paginator.paginate(stateMachineArn=context.state_machine_arn(), PaginationConfig={"MaxItems": limit}):
        found.extend(page["executions"])
    return found[:limit]


def describe_execution(context: AwsContext, execution_arn: str) -> dict[str, Any]:
    return context.client("stepfunctions").describe_execution(executionArn=execution_arn)


def history(context: AwsContext, execution_arn: str) -> list[dict[str, Any]]:
    """The whole event history, oldest first (redriven executions keep their earlier events)."""
    paginator = context.client("stepfunctions").get_paginator("get_execution_history")
    events: list[dict[str, Any]] = []
    for page in paginator.paginate(executionArn=execution_arn, includeExecutionData=True):
        events.extend(page["events"])
    return events


def current_state(context: AwsContext, execution_arn: str) -> str | None:
    """The state most recently entered (a single short history read, newest first)."""
    response = context.client("stepfunctions").get_execution_history(
        executionArn=execution_arn, reverseOrder=True, maxResults=20, includeExecutionData=False
    )
    for event in response["events"]:
        details = event.get("stateEnteredEventDetails")
        if details:
            return details["name"]
    return None


def wait_for_execution(
    context: AwsContext,
    execution_arn: str,
    poll_seconds: float = 15.0,
    on_state: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll DescribeExecution until the execution ends; `on_state` hears each newly entered state."""
    last_state: str | None = None
    while True:
        description = describe_execution(context, execution_arn)
        state = current_state(context, execution_arn)
        if state and state != last_state and on_state is not None:
            on_state(state)
        last_state = state or last_state
        if description["status"] in FINISHED:
            return description
        sleep(poll_seconds)


def _details(event: dict[str, Any]) -> dict[str, Any]:
    """The one `...EventDetails` entry every history event carries (or {})."""
    return next((value for key, value in event.items() if key.endswith("EventDetails") and isinstance(value, dict)), {})


def find_failure(context: AwsContext, execution_arn: str, events: list[dict[str, Any]] | None = None) -> Failure | None:
    """The root cause: the first failure that was not recovered by a Retry, with its state.

    Walking the history forward: a failure followed by another attempt in the same state
    (a new *Scheduled/*Started event) was retried and is forgotten; a failure whose state
    then exits was caught (here: routed to CleanUpAfterFailure), and the first such one is
    the root cause; otherwise the failure in the state that never exited stopped the run.
    """
    events = events if events is not None else history(context, execution_arn)
    state: str | None = None
    entered_kind = ""
    pending: Failure | None = None
    caught: Failure | None = None
    for event in events:
        kind = event["type"]
        details = _details(event)
        if kind == "ExecutionRedriven":
            pending = caught = None  # an earlier attempt's story; explain the latest one
        elif kind.endswith("StateEntered"):
            state, entered_kind, pending = details.get("name"), kind, None
        elif kind.endswith(("Scheduled", "Started")):
            pending = None  # another attempt: the earlier failure was retried
        elif kind.endswith("StateExited"):
            if pending is not None and caught is None:
                caught = Failure(pending.state, pending.event_type, pending.error, pending.cause, redrivable=False)
            pending = None
        elif kind.endswith(_FAILURE_SUFFIXES) and not kind.startswith("Execution") and pending is None:
            pending = Failure(state, kind, details.get("error", ""), details.get("cause", ""))
    if caught is not None or pending is not None:
        return caught or pending
    ended = next((event for event in reversed(events) if event["type"].startswith("Execution") and event["type"].endswith(_FAILURE_SUFFIXES)), None)
    if ended is None:
        return None
    details = _details(ended)
    return Failure(state, ended["type"], details.get("error", ""), details.get("cause", ""),
                   redrivable=entered_kind != "FailStateEntered")  # fmt: skip


def redrive_execution(context: AwsContext, execution_arn: str) -> dict[str, Any]:
    """RedriveExecution: reruns from the failed state, keeping every state that succeeded."""
    return context.client("stepfunctions").redrive_execution(executionArn=execution_arn)


def summary(description: dict[str, Any], failure: Failure | None) -> dict[str, Any]:
    """The build artifact: what ran, how it ended, and why if it failed."""
    def text(value: Any) -> Any:
        return value.isoformat() if hasattr(value, "isoformat") else value

    output = description.get("output")
    return {
        "executionArn": description["executionArn"],
        "name": description.get("name"),
        "status": description["status"],
        "startDate": text(description.get("startDate")),
        "stopDate": text(description.get("stopDate")),
        "redriveCount": description.get("redriveCount", 0),
        "input": json.loads(description.get("input") or "{}"),
        "output": json.loads(output) if output else None,
        "failure": asdict(failure) if failure else None,
    }
