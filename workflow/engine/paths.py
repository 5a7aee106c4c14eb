"""JSONPath as Step Functions evaluates it, and the input/output processing built on it.

Step Functions runs Jayway JsonPath; its behaviour, not jsonpath-ng's, is what a state
machine sees:

* a *definite* path (`$.a.b[0]`) yields one value or fails; the failure text names the
  missing property (`Missing property in path $['no']`) or, at the leaf,
  `No results for path: $['NoSuchInputPath']`;
* an *indefinite* path (wildcards `*`, slices `[1:]`, filters `[?(@.x == 0)]`, `..`)
  always yields a list, empty when nothing matches.

Paths are compiled once (cached) into a tuple of segments and walked without recursion
for the common definite case, which keeps a state transition cheap. `$$` addresses the
context object, `$name` a variable set by `Assign`.

    >>> compile_path("$.items[1:].itemValue").find({"items": [{"itemValue": 1}, {"itemValue": 2}]})
    [2]
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from workflow.engine.errors import ErrorName, StatesError
from workflow.engine.values import MISSING, Json, dumps

_NAME_CHARS = re.compile(r"[^.\[\]\s]+")
_FILTER = re.compile(r"^\?\(\s*@((?:\.[^\s=!<>]+|\[[^\]]+\])*)\s*(?:(==|!=|<=|>=|<|>)\s*(.+?))?\s*\)$")


class PathError(ValueError):
    """A path does not parse (raised at definition time) or does not resolve (run time)."""


@dataclass(frozen=True)
class Segment:
    """One step of a path: kind is name | index | wildcard | slice | descend | filter."""

    kind: str
    key: Any = None
    stop: Any = None
    step: Any = None


@dataclass(frozen=True)
class JsonPath:
    """A compiled path. root is "$" (input), "$$" (context object) or a variable name."""

    text: str
    root: str
    segments: tuple[Segment, ...]
    definite: bool

    @property
    def is_variable(self) -> bool:
        return self.root not in ("$", "$$")

    def find(self, data: Json) -> Json:
        """Evaluates on `data` (already the root value). Raises PathError when a definite path misses."""
        if self.definite:
            return _walk_definite(self, data)
        matches = [data]
        for segment in self.segments:
            matches = _step_indefinite(segment, matches)
        return matches

    def bracket_form(self, upto: int | None = None) -> str:
        """Jayway's normalised rendering, used in its error texts: $['a']['b'][0]."""
        parts = [self.root if self.root in ("$", "$$") else f"${self.root}"]
        for segment in self.segments[:upto]:
            if segment.kind == "name":
                parts.append(f"['{segment.key}']")
            elif segment.kind == "index":
                parts.append(f"[{segment.key}]")
            else:
                parts.append("[*]")
        return "".join(parts)


def _walk_definite(path: JsonPath, data: Json) -> Json:
    current = data
    last = len(path.segments) - 1
    for position, segment in enumerate(path.segments):
        if segment.kind == "name":
            if isinstance(current, dict) and segment.key in current:
                current = current[segment.key]
                continue
        elif isinstance(current, list) and isinstance(segment.key, int):
            index = segment.key
            if -len(current) <= index < len(current):
                current = current[index]
                continue
        if position == last:
            raise PathError(f"No results for path: {path.bracket_form()}")
        raise PathError(f"Missing property in path {path.bracket_form(position + 1)}")
    return current


def _children(value: Json) -> list[Json]:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return list(value)
    return []


def _descendants(value: Json) -> list[Json]:
    found = [value]
    for child in _children(value):
        found.extend(_descendants(child))
    return found


def _step_indefinite(segment: Segment, matches: list[Json]) -> list[Json]:
    out: list[Json] = []
    for value in matches:
        if segment.kind == "name":
            if isinstance(value, dict) and segment.key in value:
                out.append(value[segment.key])
        elif segment.kind == "index":
            if isinstance(value, list) and -len(value) <= segment.key < len(value):
                out.append(value[segment.key])
        elif segment.kind == "wildcard":
            out.extend(_children(value))
        elif segment.kind == "slice":
            if isinstance(value, list):
                out.extend(value[segment.key:segment.stop:segment.step])
        elif segment.kind == "descend":
            for node in _descendants(value):
                if segment.key is None:
                    out.extend(_children(node))
                elif isinstance(node, dict) and segment.key in node:
                    out.append(node[segment.key])
        elif segment.kind == "filter":
            out.extend(item for item in _children(value) if segment.key(item))
    return out


def _literal(text: str) -> Json:
    text = text.strip()
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1]
    return json.loads(text)


def _compile_filter(expression: str, where: str) -> Callable[[Json], bool]:
    match = _FILTER.match(expression)
    if not match:
        raise PathError(f"unsupported filter expression [{expression}] in path {where!r}")
    sub_path, operator, literal_text = match.groups()
    sub = compile_path("$" + sub_path)
    try:
        expected = _literal(literal_text) if operator else None
    except ValueError as error:
        raise PathError(f"bad literal {literal_text!r} in filter of path {where!r}") from error
    compare: dict[str, Callable[[Any, Any], bool]] = {
        "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
    }

    def test(item: Json) -> bool:
        found = sub.find(item) if not sub.definite else _find_or_missing(sub, item)
        if found is MISSING:
            return False
        if operator is None:
            return True
        try:
            return bool(compare[operator](found, expected))
        except TypeError:
            return False

    return test


def _find_or_missing(path: JsonPath, data: Json) -> Json:
    try:
        return _walk_definite(path, data)
    except PathError:
        return MISSING


