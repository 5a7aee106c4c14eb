"""Where a redrive resumes: the top-level state that did not finish, read back from the history.

    start_at, state_input, variables = resume_point(store, record, definition)

A top-level state that succeeded is not run again: the redrive starts at the state after
the last one that exited (with its output as input), or re-enters the one that was
entered and never exited (with the input it had). A Choice is always re-entered (its
next state depends on its input). The variables are those assigned up to that point.
"""
from __future__ import annotations

import json

from workflow.engine.history import ExecutionRecord, HistoryStore
from workflow.engine.states import StateMachineDefinition
from workflow.engine.values import Json


def resume_point(store: HistoryStore, record: ExecutionRecord, definition: StateMachineDefinition) -> tuple[str, Json, dict[str, Json]]:
    """(state to restart, its input, the variables at that point) from the top-level history."""
    entered: tuple[str, Json] | None = None
    exited_output: Json = None
    exited = False
    variables: dict[str, Json] = {}
    for event in store.events(record.arn):
        if event.scope != "" or event.details is None:
            continue
        if event.type.endswith("StateEntered"):
            entered = (event.details["name"], json.loads(event.details["input"]))
            exited = False
        elif event.type.endswith("StateExited"):
            exited = True
            exited_output = json.loads(event.details["output"])
            for name, text in (event.details.get("assignedVariables") or {}).items():
                variables[name] = json.loads(text)
    if entered is None:
        return definition.start_at, record.input, variables
    name, state_input = entered
    state = definition.states[name]
    if exited and state.next is not None and state.type != "Choice":
        return state.next, exited_output, variables
    return name, state_input, variables
