"""JSONata expressions (`"{% ... %}"`) for states whose QueryLanguage is JSONata.

Expressions are evaluated by jsonata-python (a port of the jsonata-java reference
implementation) with Step Functions' bindings: `$states.input`, `$states.result`,
`$states.errorOutput`, `$states.context`, every variable set by `Assign`, and the
functions Step Functions adds to JSONata ($partition, $range, $hash, $random, $uuid,
$parse). Failures are States.QueryEvaluationError with AWS's texts, e.g.
`The JSONata expression '$x' specified for the field 'Output' returned nothing (undefined).`

    >>> evaluate("{% $states.input.n + 1 %}", "Output", {"states": {"input": {"n": 1}}})
    2
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import uuid
from typing import Any

from jsonata import Jsonata
from jsonata.jexception import JException
from jsonata.utils import Utils

from workflow.engine.errors import ErrorName, RuntimeFailure
from workflow.engine.values import Json

_EXPRESSION = re.compile(r"^\{%(.*)%\}$", re.DOTALL)
_HASHES = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}
_local = threading.local()


class JsonataSyntaxError(ValueError):
    """An expression that does not parse; raised at definition time."""


def expression_of(value: Any) -> str | None:
    """The inner text of a `{% ... %}` string, else None."""
    if isinstance(value, str):
        match = _EXPRESSION.match(value)
        if match:
            return match.group(1).strip()
    return None


def _partition(array: Any, size: Any) -> list[Any]:
    return [list(array[start:start + int(size)]) for start in range(0, len(array), int(size))]


def _range(start: Any, end: Any, step: Any) -> list[int]:
    # a JSONata sequence: a single value collapses to itself, as AWS's $range result does
    return Utils.create_sequence_from_iter(range(int(start), int(end) + (1 if step > 0 else -1), int(step)))


def _hash(data: Any, algorithm: Any) -> str:
    return hashlib.new(_HASHES[algorithm], str(data).encode()).hexdigest()


def _random(seed: Any = None) -> float:
    return random.Random(seed).random() if seed is not None else random.random()


_FUNCTIONS = {
    "partition": _partition,
    "range": _range,
    "hash": _hash,
    "random": _random,
    "uuid": lambda: str(uuid.uuid4()),
    "parse": lambda text: json.loads(text),
}


def compile_expression(text: str) -> Jsonata:
    """A parsed expression, cached per thread (jsonata-python instances are not thread-safe)."""
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    compiled = cache.get(text)
    if compiled is None:
        try:
            compiled = Jsonata(text)
        except JException as error:
            raise JsonataSyntaxError(f"invalid JSONata expression {text!r}: {error}") from error
        compiled.set_output_convert_nulls(False)
        for name, function in _FUNCTIONS.items():
            compiled.register_lambda(name, function)
        cache[text] = compiled
    return compiled


def check_syntax(value: Json) -> None:
    """Parses every `{% %}` string inside a template; raises JsonataSyntaxError."""
    if isinstance(value, dict):
        for item in value.values():
            check_syntax(item)
    elif isinstance(value, list):
        for item in value:
            check_syntax(item)
    else:
        text = expression_of(value)
        if text is not None:
            compile_expression(text)


def _plain(value: Any) -> Json:
    """jsonata-python's result -> plain JSON (lists, dicts, None for null)."""
    if value is Utils.NULL_VALUE:
        return None
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _is_function(value: Any) -> bool:
    return isinstance(value, (Jsonata.JLambda, Jsonata.JFunction)) or callable(value) or type(value).__name__ in ("Symbol",)


def evaluate(value: str, field: str, bindings: dict[str, Json]) -> Json:
    """Evaluates one `{% %}` string (or returns a plain string as it is)."""
    text = expression_of(value)
    if text is None:
        return value
    bound = {name: Utils.NULL_VALUE if item is None else item for name, item in bindings.items()}
    try:
        result = compile_expression(text).evaluate(None, bound)
    except JException as error:
        raise RuntimeFailure(f"The JSONata expression '{text}' specified for the field '{field}' threw an error during"
                             f" evaluation. {error.error}: {error}", ErrorName.QUERY_EVALUATION_ERROR, field) from error
    except (TypeError, ValueError, KeyError, AttributeError) as error:
        raise RuntimeFailure(f"The JSONata expression '{text}' specified for the field '{field}' returned an unsupported"
                             " result type.", ErrorName.QUERY_EVALUATION_ERROR, field) from error
    if result is None:
        raise RuntimeFailure(f"The JSONata expression '{text}' specified for the field '{field}' returned nothing (undefined).",
                             ErrorName.QUERY_EVALUATION_ERROR, field)
    if _is_function(result):
        raise RuntimeFailure(f"The JSONata expression '{text}' specified for the field '{field}' returned an unsupported"
                             " result type.", ErrorName.QUERY_EVALUATION_ERROR, field)
    return _plain(result)


def evaluate_template(value: Json, field: str, bindings: dict[str, Json]) -> Json:
    """Arguments / Output / Assign / ItemSelector: every `{% %}` string inside is evaluated."""
    if isinstance(value, dict):
        return {key: evaluate_template(item, f"{field}/{key}", bindings) for key, item in value.items()}
    if isinstance(value, list):
        return [evaluate_template(item, field, bindings) for item in value]
    if isinstance(value, str):
        return evaluate(value, field, bindings)
    return value


def type_name(value: Json) -> str:
    """JSON type names as Step Functions prints them in type errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
