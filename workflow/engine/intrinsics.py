"""Intrinsic functions (`States.Format(...)` and friends) as a name -> function table.

An intrinsic call is parsed once into a small tree (`Call`, `PathArg`, literals) and then
evaluated against a resolver for paths. Semantics follow what AWS returns, including its
Java heritage: `States.MathAdd` rounds each argument like Java's Math.round
(1.5 -> 2, -1.5 -> -1), and `States.Format` prints an object as a Java map
(`{Arg1=1, Arg2=[]}`).

    >>> evaluate_intrinsic(parse_intrinsic("States.Format('{} + {}', 1, $.x)"), lambda p: 2)
    '1 + 2'
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import re
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from workflow.engine.errors import ErrorName, StatesError
from workflow.engine.values import Json, dumps


class IntrinsicSyntaxError(ValueError):
    """An intrinsic expression that does not parse; raised at definition time."""


@dataclass(frozen=True)
class PathArg:
    """A path argument ($.x, $$.Execution.Id, $variable)."""

    path: str


class Literal(str):
    """A string literal; `raw` keeps its escapes so States.Format can tell `\\{}` from `{}`."""

    raw: str

    def __new__(cls, value: str, raw: str) -> "Literal":
        literal = super().__new__(cls, value)
        literal.raw = raw
        return literal


@dataclass(frozen=True)
class Call:
    """`States.<name>(args...)`."""

    name: str
    args: tuple[Any, ...]


# ------------------------------------------------------------------------------- parsing


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.position = 0

    def fail(self, message: str) -> IntrinsicSyntaxError:
        return IntrinsicSyntaxError(f"{message} at offset {self.position} in {self.text!r}")

    def skip_space(self) -> None:
        while self.position < len(self.text) and self.text[self.position].isspace():
            self.position += 1

    def parse_call(self) -> Call:
        self.skip_space()
        start = self.position
        while self.position < len(self.text) and (self.text[self.position].isalnum() or self.text[self.position] in "._"):
            self.position += 1
        name = self.text[start:self.position]
        if not name.startswith("States."):
            raise self.fail(f"expected an intrinsic function name 'States.<Name>', got {name!r}")
        if name not in FUNCTIONS:
            raise self.fail(f"unknown intrinsic function {name!r} (supported: {', '.join(sorted(FUNCTIONS))})")
        self.skip_space()
        if self.position >= len(self.text) or self.text[self.position] != "(":
            raise self.fail(f"expected '(' after {name}")
        self.position += 1
        args: list[Any] = []
        self.skip_space()
        if self.position < len(self.text) and self.text[self.position] == ")":
            self.position += 1
            return Call(name, ())
        while True:
            args.append(self.parse_argument())
            self.skip_space()
            if self.position >= len(self.text):
                raise self.fail(f"missing ')' to close {name}")
            char = self.text[self.position]
            self.position += 1
            if char == ")":
                return Call(name, tuple(args))
            if char != ",":
                raise self.fail(f"expected ',' or ')' in arguments of {name}")

    def parse_argument(self) -> Any:
        self.skip_space()
        if self.position >= len(self.text):
            raise self.fail("missing argument")
        char = self.text[self.position]
        if char == "'":
            return self.parse_string()
        if char == "$":
            return self.parse_path()
        if self.text.startswith("States.", self.position):
            return self.parse_call()
        start = self.position
        while self.position < len(self.text) and self.text[self.position] not in ",)" and not self.text[self.position].isspace():
            self.position += 1
        token = self.text[start:self.position]
        if token in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[token]
        try:
            return int(token)
        except ValueError:
            pass
        try:
            return float(token)
        except ValueError:
            raise self.fail(f"unexpected argument {token!r}") from None

    def parse_string(self) -> str:
        self.position += 1
        start = self.position
        out: list[str] = []
        while self.position < len(self.text):
            char = self.text[self.position]
            if char == "\\" and self.position + 1 < len(self.text):
                following = self.text[self.position + 1]
                # \' \{ \} \\ are escapes; anything else keeps its backslash
                out.append(following if following in "'{}\\" else "\\" + following)
                self.position += 2
                continue
            if char == "'":
                self.position += 1
                return Literal("".join(out), self.text[start:self.position - 1])
            out.append(char)
            self.position += 1
        raise self.fail("unterminated string literal")

    def parse_path(self) -> PathArg:
        start = self.position
        depth = 0
        quote = None
        while self.position < len(self.text):
            char = self.text[self.position]
            if quote:
                if char == quote:
                    quote = None
            elif char in "'\"" and depth:
                quote = char
            elif char == "[":
                depth += 1
            elif char == "]":
                depth -= 1
            elif depth == 0 and (char in ",)" or char.isspace()):
                break
            self.position += 1
        return PathArg(self.text[start:self.position])


@lru_cache(maxsize=2048)
def parse_intrinsic(text: str) -> Call:
    """Parses `States.X(...)`; raises IntrinsicSyntaxError naming the expression."""
    parser = _Parser(text)
    call = parser.parse_call()
    parser.skip_space()
    if parser.position != len(text):
        raise parser.fail("unexpected text after the closing ')'")
    return call


def is_intrinsic(text: Any) -> bool:
    return isinstance(text, str) and text.startswith("States.") and "(" in text


def evaluate_intrinsic(call: Call, resolve_path: Callable[[str], Json]) -> Json:
    """Evaluates a parsed call; path arguments are looked up with `resolve_path`."""
    args = []
    for arg in call.args:
        if isinstance(arg, Call):
            args.append(evaluate_intrinsic(arg, resolve_path))
        elif isinstance(arg, PathArg):
            args.append(resolve_path(arg.path))
        else:
            args.append(arg)
    return FUNCTIONS[call.name](call.name, *args)


# ----------------------------------------------------------------------------- functions


def _fail(name: str, message: str) -> StatesError:
    return StatesError(ErrorName.INTRINSIC_FAILURE, f"The function {name} {message}")


def _arity(name: str, args: tuple[Any, ...], count: int) -> None:
    if len(args) != count:
        raise _fail(name, f"expects {count} argument(s), got {len(args)}")


def _java_string(value: Json) -> str:
    """How AWS's Java runtime prints a JSON value inside States.Format."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return repr(value)
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_java_string(item) for item in value) + "]"
    return "{" + ", ".join(f"{key}={_java_string(item)}" for key, item in value.items()) + "}"


