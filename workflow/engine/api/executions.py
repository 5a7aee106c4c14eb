"""Execution operations: Start, StartSync, Stop, Describe, List, GetExecutionHistory, Redrive.

StartExecution is idempotent while the execution runs (same name, same input: the same
ARN back); otherwise a taken name is ExecutionAlreadyExists. StartSyncExecution runs an
EXPRESS machine to its end within the call.
"""
from __future__ import annotations

import json
from typing import Any

from workflow.engine.api import shapes
from workflow.engine.api.backend import Backend
from workflow.engine.api.errors import ApiError
from workflow.engine.api.requests import Request
from workflow.engine.history import ExecutionStatus
from workflow.engine.pagination import page
from workflow.engine.values import DATA_LIMIT_BYTES

INCLUDED_DATA = ("ALL_DATA", "METADATA_ONLY")


def _input(request: Request) -> Any:
    text = request.text("input", default="{}")
    if len(text.encode()) > DATA_LIMIT_BYTES:
        raise ApiError("InvalidExecutionInput", f"Invalid Execution Input: the input is {len(text.encode())} bytes; the limit is {DATA_LIMIT_BYTES}")
    try:
        return json.loads(text)
    except ValueError as error:
        raise ApiError("InvalidExecutionInput", f"Invalid Execution Input: '{text[:200]}': {error}") from error


def start_execution(backend: Backend, request: Request) -> dict[str, Any]:
    machine_arn = request.arn("stateMachineArn", "stateMachine")
    name = request.name(required=False)
    execution_input = _input(request)
    started = backend.engine(request.caller).start(machine_arn, execution_input, name)
    return {"executionArn": started.arn, "startDate": shapes.epoch(started.start_date)}


def start_sync_execution(backend: Backend, request: Request) -> dict[str, Any]:
    machine_arn = request.arn("stateMachineArn", "stateMachine")
    name = request.name(required=False)
    execution_input = _input(request)
    engine = backend.engine(request.caller)
    if engine.describe_state_machine(machine_arn)["type"] != "EXPRESS":
        raise ApiError("StateMachineTypeNotSupported", "This operation is not supported by this type of state machine")
    return shapes.sync_execution(engine.run_execution(machine_arn, execution_input, name))


def stop_execution(backend: Backend, request: Request) -> dict[str, Any]:
    arn = request.arn("executionArn", "execution", "express")
    stopped = backend.engine(request.caller).stop_execution(arn, request.text("error"), request.text("cause"))
    return {"stopDate": shapes.epoch(stopped["stopDate"])}


def describe_execution(backend: Backend, request: Request) -> dict[str, Any]:
    arn = request.arn("executionArn", "execution", "express")
    included = request.choice("includedData", INCLUDED_DATA, "ALL_DATA")
    return shapes.execution_description(backend.engine(request.caller).describe(arn), included)


def list_executions(backend: Backend, request: Request) -> dict[str, Any]:
    """Newest first; statusFilter and redriveFilter narrow the list, maxResults/nextToken page it."""
    machine_arn = request.arn("stateMachineArn", "stateMachine", required=False)
    if machine_arn is None:
        raise ApiError("ValidationException", "Must provide a StateMachine ARN or MapRun ARN")
    status = request.choice("statusFilter", tuple(ExecutionStatus))
    redrive = request.choice("redriveFilter", ("REDRIVEN", "NOT_REDRIVEN"))
    engine = backend.engine(request.caller)
    executions = engine.list_executions(machine_arn, status)
    if redrive is not None:
        executions = [item for item in executions if (item["redriveCount"] > 0) == (redrive == "REDRIVEN")]
    scope = f"executions:{machine_arn}:{status}:{redrive}"
    items, token = page(executions, request.number("maxResults", 0), request.text("nextToken"), scope)
    reply: dict[str, Any] = {"executions": [shapes.execution_list_item(item) for item in items]}
    if token:
        reply["nextToken"] = token
    return reply


def get_execution_history(backend: Backend, request: Request) -> dict[str, Any]:
    arn = request.arn("executionArn", "execution", "express")
    reverse = request.flag("reverseOrder", False)
    include_data = request.flag("includeExecutionData", True)
    history = backend.engine(request.caller).get_execution_history(arn, reverse_order=reverse)["events"]
    scope = f"history:{arn}:{reverse}"
    events, token = page(history, request.number("maxResults", 0), request.text("nextToken"), scope)
    reply: dict[str, Any] = {"events": [shapes.history_event(event, include_data) for event in events]}
    if token:
        reply["nextToken"] = token
    return reply


def redrive_execution(backend: Backend, request: Request) -> dict[str, Any]:
    arn = request.arn("executionArn", "execution", "express")
    if ":express:" in arn:
        raise ApiError("ExecutionNotRedrivable", f"Express executions cannot be redriven: {arn}")
    request.text("clientToken")
    redriven = backend.engine(request.caller).redrive_execution(arn)
    return {"redriveDate": shapes.epoch(redriven["redriveDate"])}
