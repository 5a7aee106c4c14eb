"""One API call as the operations see it: who calls (account, region) and its checked members.

    request = Request(body, Caller("eu-west-1", "123456789012"))
    name = request.text("name", required=True)                  # ValidationException if absent
    arn = request.arn("stateMachineArn", "stateMachine")       # InvalidArn if malformed

Members are checked the way AWS checks them: a missing required member or one of the wrong
type is a ValidationException naming the member; a malformed ARN is InvalidArn.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from workflow.engine.api.errors import ApiError, validation

# Resource ARNs of Step Functions: arn:<partition>:states:<region>:<account>:<kind>:<name>[:...]
_ARN = re.compile(r"arn:(aws[a-z\-]*):states:([a-z0-9\-]+):(\d{12}):(stateMachine|execution|express|activity):(.+)")
_NAME = re.compile(r"[A-Za-z0-9_\-]{1,80}")


@dataclass(frozen=True)
class Caller:
    """The account and region a request is for (from its SigV4 credential)."""

    region: str
    account: str
    access_key: str = ""

    def arn_prefix(self, partition: str = "aws") -> str:
        return f"arn:{partition}:states:{self.region}:{self.account}:"


class Request:
    """The JSON body of a call, read member by member."""

    def __init__(self, body: dict[str, Any], caller: Caller) -> None:
        self.body = body
        self.caller = caller

    def _member(self, member: str, kind: type | tuple[type, ...], label: str, required: bool) -> Any:
        value = self.body.get(member)
        if value is None:
            if required:
                raise validation(member, "Member must not be null")
            return None
        if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
            raise ApiError("SerializationException", f"{member}: expected {label}, got {type(value).__name__}")
        return value

    def text(self, member: str, required: bool = False, default: str | None = None) -> str | None:
        value = self._member(member, str, "a string", required)
        return default if value is None else value

    def number(self, member: str, default: int | None = None, low: int = 0, high: int = 1000) -> int | None:
        value = self._member(member, int, "an integer", False)
        if value is None:
            return default
        if not low <= value <= high:
            raise validation(member, f"Member must have value between {low} and {high} inclusive")
        return value

    def flag(self, member: str, default: bool) -> bool:
        value = self._member(member, bool, "a boolean", False)
        return default if value is None else value

    def items(self, member: str, required: bool = False) -> list[Any]:
        return self._member(member, list, "a list", required) or []

    def choice(self, member: str, allowed: tuple[str, ...], default: str | None = None) -> str | None:
        value = self.text(member)
        if value is None:
            return default
        if value not in allowed:
            raise validation(member, f"Member must satisfy enum value set: [{', '.join(allowed)}]")
        return value

    def name(self, member: str = "name", required: bool = True) -> str | None:
        value = self.text(member, required)
        if value is not None and not _NAME.fullmatch(value):
            raise ApiError("InvalidName", f"Invalid Name: '{value}'")
        return value

    def arn(self, member: str, *kinds: str, required: bool = True) -> str | None:
        """An ARN member of one of `kinds` (stateMachine, execution, express, activity); InvalidArn otherwise."""
        value = self.text(member, required)
        if value is None:
            return None
        match = _ARN.fullmatch(value)
        if match is None or match.group(4) not in kinds:
            raise ApiError("InvalidArn", f"Invalid Arn: 'Resource type not valid in this context: {value}'")
        return value

    def tags(self, member: str = "tags", required: bool = False) -> dict[str, str]:
        """A Tag list ([{"key", "value"}]) as a dict."""
        tags = {}
        for item in self.items(member, required):
            if not isinstance(item, dict) or not isinstance(item.get("key"), str):
                raise ApiError("ValidationException", f"{member}: each tag needs a string key, got {item!r}")
            tags[item["key"]] = str(item.get("value", ""))
        return tags
