"""Intrinsic functions: parsing, AWS's Java-flavoured results, and their errors."""
from __future__ import annotations

import pytest

from workflow.engine.errors import StatesError
from workflow.engine.intrinsics import IntrinsicSyntaxError, evaluate_intrinsic, parse_intrinsic

DATA = {"name": "World", "n": 2, "obj": {"Arg1": 1, "Arg2": []}, "arr": [1, 2, 2, 3], "csv": "a,b,,c"}


def run(expression: str) -> object:
    return evaluate_intrinsic(parse_intrinsic(expression), lambda path: DATA[path[2:]] if path != "$" else DATA)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("States.Format('Hello {}!', $.name)", "Hello World!"),
        ("States.Format('{} and {}', $.obj, $.n)", "{Arg1=1, Arg2=[]} and 2"),
        ("States.Format('escaped \\{\\} {}', 'x')", "escaped {} x"),
        ("States.StringToJson('{\"a\": [1]}')", {"a": [1]}),
        ("States.JsonToString($.obj)", '{"Arg1":1,"Arg2":[]}'),
        ("States.Array(1, 'two', true, null)", [1, "two", True, None]),
        ("States.ArrayPartition($.arr, 3)", [[1, 2, 2], [3]]),
        ("States.ArrayContains($.arr, 3)", True),
        ("States.ArrayRange(1, 9, 2)", [1, 3, 5, 7, 9]),
        ("States.ArrayGetItem($.arr, 3)", 3),
        ("States.ArrayLength($.arr)", 4),
        ("States.ArrayUnique($.arr)", [1, 2, 3]),
        ("States.Base64Encode('Hello World')", "SGVsbG8gV29ybGQ="),
        ("States.Base64Decode('SGVsbG8gV29ybGQ=')", "Hello World"),
        ("States.Hash('input data', 'MD5')", "812f45842bc6d66ee14572ce20db8e86"),
        ("States.JsonMerge($.obj, States.StringToJson('{\"Arg2\": 5}'), false)", {"Arg1": 1, "Arg2": 5}),
        ("States.MathAdd(1.5, -1.5)", 1),  # Java Math.round: 2 + (-1)
        ("States.StringSplit($.csv, ',')", ["a", "b", "c"]),
        ("States.ArrayGetItem(States.StringSplit('a-b-c', '-'), States.MathAdd($.n, -1))", "b"),
    ],
)
def test_intrinsics_return_what_aws_returns(expression: str, expected: object) -> None:
    assert run(expression) == expected


def test_uuid_and_random_have_the_right_shape() -> None:
    assert len(run("States.UUID()")) == 36
    assert 1 <= run("States.MathRandom(1, 10)") <= 10
    assert run("States.MathRandom(1, 1000, 7)") == run("States.MathRandom(1, 1000, 7)")


@pytest.mark.parametrize("expression", ["States.Nope(1)", "States.Format('x'", "Format('x')", "States.Array(1 2)"])
def test_bad_expressions_fail_to_parse(expression: str) -> None:
    with pytest.raises(IntrinsicSyntaxError):
        parse_intrinsic(expression)


def test_bad_arguments_raise_intrinsic_failure_naming_the_function() -> None:
    with pytest.raises(StatesError) as caught:
        run("States.ArrayGetItem($.arr, 10)")
    assert caught.value.error == "States.IntrinsicFailure"
    assert "States.ArrayGetItem" in caught.value.cause
