"""Choice rules: the comparison operators, their *Path forms, And/Or/Not and the Is* tests.

A comparison whose operands have the wrong type is simply false (AWS does not fail:
`NumericEquals` against a string does not match). A `Variable` that does not resolve is a
run-time error, except for `IsPresent`, which exists to test exactly that.

    >>> evaluate_rule({"Variable": "$.n", "NumericGreaterThan": 1}, lambda path: 2)
    True
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Callable

from workflow.engine.errors import ErrorName, StatesError
from workflow.engine.values import MISSING, Json

Resolver = Callable[[str], Json]

_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
)


def parse_timestamp(value: Any) -> datetime | None:
    """RFC 3339 date-time (upper-case T, offset or Z required) -> aware datetime, else None."""
    if not isinstance(value, str) or not _TIMESTAMP.match(value):
        return None
    text = value.replace("Z", "+00:00")
    fraction = re.search(r"\.(\d+)", text)
    if fraction and len(fraction.group(1)) > 6:
        text = text.replace(fraction.group(0), "." + fraction.group(1)[:6])
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _compare(kind: str, left: Any, right: Any) -> int | None:
    """-1/0/1 when both operands are of the operator's type, None otherwise."""
    if kind == "String":
        if not (isinstance(left, str) and isinstance(right, str)):
            return None
    elif kind == "Numeric":
        if not (_is_number(left) and _is_number(right)):
            return None
    elif kind == "Boolean":
        if not (isinstance(left, bool) and isinstance(right, bool)):
            return None
    elif kind == "Timestamp":
        left, right = parse_timestamp(left), parse_timestamp(right)
        if left is None or right is None:
            return None
    return (left > right) - (left < right)


_RELATIONS: dict[str, Callable[[int], bool]] = {
    "Equals": lambda order: order == 0,
    "LessThan": lambda order: order < 0,
    "GreaterThan": lambda order: order > 0,
    "LessThanEquals": lambda order: order <= 0,
    "GreaterThanEquals": lambda order: order >= 0,
}

COMPARISON_OPERATORS: dict[str, tuple[str, str, bool]] = {}
for _kind in ("String", "Numeric", "Boolean", "Timestamp"):
    for _relation in (("Equals",) if _kind == "Boolean" else tuple(_RELATIONS)):
        COMPARISON_OPERATORS[f"{_kind}{_relation}"] = (_kind, _relation, False)
        COMPARISON_OPERATORS[f"{_kind}{_relation}Path"] = (_kind, _relation, True)

TYPE_TESTS: dict[str, Callable[[Any], bool]] = {
    "IsNull": lambda value: value is None,
    "IsBoolean": lambda value: isinstance(value, bool),
    "IsNumeric": _is_number,
    "IsString": lambda value: isinstance(value, str),
    "IsTimestamp": lambda value: parse_timestamp(value) is not None,
}

OPERATORS = set(COMPARISON_OPERATORS) | set(TYPE_TESTS) | {"IsPresent", "StringMatches"}


def operator_of(rule: dict[str, Any]) -> str | None:
    """The single comparison operator key of a rule, or None (the definition checks there is one)."""
    found = [key for key in rule if key in OPERATORS]
    return found[0] if len(found) == 1 else None


def string_matches(value: str, pattern: str) -> bool:
    """`*` matches any run of characters; `\\*` and `\\\\` are literal."""
    regex = []
    position = 0
    while position < len(pattern):
        char = pattern[position]
        if char == "\\" and position + 1 < len(pattern):
            regex.append(re.escape(pattern[position + 1]))
            position += 2
            continue
        regex.append(".*" if char == "*" else re.escape(char))
        position += 1
    return re.fullmatch("".join(regex), value, re.DOTALL) is not None


def evaluate_rule(rule: dict[str, Any], resolve: Resolver, try_resolve: Resolver | None = None) -> bool:
    """True when `rule` matches. `resolve` raises for a missing path; `try_resolve` returns MISSING."""
    if "And" in rule:
        return all(evaluate_rule(sub, resolve, try_resolve) for sub in rule["And"])
    if "Or" in rule:
        return any(evaluate_rule(sub, resolve, try_resolve) for sub in rule["Or"])
    if "Not" in rule:
        return not evaluate_rule(rule["Not"], resolve, try_resolve)
    operator = operator_of(rule)
    variable_path = rule["Variable"]
    if operator == "IsPresent":
        value = (try_resolve or _try(resolve))(variable_path)
        return (value is not MISSING) == bool(rule["IsPresent"])
    value = (try_resolve or _try(resolve))(variable_path)
    if value is MISSING:
        raise StatesError(
            ErrorName.RUNTIME,
            f"Invalid path '{variable_path}': The choice state's condition path references an invalid value.",
        )
    if operator in TYPE_TESTS:
        return TYPE_TESTS[operator](value) == bool(rule[operator])
    if operator == "StringMatches":
        return isinstance(value, str) and string_matches(value, rule[operator])
    kind, relation, by_path = COMPARISON_OPERATORS[operator]
    expected = resolve(rule[operator]) if by_path else rule[operator]
    order = _compare(kind, value, expected)
    return order is not None and _RELATIONS[relation](order)


def _try(resolve: Resolver) -> Resolver:
    def attempt(path: str) -> Json:
        try:
            return resolve(path)
        except (StatesError, ValueError, KeyError):
            return MISSING

    return attempt
