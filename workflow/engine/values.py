"""The JSON values the engine passes around, the marker for "no value", and Step Functions' JSON text.

Every engine module (and the local integrations) imports these from here rather than
defining its own `Json = Any`, so there is one answer to "what is a value" and one printer.
"""
from __future__ import annotations

import json
from typing import Any, Final

# Anything json.loads can return: dict, list, str, int, float, bool or None.
Json = Any

# The largest input, output or Task result Step Functions carries (256 KiB of UTF-8 JSON text).
DATA_LIMIT_BYTES: Final = 256 * 1024


class _Missing:
    """No value: a path that selects nothing, or a field the document does not have, told apart from JSON null."""

    _instance: "_Missing | None" = None

    def __new__(cls) -> "_Missing":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()

_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def dumps(value: Json) -> str:
    """Compact JSON as Step Functions prints it in messages and history: `{"a":1}`."""
    return _COMPACT.encode(value)


def shown(value: Json) -> str:
    """A value as AWS quotes it in an error message: a string as it is, anything else as JSON text."""
    return value if isinstance(value, str) else dumps(value)
