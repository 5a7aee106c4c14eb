"""Reaper Lambda: delete the staging resources of abandoned faulted executions on AWS.

EventBridge invokes it when an execution of the pipeline ends FAILED, TIMED_OUT or ABORTED
and once an hour (infra/pipeline.yaml). Each time it sweeps the whole state machine with
the rules of lambdas/reaper/reaping.py: a faulted execution is reaped once a newer run has
started after it ended, or once it ended more than DDCICD_RETENTION_HOURS ago; the
production endpoint (DDCICD_PRODUCTION_ENDPOINT) and what it serves are never touched.

    handler({"detail-type": "Scheduled Event", "source": "aws.events", ...}, context)
    -> {"trigger": "Scheduled Event", "deleted": ["deleted endpoint ddcicd-...-staging of ..."], "kept": [...], ...}

Each line is also printed, so the function's CloudWatch log says what was reaped and why.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from lambdas.errors import InvalidEvent
from lambdas.reaper.aws import SageMakerResources, StepFunctionsExecutions
from lambdas.reaper.events import StatusChange, parse_trigger, settings_from_environment
from lambdas.reaper.reaping import sweep
from lambdas.runtime import session


def reap(event: Any, now: datetime) -> dict[str, Any]:
    """The handler with its clock passed in (tests move time; Lambda passes the wall clock)."""
    trigger = parse_trigger(event)
    settings = settings_from_environment()
    if isinstance(trigger, StatusChange) and trigger.detail.stateMachineArn != settings.state_machine_arn:
        raise InvalidEvent(f"reaper: the event is about {trigger.detail.stateMachineArn}; "
                           f"this function reaps {settings.state_machine_arn} only")
    report = sweep(
        StepFunctionsExecutions(session().client("stepfunctions"), settings.state_machine_arn),
        SageMakerResources(session().client("sagemaker")),
        settings.production_endpoint,
        now,
        timedelta(hours=settings.retention_hours),
    )
    for line in report.lines():
        print(line)
    described = trigger.detail.executionArn if isinstance(trigger, StatusChange) else "schedule"
    return {"trigger": f"{trigger.detail_type}: {described}", **report.to_json()}


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    return reap(event, datetime.now(timezone.utc))
