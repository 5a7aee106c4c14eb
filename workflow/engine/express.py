"""What an EXPRESS state machine may not use, refused when it is created or updated, as AWS does.

EXPRESS workflows run at most five minutes and keep no history service-side, so Step
Functions refuses the integrations that wait for someone else: a `.sync` job, a
`.waitForTaskToken` callback, and an activity. CreateStateMachine and UpdateStateMachine
answer InvalidDefinition, with the messages AWS gives (recorded against AWS):

    SCHEMA_VALIDATION_FAILED: Express state machine does not support '.sync' service integration at /States/S/Resource
    SCHEMA_VALIDATION_FAILED: Express state machine does not support '.waitForTaskToken' service integration  at /States/S/Resource
    SCHEMA_VALIDATION_FAILED: Express state machine does not support Activity ARN at /States/S/Resource

(the two spaces before "at" in the second are AWS's). States nested in Parallel branches and
Map processors are checked too.
"""
from __future__ import annotations

import re

from workflow.engine.errors import DefinitionError
from workflow.engine.integrations import is_callback
from workflow.engine.jobs import is_sync
from workflow.engine.states import StateMachineDefinition

_ACTIVITY = re.compile(r"arn:[^:]+:states:[^:]*:[^:]*:activity:.+")


class ExpressUnsupported(DefinitionError):
    """An EXPRESS state machine names a resource only STANDARD ones may use; str() is AWS's message."""

    def __init__(self, location: str, message: str, separator: str = " ") -> None:
        super().__init__(location, message)
        self.args = (f"SCHEMA_VALIDATION_FAILED: {message}{separator}at {pointer(location)}",)


def pointer(location: str) -> str:
    """A DefinitionError location as the JSON pointer AWS reports: States.P.Branches[0] -> /States/P/Branches/0."""
    return "/" + re.sub(r"\[(\d+)\]", r".\1", location).replace(".", "/")


def check_express(definition: StateMachineDefinition, where: str = "") -> None:
    """Raises ExpressUnsupported at the first Task (in document order, nested machines included) EXPRESS may not run."""
    for name, state in definition.states.items():
        location = f"{where}States.{name}"
        resource = state.resource or ""
        if state.type == "Task":
            if _ACTIVITY.fullmatch(resource):
                raise ExpressUnsupported(f"{location}.Resource", "Express state machine does not support Activity ARN")
            if is_sync(resource):
                raise ExpressUnsupported(f"{location}.Resource", "Express state machine does not support '.sync' service integration")
            if is_callback(resource):
                raise ExpressUnsupported(f"{location}.Resource", "Express state machine does not support"
                                         " '.waitForTaskToken' service integration", separator="  ")  # fmt: skip
        for index, branch in enumerate(state.branches):
            check_express(branch, f"{location}.Branches[{index}].")
        if state.processor is not None:
            check_express(state.processor, f"{location}.ItemProcessor.")
