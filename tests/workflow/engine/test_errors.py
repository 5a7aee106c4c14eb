"""Error names are data: an ErrorName is its wire text, and what the engine records is plain text."""
from __future__ import annotations

import json

from workflow.engine import ErrorName, StatesError


def test_an_error_name_is_its_wire_text() -> None:
    assert ErrorName.TASK_FAILED == "States.TaskFailed"
    assert f"{ErrorName.TIMEOUT}" == "States.Timeout"
    assert json.dumps({"Error": ErrorName.RUNTIME}) == '{"Error": "States.Runtime"}'


def test_a_states_error_keeps_the_name_as_plain_text() -> None:
    error = StatesError(ErrorName.TIMEOUT, "took too long")
    assert type(error.error) is str and error.error == "States.Timeout"
    assert error.to_output() == {"Error": "States.Timeout", "Cause": "took too long"}
    assert StatesError("Custom.Error").to_details() == {"error": "Custom.Error"}