def _read_quoted(text: str, start: int, where: str) -> tuple[str, int]:
    """Reads a quoted name inside brackets; a backslash escapes only the quote character."""
    quote = text[start]
    out = []
    position = start + 1
    while position < len(text):
        char = text[position]
        if char == "\\" and position + 1 < len(text) and text[position + 1] == quote:
            out.append(quote)
            position += 2
            continue
        if char == quote:
            return "".join(out), position + 1
        out.append(char)
        position += 1
    raise PathError(f"unterminated quote in path {where!r}")


def _parse_bracket(text: str, position: int, where: str) -> tuple[Segment, int]:
    """Parses `[...]` starting at text[position] == '['; returns the segment and the index after ']'."""
    inner_start = position + 1
    if inner_start < len(text) and text[inner_start] in "'\"":
        name, after = _read_quoted(text, inner_start, where)
        if after >= len(text) or text[after] != "]":
            raise PathError(f"expected ']' after quoted name in path {where!r}")
        return Segment("name", name), after + 1
    depth = 0
    end = inner_start
    while end < len(text):
        if text[end] == "(":
            depth += 1
        elif text[end] == ")":
            depth -= 1
        elif text[end] == "]" and depth == 0:
            break
        end += 1
    else:
        raise PathError(f"missing ']' in path {where!r}")
    inner = text[inner_start:end].strip()
    after = end + 1
    if inner == "*":
        return Segment("wildcard"), after
    if inner.startswith("?"):
        return Segment("filter", _compile_filter(inner, where)), after
    if ":" in inner:
        parts = inner.split(":")
        if len(parts) > 3:
            raise PathError(f"bad slice [{inner}] in path {where!r}")
        try:
            bounds = [int(part) if part.strip() else None for part in parts] + [None] * (3 - len(parts))
        except ValueError as error:
            raise PathError(f"bad slice [{inner}] in path {where!r}") from error
        return Segment("slice", bounds[0], bounds[1], bounds[2]), after
    try:
        return Segment("index", int(inner)), after
    except ValueError as error:
        raise PathError(f"bad array index [{inner}] in path {where!r}") from error


@lru_cache(maxsize=4096)
def compile_path(text: str) -> JsonPath:
    """Parses a path; raises PathError naming the path when it is not valid."""
    if not isinstance(text, str) or not text.startswith("$"):
        raise PathError(f"path {text!r} must start with '$'")
    if text.startswith("$$"):
        root, position = "$$", 2
    else:
        variable = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)", text)
        if variable:
            root, position = variable.group(1), variable.end()
        else:
            root, position = "$", 1
    segments: list[Segment] = []
    definite = True
    while position < len(text):
        char = text[position]
        if text.startswith("..", position):
            name = _NAME_CHARS.match(text, position + 2)
            if name is None:
                raise PathError(f"expected a name after '..' in path {text!r}")
            key = None if name.group() == "*" else name.group()
            segments.append(Segment("descend", key))
            definite = False
            position = name.end()
        elif char == ".":
            name = _NAME_CHARS.match(text, position + 1)
            if name is None:
                raise PathError(f"expected a name after '.' at offset {position} in path {text!r}")
            if name.group() == "*":
                segments.append(Segment("wildcard"))
                definite = False
            else:
                segments.append(Segment("name", name.group()))
            position = name.end()
        elif char == "[":
            segment, position = _parse_bracket(text, position, text)
            if segment.kind not in ("name", "index"):
                definite = False
            segments.append(segment)
        else:
            raise PathError(f"unexpected {char!r} at offset {position} in path {text!r}")
    return JsonPath(text, root, tuple(segments), definite)


def is_path(text: Any) -> bool:
    return isinstance(text, str) and text.startswith("$")


# ---------------------------------------------------------------- reference paths (ResultPath)


def set_at_path(target: Json, path_text: str, value: Json) -> Json:
    """Returns a copy of `target` with `value` placed at the reference path (ResultPath semantics).

    Only the containers along the path are copied; missing objects on the way are created.
    """
    path = compile_path(path_text)
    if path.root != "$" or not path.definite:
        raise PathError(f"ResultPath {path_text!r} must be a reference path starting with '$.'")
    if not path.segments:
        return value
    root: Json = _copy_container(target) if isinstance(target, (dict, list)) else {}
    if not isinstance(target, (dict, list)):
        raise StatesError(
            ErrorName.RESULT_PATH_MATCH_FAILURE,
            f"Unable to apply ResultPath {path_text!r} to input {dumps(target)}: the input is not an object",
        )
    parent = root
    for position, segment in enumerate(path.segments):
        last = position == len(path.segments) - 1
        if segment.kind == "name":
            if not isinstance(parent, dict):
                raise StatesError(ErrorName.RESULT_PATH_MATCH_FAILURE,
                                  f"Unable to apply ResultPath {path_text!r}: {path.bracket_form(position)} is not an object")
            if last:
                parent[segment.key] = value
            else:
                child = parent.get(segment.key)
                child = _copy_container(child) if isinstance(child, (dict, list)) else {}
                parent[segment.key] = child
                parent = child
        else:
            if not isinstance(parent, list) or not -len(parent) <= segment.key < len(parent):
                raise StatesError(ErrorName.RESULT_PATH_MATCH_FAILURE,
                                  f"Unable to apply ResultPath {path_text!r}: index {segment.key} is out of range")
            if last:
                parent[segment.key] = value
            else:
                child = parent[segment.key]
                child = _copy_container(child) if isinstance(child, (dict, list)) else {}
                parent[segment.key] = child
                parent = child
    return root


def _copy_container(value: Json) -> Json:
    return dict(value) if isinstance(value, dict) else list(value)
