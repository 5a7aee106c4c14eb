"""Event validation shared by the handlers: field types and one way to turn a bad event into InvalidEvent.

Each handler describes its event as a pydantic model (extra fields are refused, so a typo
such as `max_request` fails loudly instead of running with a default) and calls
`parse_event` first, before any network call.
"""
from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lambdas.errors import InvalidEvent

# SageMaker's own rule for endpoint names (CreateEndpoint's EndpointName pattern).
EndpointName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")]
# s3://bucket/key; locally mapped under DDCICD_S3_ROOT by lambdas.storage.
S3Uri = Annotated[str, Field(pattern=r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$")]

EventModel = TypeVar("EventModel", bound=BaseModel)


class Event(BaseModel):
    """Base of every event model: strict about unknown fields, immutable once parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_event(model: type[EventModel], event: Any, handler: str) -> EventModel:
    """`event` as `model`, or InvalidEvent naming every bad field, e.g.

    `evaluate: bad event: max_concurrency: Input should be less than or equal to 64 (got 500)`
    """
    if not isinstance(event, dict):
        raise InvalidEvent(f"{handler}: the event must be a JSON object, got {type(event).__name__}")
    try:
        return model.model_validate(event)
    except ValidationError as error:
        problems = []
        for problem in error.errors(include_url=False):
            where = ".".join(str(part) for part in problem["loc"]) or "event"
            got = f" (got {problem['input']!r})" if problem["type"] not in {"missing"} and problem["loc"] else ""
            problems.append(f"{where}: {problem['msg']}{got}")
        raise InvalidEvent(f"{handler}: bad event: " + "; ".join(problems)) from None
