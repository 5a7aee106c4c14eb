"""Activities and task tokens: Create/Delete/Describe/ListActivities, GetActivityTask, SendTaskSuccess/Failure/Heartbeat.

GetActivityTask long-polls up to 60 seconds, as on AWS: it answers as soon as a Task state
puts work on the activity's queue, and with an empty reply (no taskToken) when none came.
"""
from __future__ import annotations

from typing import Any

from workflow.engine.activities import ActivityDoesNotExist
from workflow.engine.api import shapes
from workflow.engine.api.backend import Backend
from workflow.engine.api.requests import Request
from workflow.engine.pagination import page


def _activity_arn(request: Request, name: str) -> str:
    return f"{request.caller.arn_prefix()}activity:{name}"


def create_activity(backend: Backend, request: Request) -> dict[str, Any]:
    """Idempotent: the same name again returns the same activity."""
    name = request.name()
    tags = request.tags()
    arn = _activity_arn(request, name)
    created = backend.activities.create(arn, name, backend.engine(request.caller).clock.now())
    if tags:
        backend.tags.tag(arn, tags)
    return {"activityArn": arn, "creationDate": shapes.epoch(created)}


def describe_activity(backend: Backend, request: Request) -> dict[str, Any]:
    activity = backend.activities.describe(request.arn("activityArn", "activity"))
    return {"activityArn": activity["arn"], "name": activity["name"], "creationDate": shapes.epoch(activity["created"])}


def list_activities(backend: Backend, request: Request) -> dict[str, Any]:
    prefix = request.caller.arn_prefix()
    items, token = page(backend.activities.list(prefix), request.number("maxResults", 0), request.text("nextToken"),
                        f"activities:{prefix}")  # fmt: skip
    reply: dict[str, Any] = {"activities": [{"activityArn": item["arn"], "name": item["name"],
                                             "creationDate": shapes.epoch(item["created"])} for item in items]}  # fmt: skip
    if token:
        reply["nextToken"] = token
    return reply


def delete_activity(backend: Backend, request: Request) -> dict[str, Any]:
    arn = request.arn("activityArn", "activity")
    backend.activities.delete(arn)
    backend.tags.forget(arn)
    return {}


def get_activity_task(backend: Backend, request: Request) -> dict[str, Any]:
    arn = request.arn("activityArn", "activity")
    worker = request.text("workerName", default="")
    if not backend.activities.exists(arn):
        raise ActivityDoesNotExist(f"Activity Does Not Exist: '{arn}'")
    claimed = backend.activities.wait_for_task(arn, worker, backend.long_poll_seconds)
    if claimed is None:
        return {}
    token, input_text = claimed
    return {"taskToken": token, "input": input_text}


def send_task_success(backend: Backend, request: Request) -> dict[str, Any]:
    token = request.text("taskToken", True)
    output = request.text("output", True)
    backend.engine(request.caller).send_task_success(token, output)
    return {}


def send_task_failure(backend: Backend, request: Request) -> dict[str, Any]:
    token = request.text("taskToken", True)
    backend.engine(request.caller).send_task_failure(token, request.text("error"), request.text("cause"))
    return {}


def send_task_heartbeat(backend: Backend, request: Request) -> dict[str, Any]:
    backend.engine(request.caller).send_task_heartbeat(request.text("taskToken", True))
    return {}
