"""JSONPath as Step Functions (Jayway) evaluates it, and ResultPath placement."""
from __future__ import annotations

import pytest

from workflow.engine.errors import StatesError
from workflow.engine.paths import PathError, compile_path, set_at_path

DATA = {"items": [{"v": 1, "s": 0}, {"v": 2, "s": 1}, {"v": 3, "s": 0}], "a": {"b": {"c": 7}}, "odd key": 5}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", DATA),
        ("$.a.b.c", 7),
        ("$.items[1].v", 2),
        ("$.items[-1].v", 3),
        ("$['odd key']", 5),
        ("$.items[*].v", [1, 2, 3]),
        ("$.items[1:].v", [2, 3]),
        ("$.items[:1]", [{"v": 1, "s": 0}]),
        ("$..c", [7]),
        ("$.items[?(@.s == 0)].v", [1, 3]),
        ("$.items[?(@.v > 1)].v", [2, 3]),
    ],
)
def test_paths_select_like_jayway(path: str, expected: object) -> None:
    assert compile_path(path).find(DATA) == expected


def test_indefinite_path_on_missing_data_is_an_empty_list() -> None:
    assert compile_path("$.nothing[*].v").find(DATA) == []


def test_missing_leaf_and_missing_parent_have_jayways_messages() -> None:
    with pytest.raises(PathError, match=r"No results for path: \$\['a'\]\['x'\]"):
        compile_path("$.a.x").find(DATA)
    with pytest.raises(PathError, match=r"Missing property in path \$\['no'\]"):
        compile_path("$.no.such.path").find(DATA)


def test_context_and_variable_roots_are_recognised() -> None:
    assert compile_path("$$.Execution.Id").root == "$$"
    variable = compile_path("$answer.value[0]")
    assert (variable.root, variable.is_variable) == ("answer", True)


@pytest.mark.parametrize("bad", ["a.b", "$.a[", "$.a[x]", "$.a[?(@.x ~ 1)]"])
def test_invalid_paths_are_refused(bad: str) -> None:
    with pytest.raises(PathError):
        compile_path(bad)


def test_result_path_creates_missing_objects_without_touching_the_input() -> None:
    original = {"a": {"keep": 1}}
    updated = set_at_path(original, "$.a.b.c", 42)
    assert updated == {"a": {"keep": 1, "b": {"c": 42}}}
    assert original == {"a": {"keep": 1}}


def test_result_path_replaces_a_scalar_on_the_way() -> None:
    assert set_at_path({"a": 3}, "$.a.b", 1) == {"a": {"b": 1}}


def test_result_path_into_a_non_object_input_fails_with_result_path_match_failure() -> None:
    with pytest.raises(StatesError) as caught:
        set_at_path("text", "$.a", 1)
    assert caught.value.error == "States.ResultPathMatchFailure"
