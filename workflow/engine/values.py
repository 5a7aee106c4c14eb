"""The JSON values the engine passes around, the marker for "no value", and Step Functions' JSON text.

Every engine module (and the local integrations) imports these from here rather than
defining its own `Json = Any`, so there is one answer to "what is a value" and one printer.
"""
from __future__ import annotations

import json
from json.encoder import c_make_encoder, encode_basestring, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, Callable, Final

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

def _not_json(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _compact_encoder(ensure_ascii: bool) -> Callable[[Json], str]:
    """`json.dumps(value, separators=(",", ":"), ensure_ascii=...)`, its C encoder built once.

    JSONEncoder.encode builds a new C encoder (and a dict for the circular check) on every
    call, half the time of encoding a small value; JSON values cannot be circular (a
    circular structure still fails, with RecursionError).
    """
    if c_make_encoder is None:  # an interpreter without the C accelerator
        return json.JSONEncoder(separators=(",", ":"), ensure_ascii=ensure_ascii).encode
    encoder = c_make_encoder(None, _not_json, encode_basestring_ascii if ensure_ascii else encode_basestring, None,
                             ":", ",", False, False, True)  # fmt: skip

    def encode(value: Json) -> str:
        return "".join(encoder(value, 0))
    return encode


dumps: Final = _compact_encoder(ensure_ascii=False)
dumps.__doc__ = """Compact JSON as Step Functions prints it in messages and history: `{"a":1}`."""
ascii_dumps: Final = _compact_encoder(ensure_ascii=True)  # the same, non-ASCII escaped: what the store keeps


def shown(value: Json) -> str:
    """A value as AWS quotes it in an error message: a string as it is, anything else as JSON text."""
    return value if isinstance(value, str) else dumps(value)
