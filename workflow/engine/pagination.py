"""`maxResults`/`nextToken` over a list, as the Step Functions List* and GetExecutionHistory calls page.

    items, token = page(executions, max_results=100, next_token=None)   # first page
    items, token = page(executions, max_results=100, next_token=token)  # the next one

A token is opaque to the caller: the position of the next item, signed with the list's
identity (`scope`), so a token from one listing is refused by another (AWS's InvalidToken).
The default and largest page is 1,000 items, as on AWS.
"""
from __future__ import annotations

import base64
import hashlib
import json
from typing import Sequence, TypeVar

from workflow.engine.errors import EngineError

T = TypeVar("T")
MAX_PAGE = 1000


class InvalidToken(EngineError):
    """A nextToken that this listing did not hand out."""


def _signature(scope: str, position: int) -> str:
    return hashlib.sha256(f"{scope}\n{position}".encode()).hexdigest()[:16]


def encode_token(scope: str, position: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([position, _signature(scope, position)]).encode()).decode()


def decode_token(scope: str, token: str) -> int:
    try:
        position, signature = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError) as error:
        raise InvalidToken(f"Invalid Token: {token!r} is not a token this API handed out") from error
    if not isinstance(position, int) or signature != _signature(scope, position):
        raise InvalidToken(f"Invalid Token: {token!r} does not belong to this listing")
    return position


def page(items: Sequence[T], max_results: int | None, next_token: str | None, scope: str = "") -> tuple[list[T], str | None]:
    """One page of `items` and the token of the next page (None on the last page).

    max_results 0 or None means the default page size (MAX_PAGE), as AWS treats 0.
    """
    start = decode_token(scope, next_token) if next_token else 0
    size = min(max_results or MAX_PAGE, MAX_PAGE)
    end = start + size
    return list(items[start:end]), (encode_token(scope, end) if end < len(items) else None)
