"""JSONata states: Arguments, Output, Assign, Items, Condition, $states.* and the AWS-added functions."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from workflow.engine import Engine, VirtualClock

FUNCTION = "arn:aws:lambda:us-east-1:000000000000:function:score"


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    def score(event: dict, context: Any) -> dict:
        if event["value"] < 0:
            raise ValueError("negative")
        return {"score": event["value"] * 2}

    return Engine(tmp_path / "engine.sqlite3", clock=VirtualClock(), functions={"score": score})


def run(engine: Engine, definition: dict, execution_input: Any) -> dict:
    return engine.run_execution(engine.create_state_machine("jsonata", definition), execution_input)


def test_task_map_choice_and_variables(engine: Engine) -> None:
    definition = {
        "QueryLanguage": "JSONata",
        "StartAt": "Setup",
        "States": {
            "Setup": {"Type": "Pass", "Assign": {"threshold": "{% $states.input.threshold %}"}, "Next": "Scores",
                      "Output": "{% $states.input.values %}"},
            "Scores": {"Type": "Map", "Items": "{% $states.input %}", "Next": "Total",
                       "ItemProcessor": {"StartAt": "Score", "States": {"Score": {
                           "Type": "Task", "Resource": FUNCTION, "Arguments": {"value": "{% $states.input %}"},
                           "Output": "{% $states.result.score %}", "End": True}}}},
            "Total": {"Type": "Pass", "Output": {"total": "{% $sum($states.input) %}", "chunks": "{% $partition($states.input, 2) %}"},
                      "Next": "Gate"},
            "Gate": {"Type": "Choice", "Choices": [{"Condition": "{% $states.input.total > $threshold %}", "Next": "High"}],
                     "Default": "Low"},
            "High": {"Type": "Succeed", "Output": {"verdict": "high", "total": "{% $states.input.total %}"}},
            "Low": {"Type": "Fail", "Error": "Gate.Low", "Cause": "{% 'total ' & $string($states.input.total) %}"},
        },
    }
    high = run(engine, definition, {"threshold": 10, "values": [1, 2, 3]})
    assert json.loads(high["output"]) == {"verdict": "high", "total": 12}
    low = run(engine, definition, {"threshold": 100, "values": [1, 2, 3]})
    assert (low["status"], low["error"], low["cause"]) == ("FAILED", "Gate.Low", "total 12")


def test_catch_output_sees_the_error_and_the_input(engine: Engine) -> None:
    definition = {"QueryLanguage": "JSONata", "StartAt": "Call", "States": {
        "Call": {"Type": "Task", "Resource": FUNCTION, "Arguments": {"value": "{% $states.input.v %}"}, "End": True,
                 "Catch": [{"ErrorEquals": ["ValueError"], "Next": "Handled",
                            "Output": {"input": "{% $states.input %}", "error": "{% $states.errorOutput.Error %}"}}]},
        "Handled": {"Type": "Pass", "End": True}}}
    result = run(engine, definition, {"v": -1})
    assert json.loads(result["output"]) == {"input": {"v": -1}, "error": "ValueError"}


def test_undefined_results_fail_with_query_evaluation_error(engine: Engine) -> None:
    definition = {"QueryLanguage": "JSONata", "StartAt": "P", "States": {"P": {"Type": "Pass", "Output": "{% $nothing %}", "End": True}}}
    result = run(engine, definition, {})
    assert result["error"] == "States.QueryEvaluationError"
    assert result["cause"].endswith("The JSONata expression '$nothing' specified for the field 'Output' returned nothing (undefined).")
    types = [event["type"] for event in engine.get_execution_history(result["executionArn"])["events"]]
    assert types == ["ExecutionStarted", "PassStateEntered", "EvaluationFailed", "ExecutionFailed"]
