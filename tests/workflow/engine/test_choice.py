"""Choice rules: operators, type mismatches, Is* tests, And/Or/Not, StringMatches."""
from __future__ import annotations

import pytest

from workflow.engine.choice import evaluate_rule, string_matches
from workflow.engine.errors import StatesError
from workflow.engine.paths import PathError, compile_path

DATA = {"n": 5, "s": "beta", "b": True, "t": "2016-03-14T01:59:00Z", "t2": "2016-03-14T02:00:00+00:00", "z": None, "m": 5.0}


def resolve(path: str) -> object:
    try:
        return compile_path(path).find(DATA)
    except PathError as error:
        raise StatesError("States.Runtime", str(error)) from error


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"Variable": "$.n", "NumericEquals": 5}, True),
        ({"Variable": "$.n", "NumericEqualsPath": "$.m"}, True),
        ({"Variable": "$.n", "NumericGreaterThan": 5}, False),
        ({"Variable": "$.n", "NumericLessThanEquals": 5}, True),
        ({"Variable": "$.s", "NumericEquals": 5}, False),  # wrong type: no match, no error
        ({"Variable": "$.s", "StringGreaterThan": "alpha"}, True),
        ({"Variable": "$.s", "StringEqualsPath": "$.s"}, True),
        ({"Variable": "$.b", "BooleanEquals": True}, True),
        ({"Variable": "$.n", "BooleanEquals": True}, False),
        ({"Variable": "$.t", "TimestampLessThan": "2016-03-14T02:00:00Z"}, True),
        ({"Variable": "$.t", "TimestampLessThanPath": "$.t2"}, True),
        ({"Variable": "$.z", "IsNull": True}, True),
        ({"Variable": "$.missing", "IsPresent": False}, True),
        ({"Variable": "$.n", "IsNumeric": True}, True),
        ({"Variable": "$.b", "IsNumeric": True}, False),
        ({"Variable": "$.t", "IsTimestamp": True}, True),
        ({"Variable": "$.s", "IsString": True}, True),
        ({"Variable": "$.s", "StringMatches": "b*a"}, True),
        ({"And": [{"Variable": "$.n", "NumericEquals": 5}, {"Variable": "$.b", "BooleanEquals": False}]}, False),
        ({"Or": [{"Variable": "$.n", "NumericEquals": 4}, {"Variable": "$.b", "BooleanEquals": True}]}, True),
        ({"Not": {"Variable": "$.n", "NumericEquals": 4}}, True),
    ],
)
def test_rules(rule: dict, expected: bool) -> None:
    assert evaluate_rule(rule, resolve) is expected


def test_a_missing_variable_is_a_runtime_error() -> None:
    with pytest.raises(StatesError) as caught:
        evaluate_rule({"Variable": "$.missing", "NumericEquals": 1}, resolve)
    assert caught.value.error == "States.Runtime"


@pytest.mark.parametrize(
    ("value", "pattern", "expected"),
    [("log-2024.txt", "log-*.txt", True), ("log.csv", "log*.txt", False), ("a*b", "a\\*b", True), ("axb", "a\\*b", False)],
)
def test_string_matches_globs_with_escapes(value: str, pattern: str, expected: bool) -> None:
    assert string_matches(value, pattern) is expected
