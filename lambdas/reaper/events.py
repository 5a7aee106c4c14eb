"""The two events EventBridge sends the reaper, and the settings it reads from its environment.

A status change of an execution of the pipeline's state machine (FAILED, TIMED_OUT, ABORTED),
shaped as in https://docs.aws.amazon.com/step-functions/latest/dg/cw-events.html:

    {"version": "0", "detail-type": "Step Functions Execution Status Change", "source": "aws.states",
     "resources": ["arn:aws:states:...:execution:ddcicd:NAME"],
     "detail": {"executionArn": "...", "stateMachineArn": "arn:aws:states:...:stateMachine:ddcicd",
                "name": "NAME", "status": "FAILED", "startDate": 1551225014968, "stopDate": 1551225017576, ...}}

and the hourly schedule (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-run-lambda-schedule.html):

    {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events",
     "resources": ["arn:aws:events:...:rule/ddcicd-reaper-hourly"], "detail": {}}

AWS adds fields over time, so unknown ones are ignored here (unlike the pipeline's own events).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from lambdas.errors import InvalidEvent

RETENTION_HOURS_VARIABLE = "DDCICD_RETENTION_HOURS"
PRODUCTION_ENDPOINT_VARIABLE = "DDCICD_PRODUCTION_ENDPOINT"
STATE_MACHINE_VARIABLE = "DDCICD_STATE_MACHINE_ARN"


class _AwsEvent(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class StatusChangeDetail(_AwsEvent):
    executionArn: str  # noqa: N815 - AWS's field names
    stateMachineArn: str  # noqa: N815
    status: str


class StatusChange(_AwsEvent):
    source: Literal["aws.states"]
    detail_type: Literal["Step Functions Execution Status Change"] = Field(alias="detail-type")
    detail: StatusChangeDetail


class Scheduled(_AwsEvent):
    source: Literal["aws.events"]
    detail_type: Literal["Scheduled Event"] = Field(alias="detail-type")


Trigger = Union[StatusChange, Scheduled]
_TRIGGER: TypeAdapter[Trigger] = TypeAdapter(Trigger)


def parse_trigger(event: Any) -> Trigger:
    """The event as one of the two shapes above, or InvalidEvent saying what it got."""
    if not isinstance(event, dict):
        raise InvalidEvent(f"reaper: the event must be a JSON object, got {type(event).__name__}")
    try:
        return _TRIGGER.validate_python(event)
    except ValidationError:
        raise InvalidEvent(f"reaper: expected a Step Functions Execution Status Change or a Scheduled Event, got "
                           f"source {event.get('source')!r}, detail-type {event.get('detail-type')!r}") from None


@dataclass(frozen=True)
class ReaperSettings:
    state_machine_arn: str
    production_endpoint: str
    retention_hours: float


def settings_from_environment(environment: dict[str, str] | None = None) -> ReaperSettings:
    """What `ddcicd aws deploy` sets on the function (from the pipeline config)."""
    environment = dict(os.environ if environment is None else environment)
    missing = [name for name in (STATE_MACHINE_VARIABLE, PRODUCTION_ENDPOINT_VARIABLE, RETENTION_HOURS_VARIABLE)
               if not environment.get(name)]
    if missing:
        raise InvalidEvent(f"reaper: the function's environment lacks {', '.join(missing)} (set by `ddcicd aws deploy`)")
    try:
        retention = float(environment[RETENTION_HOURS_VARIABLE])
    except ValueError:
        retention = -1.0
    if not retention >= 0:
        raise InvalidEvent(f"reaper: {RETENTION_HOURS_VARIABLE}={environment[RETENTION_HOURS_VARIABLE]!r} "
                           "must be a number of hours >= 0")
    return ReaperSettings(environment[STATE_MACHINE_VARIABLE], environment[PRODUCTION_ENDPOINT_VARIABLE], retention)