def _format(name: str, template: Any = None, *args: Json) -> str:
    if not isinstance(template, str):
        raise _fail(name, f"expects a string template as its first argument, got {dumps(template)}")
    if isinstance(template, Literal):  # escaped braces (\{ \}) are text, not placeholders
        pieces = [_unescape(piece) for piece in re.split(r"(?<!\\)\{\}", template.raw)]
    else:
        pieces = template.split("{}")
    if len(pieces) - 1 != len(args):
        raise _fail(name, f"template has {len(pieces) - 1} placeholder(s) but {len(args)} argument(s) were given")
    out = [pieces[0]]
    for arg, piece in zip(args, pieces[1:]):
        out.append(_java_string(arg))
        out.append(piece)
    return "".join(out)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda match: match.group(1) if match.group(1) in "'{}\\" else match.group(0), text)


def _string_to_json(name: str, *args: Json) -> Json:
    _arity(name, args, 1)
    text = args[0]
    if not isinstance(text, str):
        raise _fail(name, f"expects a string, got {dumps(text)}")
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as error:
        raise _fail(name, f"could not parse {text!r} as JSON: {error}") from error


def _json_to_string(name: str, *args: Json) -> str:
    _arity(name, args, 1)
    return dumps(args[0])


def _array(name: str, *args: Json) -> list[Json]:
    return list(args)


def _array_partition(name: str, *args: Json) -> list[list[Json]]:
    _arity(name, args, 2)
    array, size = args
    if not isinstance(array, list) or not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise _fail(name, f"expects an array and a positive integer, got {dumps(array)} and {dumps(size)}")
    return [array[start:start + size] for start in range(0, len(array), size)]


def _array_contains(name: str, *args: Json) -> bool:
    _arity(name, args, 2)
    array, value = args
    if not isinstance(array, list):
        raise _fail(name, f"expects an array, got {dumps(array)}")
    return any(_json_equal(item, value) for item in array)


def _json_equal(first: Json, second: Json) -> bool:
    if isinstance(first, bool) or isinstance(second, bool):
        return type(first) is type(second) and first == second
    return first == second


def _array_range(name: str, *args: Json) -> list[int]:
    _arity(name, args, 3)
    if not all(isinstance(arg, (int, float)) and not isinstance(arg, bool) for arg in args):
        raise _fail(name, f"expects three numbers, got {dumps(list(args))}")
    start, end, step = (int(arg) for arg in args)
    if step == 0:
        raise _fail(name, "step must not be 0")
    values = list(range(start, end + (1 if step > 0 else -1), step))
    if len(values) > 1000:
        raise _fail(name, f"would return {len(values)} items; at most 1000 are allowed")
    return values


