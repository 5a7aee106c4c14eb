"""`.sync` jobs: start a job, then poll its description until it ends (the "run a job" pattern).

    arn:aws:states:::sagemaker:createTrainingJob        -> the start response (request-response)
    arn:aws:states:::sagemaker:createTrainingJob.sync   -> TaskSubmitted(start response), then poll
                                                           Describe* until Completed/Failed/Stopped

A `JobAdapter` (start/describe/stop, and optionally `progress`) is all a new service needs.
A job that ends FAILED or STOPPED raises States.TaskFailed with the description as the
cause, which is what Step Functions reports for SageMaker's .sync integrations.

Timeouts. TimeoutSeconds bounds the whole task: past it the job is stopped and the task
fails with States.Timeout. HeartbeatSeconds bounds the time between two signs of progress:
on AWS, what a job run reports while it runs; here, each poll whose answer shows the job
has moved on counts as a heartbeat. "Moved on" means the adapter's `progress(...)` marker
changed since the previous poll (an adapter can report, e.g., how much of its log the job
has written), or, for adapters without `progress`, that the Describe* response changed
(status, secondary status, timestamps, metrics). A poll that only repeats "InProgress" is
not a heartbeat: that is exactly what a hung job answers. When no heartbeat came within
HeartbeatSeconds the job is stopped and the task fails with States.HeartbeatTimeout
(https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html).
"""
from __future__ import annotations

import json
from typing import Any, Protocol

from workflow.engine.errors import ErrorName, ExecutionStopped, StatesError
from workflow.engine.integrations import TaskContext
from workflow.engine.values import Json

SYNC_SUFFIXES = (".sync", ".sync:2")


class JobAdapter(Protocol):
    """A service whose jobs Step Functions can start and, with `.sync`, wait for.

    It may also define `progress(action, parameters, started, context) -> Any`: a marker
    of how far the job has got, compared between polls for HeartbeatSeconds.
    """

    poll_seconds: float

    def start(self, action: str, parameters: Json, context: TaskContext) -> Json:
        """Starts the job; returns the API's start response (e.g. {"TrainingJobArn": ...})."""

    def describe(self, action: str, parameters: Json, started: Json, context: TaskContext) -> tuple[str, Json]:
        """Returns (SUCCEEDED | FAILED | STOPPED | RUNNING, the Describe* response)."""

    def stop(self, action: str, parameters: Json, started: Json, context: TaskContext) -> None:
        """Stops a running job (called on task timeout, heartbeat timeout or StopExecution)."""


def is_sync(resource: str) -> bool:
    """Whether a Task resource runs a job to its end (`.sync` / `.sync:2`)."""
    return resource.endswith(SYNC_SUFFIXES)


class JobIntegration:
    """`<service>:<action>` returns the start response; `<service>:<action>.sync` polls until the job ends."""

    def __init__(self, adapter: JobAdapter) -> None:
        self.adapter = adapter

    def invoke(self, resource: str, parameters: Json, context: TaskContext) -> Json:
        action = resource.rsplit(":", 1)[-1]
        sync = action.endswith(".sync")
        action = action.removesuffix(".sync")
        started = self.adapter.start(action, parameters, context)
        if not sync:
            return started
        context.submitted(started)
        progress = getattr(self.adapter, "progress", None)
        try:
            while True:
                status, description = self.adapter.describe(action, parameters, started, context)
                if status == "SUCCEEDED":
                    return description
                if status in ("FAILED", "STOPPED"):
                    raise StatesError(ErrorName.TASK_FAILED, json.dumps(description, default=str))
                context.progress(_marker(progress(action, parameters, started, context) if progress else description))
                context.sleep(self.adapter.poll_seconds)
        except (ExecutionStopped, StatesError) as error:
            if isinstance(error, ExecutionStopped) or error.error in (ErrorName.TIMEOUT, ErrorName.HEARTBEAT_TIMEOUT):
                self.adapter.stop(action, parameters, started, context)
            raise


def _marker(value: Any) -> str:
    """A comparable form of a progress marker or a description (dicts compare by content)."""
    return json.dumps(value, sort_keys=True, default=str)
