"""TagResource, UntagResource, ListTagsForResource on state machines (and activities)."""
from __future__ import annotations

from typing import Any

from workflow.engine.api import shapes
from workflow.engine.api.backend import Backend
from workflow.engine.api.errors import ApiError
from workflow.engine.api.requests import Request
from workflow.engine.errors import StateMachineDoesNotExist

TAGGABLE = ("stateMachine", "activity")


def _existing(backend: Backend, request: Request) -> str:
    """The resourceArn member, once it names a state machine or activity that exists (ResourceNotFound otherwise)."""
    arn = request.arn("resourceArn", *TAGGABLE)
    kind = arn.split(":")[5]
    try:
        if kind == "stateMachine":
            backend.engine(request.caller).describe_state_machine(arn)
        elif not backend.activity_exists(arn):
            raise StateMachineDoesNotExist(arn)
    except StateMachineDoesNotExist:
        raise ApiError("ResourceNotFound", f"Resource not found: '{arn}'") from None
    return arn


def tag_resource(backend: Backend, request: Request) -> dict[str, Any]:
    arn = _existing(backend, request)
    backend.tags.tag(arn, request.tags(required=True))
    return {}


def untag_resource(backend: Backend, request: Request) -> dict[str, Any]:
    arn = _existing(backend, request)
    keys = request.items("tagKeys", required=True)
    backend.tags.untag(arn, [str(key) for key in keys])
    return {}


def list_tags_for_resource(backend: Backend, request: Request) -> dict[str, Any]:
    arn = _existing(backend, request)
    return {"tags": shapes.tag_list(backend.tags.list(arn))}