def _array_get_item(name: str, *args: Json) -> Json:
    _arity(name, args, 2)
    array, index = args
    if not isinstance(array, list) or not isinstance(index, int) or isinstance(index, bool):
        raise _fail(name, f"expects an array and an integer index, got {dumps(array)} and {dumps(index)}")
    if not 0 <= index < len(array):
        raise _fail(name, f"index {index} is out of bounds for an array of length {len(array)}")
    return array[index]


def _array_length(name: str, *args: Json) -> int:
    _arity(name, args, 1)
    if not isinstance(args[0], list):
        raise _fail(name, f"expects an array, got {dumps(args[0])}")
    return len(args[0])


def _array_unique(name: str, *args: Json) -> list[Json]:
    _arity(name, args, 1)
    if not isinstance(args[0], list):
        raise _fail(name, f"expects an array, got {dumps(args[0])}")
    seen: set[str] = set()
    out = []
    for item in args[0]:
        key = json.dumps(item, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _base64_encode(name: str, *args: Json) -> str:
    _arity(name, args, 1)
    if not isinstance(args[0], str):
        raise _fail(name, f"expects a string, got {dumps(args[0])}")
    return base64.b64encode(args[0].encode()).decode()


def _base64_decode(name: str, *args: Json) -> str:
    _arity(name, args, 1)
    if not isinstance(args[0], str):
        raise _fail(name, f"expects a string, got {dumps(args[0])}")
    try:
        return base64.b64decode(args[0], validate=True).decode()
    except ValueError as error:
        raise _fail(name, f"could not decode {args[0]!r}: {error}") from error


_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}


def _hash(name: str, *args: Json) -> str:
    _arity(name, args, 2)
    data, algorithm = args
    if algorithm not in _HASHES:
        raise _fail(name, f"does not support the algorithm {dumps(algorithm)} (supported: {', '.join(_HASHES)})")
    text = data if isinstance(data, str) else dumps(data)
    return hashlib.new(_HASHES[algorithm], text.encode()).hexdigest()


def _json_merge(name: str, *args: Json) -> dict[str, Json]:
    _arity(name, args, 3)
    first, second, deep = args
    if not isinstance(first, dict) or not isinstance(second, dict):
        raise _fail(name, f"expects two objects, got {dumps(first)} and {dumps(second)}")
    if deep is not False:
        raise _fail(name, "supports only a shallow merge (third argument false)")
    return {**first, **second}


def _java_round(value: float) -> int:
    return math.floor(value + 0.5)


def _math_random(name: str, *args: Json) -> int:
    if len(args) not in (2, 3):
        raise _fail(name, f"expects 2 or 3 arguments, got {len(args)}")
    if not all(isinstance(arg, (int, float)) and not isinstance(arg, bool) for arg in args):
        raise _fail(name, f"expects numbers, got {dumps(list(args))}")
    start, end = _java_round(args[0]), _java_round(args[1])
    generator = random.Random(args[2]) if len(args) == 3 else random
    return generator.randint(min(start, end), max(start, end))


def _math_add(name: str, *args: Json) -> int:
    _arity(name, args, 2)
    if not all(isinstance(arg, (int, float)) and not isinstance(arg, bool) for arg in args):
        raise _fail(name, f"expects two numbers, got {dumps(list(args))}")
    return _java_round(args[0]) + _java_round(args[1])


def _string_split(name: str, *args: Json) -> list[str]:
    _arity(name, args, 2)
    text, delimiters = args
    if not isinstance(text, str) or not isinstance(delimiters, str):
        raise _fail(name, f"expects two strings, got {dumps(text)} and {dumps(delimiters)}")
    pieces = [text]
    for delimiter in delimiters:
        pieces = [part for piece in pieces for part in piece.split(delimiter)]
    return [piece for piece in pieces if piece]


def _uuid(name: str, *args: Json) -> str:
    _arity(name, args, 0)
    return str(uuid.uuid4())


FUNCTIONS: dict[str, Callable[..., Json]] = {
    "States.Format": _format,
    "States.StringToJson": _string_to_json,
    "States.JsonToString": _json_to_string,
    "States.Array": _array,
    "States.ArrayPartition": _array_partition,
    "States.ArrayContains": _array_contains,
    "States.ArrayRange": _array_range,
    "States.ArrayGetItem": _array_get_item,
    "States.ArrayLength": _array_length,
    "States.ArrayUnique": _array_unique,
    "States.Base64Encode": _base64_encode,
    "States.Base64Decode": _base64_decode,
    "States.Hash": _hash,
    "States.JsonMerge": _json_merge,
    "States.MathRandom": _math_random,
    "States.MathAdd": _math_add,
    "States.StringSplit": _string_split,
    "States.UUID": _uuid,
}
