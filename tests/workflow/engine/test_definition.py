"""Registration-time validation: every message names the state and field."""
from __future__ import annotations

import json
from itertools import product
from pathlib import Path

import pytest

from workflow.engine import DefinitionError, Engine
from workflow.engine.definition import STATE_TYPES
from workflow.engine.interpreter import HANDLERS
from workflow.engine.states import QueryLanguage


def machine(states: dict, start: str = "A", **extra: object) -> dict:
    return {"StartAt": start, "States": states, **extra}


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return Engine(tmp_path / "engine.sqlite3", functions={"known": lambda event, context: event})


@pytest.mark.parametrize(
    ("definition", "location", "text"),
    [
        (machine({"A": {"Type": "Pass", "Next": "B"}}), "States.A.Next", "'B' is not a state"),
        (machine({"A": {"Type": "Pass", "End": True}}, start="Z"), "StartAt", "'Z' is not one of the states"),
        (machine({"A": {"Type": "Pass", "End": True}, "B": {"Type": "Pass", "End": True}}), "States.B", "not reachable"),
        (machine({"A": {"Type": "Pass"}}), "States.A", "exactly one of Next"),
        (machine({"A": {"Type": "Sleep", "End": True}}), "States.A.Type", "'Sleep' is not a state type"),
        (machine({"A": {"Type": "Pass", "InputPath": "a.b", "End": True}}), "States.A.InputPath", "not a valid JSONPath"),
        (machine({"A": {"Type": "Pass", "ResultPath": "$.a[*]", "End": True}}), "States.A.ResultPath", "reference path"),
        (machine({"A": {"Type": "Pass", "Parameters": {"x.$": "States.Nope()"}, "End": True}}), "States.A.Parameters.x.$", "unknown intrinsic"),
        (machine({"A": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": True,
                         "Retry": [{"ErrorEquals": ["States.ALL"], "BackoffRate": 0.5}]}}), "States.A.Retry[0].BackoffRate", ">= 1.0"),
        (machine({"A": {"Type": "Task", "Resource": "arn:aws:states:::dynamodb:putItem", "End": True}}), "States.A.Resource",
         "supported: "),
        (machine({"A": {"Type": "Choice", "Choices": [{"Variable": "$.x", "Next": "A"}]}}), "States.A.Choices[0]", "exactly one comparison operator"),
        (machine({"A": {"Type": "Wait", "Seconds": 1, "Timestamp": "2020-01-01T00:00:00Z", "End": True}}), "States.A", "exactly one of Seconds"),
        (machine({"A": {"Type": "Map", "End": True, "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "Next": "J"}}}}}),
         "States.A.ItemProcessor.States.I.Next", "'J' is not a state"),
        (machine({"A": {"Type": "Pass", "End": True}}, QueryLanguage="JSONPathX"), "definition.QueryLanguage", "unknown query language"),
        (machine({"A": {"Type": "Pass", "OutputPath": "$.x", "End": True}}, QueryLanguage="JSONata"), "States.A.OutputPath",
         "not allowed in a JSONata state"),
        (machine({"A": {"Type": "Pass", "Output": {"x": 1}, "End": True}}), "States.A.Output", "not allowed in a JSONPath state"),
        (machine({"A": {"Type": "Pass", "QueryLanguage": "JSONata", "Output": "{% $states.input. %}", "End": True}}),
         "States.A.Output", "invalid JSONata expression"),
    ],
)
def test_invalid_definitions_are_refused_with_the_location(engine: Engine, definition: dict, location: str, text: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        engine.create_state_machine("bad", definition)
    assert caught.value.location == location
    assert text in caught.value.message


def test_unknown_resources_list_the_supported_ones(engine: Engine) -> None:
    with pytest.raises(DefinitionError, match=r"arn:aws:states:::lambda:invoke"):
        engine.create_state_machine("bad", machine({"A": {"Type": "Task", "Resource": "arn:aws:states:::ecs:runTask", "End": True}}))


def test_a_valid_definition_with_every_state_type_registers(engine: Engine) -> None:
    definition = json.loads((Path(__file__).parent / "fixtures" / "all_state_types.json").read_text())
    arn = engine.create_state_machine("all", definition)
    assert engine.describe_state_machine(arn)["revision"] == 1
    assert engine.update_state_machine(arn, {**definition, "Comment": "v2"}) == 2


def test_every_state_type_the_definition_accepts_has_a_handler_in_each_query_language() -> None:
    assert set(HANDLERS) == set(product(QueryLanguage, STATE_TYPES))
