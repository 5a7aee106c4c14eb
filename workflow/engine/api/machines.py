"""State machine operations: Create/Update/Describe/List/Delete, DescribeStateMachineForExecution, Validate.

CreateStateMachine is idempotent as on AWS: the same name with the same definition, role
and type returns the existing ARN; anything else under that name is
StateMachineAlreadyExists, whose message quotes the ARN (the Data Science SDK's
Workflow.create() reads it from there).
"""
from __future__ import annotations

import json
import re
from typing import Any

from workflow.engine.api import shapes
from workflow.engine.api.backend import Backend
from workflow.engine.api.errors import ApiError
from workflow.engine.api.requests import Request
from workflow.engine.errors import DefinitionError, StateMachineDoesNotExist
from workflow.engine.express import pointer
from workflow.engine.pagination import page

TYPES = ("STANDARD", "EXPRESS")


def _role(request: Request, required: bool) -> str | None:
    role = request.text("roleArn", required)
    if role is not None and not re.fullmatch(r"arn:aws[a-z\-]*:iam::\d{12}:role/.+", role):
        raise ApiError("InvalidArn", f"Invalid Arn: 'Resource type not valid in this context: {role}'")
    return role


def _definition(request: Request, required: bool) -> str | None:
    text = request.text("definition", required)
    if text is not None:
        try:
            json.loads(text)
        except ValueError as error:
            raise ApiError("InvalidDefinition", f"Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: {error}'") from error
    return text


def create_state_machine(backend: Backend, request: Request) -> dict[str, Any]:
    name = request.name()
    definition = _definition(request, True)
    role = _role(request, True)
    kind = request.choice("type", TYPES, "STANDARD")
    tags = request.tags()
    engine = backend.engine(request.caller)
    arn = engine.state_machine_arn(name)
    try:
        existing = engine.describe_state_machine(arn)
    except StateMachineDoesNotExist:
        existing = None
    if existing is not None:
        if (existing["definition"], existing["roleArn"], existing["type"]) != (definition, role, kind):
            raise ApiError("StateMachineAlreadyExists", f"State Machine Already Exists: '{arn}'")
        return {"stateMachineArn": arn, "creationDate": shapes.epoch(existing["creationDate"])}
    engine.create_state_machine(name, definition, role, type=kind)
    if tags:
        backend.tags.tag(arn, tags)
    return {"stateMachineArn": arn, "creationDate": shapes.epoch(engine.describe_state_machine(arn)["creationDate"])}


def update_state_machine(backend: Backend, request: Request) -> dict[str, Any]:
    arn = request.arn("stateMachineArn", "stateMachine")
    definition = _definition(request, False)
    role = _role(request, False)
    if definition is None and role is None:
        raise ApiError("MissingRequiredParameter", "Either the definition or the roleArn must be specified")
    engine = backend.engine(request.caller)
    current = engine.describe_state_machine(arn)
    engine.update_state_machine(arn, definition if definition is not None else current["definition"], role)
    updated = engine.describe_state_machine(arn)
    return {"updateDate": shapes.epoch(updated["updateDate"]), "revisionId": str(updated["revision"])}


def describe_state_machine(backend: Backend, request: Request) -> dict[str, Any]:
    arn = request.arn("stateMachineArn", "stateMachine")
    return shapes.state_machine_description(backend.engine(request.caller).describe_state_machine(arn))


def list_state_machines(backend: Backend, request: Request) -> dict[str, Any]:
    """This caller's account and region only, oldest first (AWS sorts by creation)."""
    prefix = request.caller.arn_prefix()
    machines = [machine for machine in backend.engine(request.caller).list_state_machines()
                if machine["stateMachineArn"].startswith(prefix)]
    items, token = page(machines, request.number("maxResults", 0), request.text("nextToken"), f"machines:{prefix}")
    reply: dict[str, Any] = {"stateMachines": [shapes.state_machine_list_item(machine) for machine in items]}
    if token:
        reply["nextToken"] = token
    return reply


def delete_state_machine(backend: Backend, request: Request) -> dict[str, Any]:
    """Succeeds for a state machine that does not exist, as on AWS; its executions stay readable."""
    arn = request.arn("stateMachineArn", "stateMachine")
    try:
        backend.engine(request.caller).delete_state_machine(arn)
    except StateMachineDoesNotExist:
        return {}
    backend.tags.forget(arn)
    return {}


def describe_state_machine_for_execution(backend: Backend, request: Request) -> dict[str, Any]:
    arn = request.arn("executionArn", "execution", "express")
    machine = backend.engine(request.caller).describe_state_machine_for_execution(arn)
    return {"stateMachineArn": machine["stateMachineArn"], "name": machine["name"], "definition": machine["definition"],
            "roleArn": machine["roleArn"], "updateDate": shapes.epoch(machine["updateDate"]),
            "revisionId": str(machine["revision"])}


def validate_state_machine_definition(backend: Backend, request: Request) -> dict[str, Any]:
    """result OK, or FAIL with one diagnostic per problem (this engine stops at the first)."""
    text = request.text("definition", True)
    kind = request.choice("type", TYPES, "STANDARD")
    request.choice("severity", ("ERROR", "WARNING"))
    try:
        backend.engine(request.caller).validate_for(text, kind)
    except DefinitionError as error:
        location = pointer(error.location) if error.location else None
        diagnostic = {"severity": "ERROR", "code": "SCHEMA_VALIDATION_FAILED", "message": error.message}
        if location:
            diagnostic["location"] = location
        return {"result": "FAIL", "diagnostics": [diagnostic], "truncated": False}
    return {"result": "OK", "diagnostics": [], "truncated": False}
