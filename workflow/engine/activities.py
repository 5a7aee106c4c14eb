"""Activities: named task queues that workers poll (CreateActivity, GetActivityTask), kept in the engine's store.

A Task state whose Resource is an activity ARN (`arn:aws:states:<region>:<account>:activity:NAME`)
puts its input on that activity's queue under a fresh task token; a worker anywhere (another
thread, another process through the API) claims it with GetActivityTask and answers with
SendTaskSuccess/SendTaskFailure on the token, as with any callback task.

    activities = Activities(engine.store)
    activities.create("arn:aws:states:us-east-1:000000000000:activity:review", "review", clock.now())
    activities.enqueue(activity_arn, token, '{"x": 1}', clock.now())
    activities.claim(activity_arn, "worker-1")   # (token, input) or None
"""
from __future__ import annotations

import threading
import time
from typing import Any

from workflow.engine.callbacks import TaskTokens, new_token, wait_for_answer
from workflow.engine.errors import EngineError, ErrorName, RuntimeFailure, StatesError
from workflow.engine.history import HistoryStore
from workflow.engine.integrations import IntegrationRegistry, TaskContext
from workflow.engine.values import Json, dumps

_SCHEMA = """
CREATE TABLE IF NOT EXISTS activities (
    arn TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS activity_tasks (
    token TEXT PRIMARY KEY,
    activity_arn TEXT NOT NULL,
    input TEXT NOT NULL,
    created REAL NOT NULL,
    worker TEXT,
    claimed REAL
);
CREATE INDEX IF NOT EXISTS activity_tasks_queue ON activity_tasks (activity_arn, worker, created);
"""
POLL_SECONDS = 0.05  # how often a long poll looks at the store (tasks enqueued by another process)
# Waiters in this process, woken at once when a task is enqueued here.
_ENQUEUED = threading.Condition()


class ActivityDoesNotExist(EngineError):
    """No activity with that ARN."""


class Activities:
    """The activities and their queued tasks."""

    def __init__(self, store: HistoryStore) -> None:
        self.store = store
        store.define(_SCHEMA)

    # ---------------------------------------------------------------- activities
    def create(self, arn: str, name: str, now: float) -> float:
        """Creates the activity, or finds it (CreateActivity is idempotent); returns its creation time."""
        self.store.write("INSERT OR IGNORE INTO activities VALUES (?, ?, ?)", (arn, name, now))
        return self.describe(arn)["created"]

    def describe(self, arn: str) -> dict[str, Any]:
        rows = self.store.query("SELECT arn, name, created FROM activities WHERE arn = ?", (arn,))
        if not rows:
            raise ActivityDoesNotExist(f"Activity Does Not Exist: '{arn}'")
        return dict(zip(("arn", "name", "created"), rows[0]))

    def exists(self, arn: str) -> bool:
        return bool(self.store.query("SELECT 1 FROM activities WHERE arn = ?", (arn,)))

    def list(self, prefix: str = "") -> list[dict[str, Any]]:
        rows = self.store.query("SELECT arn, name, created FROM activities WHERE substr(arn, 1, ?) = ? ORDER BY created",
                               (len(prefix), prefix))  # fmt: skip
        return [dict(zip(("arn", "name", "created"), row)) for row in rows]

    def delete(self, arn: str) -> None:
        """Deletes the activity; tasks still queued stay until their Task state times out or is stopped."""
        self.store.write("DELETE FROM activities WHERE arn = ?", (arn,))

    # ---------------------------------------------------------------- tasks
    def enqueue(self, activity_arn: str, token: str, input_text: str, now: float) -> None:
        self.store.write("INSERT INTO activity_tasks (token, activity_arn, input, created) VALUES (?, ?, ?, ?)",
                         (token, activity_arn, input_text, now))  # fmt: skip
        with _ENQUEUED:
            _ENQUEUED.notify_all()

    def claim(self, activity_arn: str, worker: str) -> tuple[str, str] | None:
        """The oldest unclaimed task of the activity, now claimed by `worker`; None when the queue is empty."""
        rows = self.store.query("SELECT token, input FROM activity_tasks WHERE activity_arn = ? AND worker IS NULL"
                               " ORDER BY created LIMIT 1", (activity_arn,))  # fmt: skip
        for token, input_text in rows:
            if self.store.write("UPDATE activity_tasks SET worker = ?, claimed = ? WHERE token = ? AND worker IS NULL",
                                (worker, time.time(), token)):  # fmt: skip
                return token, input_text
        return None if not rows else self.claim(activity_arn, worker)  # lost a race for that one: try the next

    def wait_for_task(self, activity_arn: str, worker: str, timeout: float) -> tuple[str, str] | None:
        """Long poll: a claimed task, or None after `timeout` seconds (GetActivityTask's 60 s)."""
        deadline = time.monotonic() + timeout
        while True:
            claimed = self.claim(activity_arn, worker)
            left = deadline - time.monotonic()
            if claimed is not None or left <= 0:
                return claimed
            with _ENQUEUED:
                _ENQUEUED.wait(min(POLL_SECONDS, left))

    def task(self, token: str) -> dict[str, Any] | None:
        rows = self.store.query("SELECT token, activity_arn, input, worker FROM activity_tasks WHERE token = ?", (token,))
        return dict(zip(("token", "activity_arn", "input", "worker"), rows[0])) if rows else None

    def remove_task(self, token: str) -> None:
        self.store.write("DELETE FROM activity_tasks WHERE token = ?", (token,))


# ------------------------------------------------------------------------ the Task side


class ActivityIntegration:
    """`arn:aws:states:<region>:<account>:activity:NAME`: queue the input under a new task token, wait for the answer.

    The token is one of callbacks.py's (TaskTokens), so SendTaskSuccess/Failure/Heartbeat,
    TimeoutSeconds and StopExecution behave as for `.waitForTaskToken` tasks. History has
    AWS's Activity* events: ActivityScheduled here, ActivityStarted (with the worker's name)
    once a worker has taken the task, then ActivitySucceeded/Failed/TimedOut (task.py).
    TimeoutSeconds counts from ActivityScheduled; HeartbeatSeconds from ActivityStarted,
    each SendTaskHeartbeat starting it again (no heartbeat can come before a worker has the
    token), else States.HeartbeatTimeout. An activity that does not exist fails the
    execution with States.Runtime before anything is scheduled, as AWS records it.
    """

    def invoke(self, resource: str, parameters: Json, context: TaskContext) -> Json:
        store: HistoryStore = context.store
        if store is None:
            raise StatesError(ErrorName.RUNTIME, f"the activity task {context.state_name!r} needs the engine's store")
        activities, tokens = Activities(store), TaskTokens(store)
        if not activities.exists(resource):
            raise RuntimeFailure(f"The activity {resource} does not exist.")
        input_text = dumps(parameters)
        scheduled: dict[str, Json] = {"input": input_text, "inputDetails": {"truncated": False}, "resource": resource}
        if context.timeout_seconds is not None:
            scheduled["timeoutInSeconds"] = int(context.timeout_seconds)
        if context.heartbeat_seconds is not None:
            scheduled["heartbeatInSeconds"] = int(context.heartbeat_seconds)
        _record(context, "ActivityScheduled", scheduled)
        token = new_token()
        now = context.clock.now()
        redrive = store.execution(context.execution_arn).redrive_count
        tokens.register(token, context.execution_arn, redrive, context.state_name, resource, input_text, now, context.deadline, None)
        activities.enqueue(resource, token, input_text, now)
        started = _Started(activities, tokens, token, context)
        try:
            return wait_for_answer(tokens, token, context.clock, context.cancel, started.poll, context.deadline,
                                   context.heartbeat_seconds)  # fmt: skip
        finally:
            started.look()  # a worker that took the task and answered between two polls: ActivityStarted comes first
            activities.remove_task(token)


class _Started:
    """Notices, while the task waits, that a worker took it: ActivityStarted, and the heartbeat clock starts."""

    def __init__(self, activities: Activities, tokens: TaskTokens, token: str, context: TaskContext) -> None:
        self.activities, self.tokens, self.token, self.context = activities, tokens, token, context
        self.seen = False

    def poll(self) -> None:
        if self.context.on_poll is not None:
            self.context.on_poll()
        self.look()

    def look(self) -> None:
        if self.seen:
            return
        task = self.activities.task(self.token)
        if task is None or task["worker"] is None:
            return
        self.seen = True
        _record(self.context, "ActivityStarted", {"workerName": task["worker"]} if task["worker"] else {})
        if self.context.heartbeat_seconds is not None:
            self.tokens.set_heartbeat_deadline(self.token, self.context.clock.now() + self.context.heartbeat_seconds)


def _record(context: TaskContext, event_type: str, details: dict[str, Json]) -> None:
    if context.record is not None:
        context.record(event_type, details)


ACTIVITY_RESOURCE = r"arn:[^:]+:states:[^:]+:\d{12}:activity:[A-Za-z0-9_\-]{1,80}"


def register_activities(registry: IntegrationRegistry) -> None:
    """Lets Task states name activities as their Resource."""
    registry.register(ACTIVITY_RESOURCE, ActivityIntegration(), activity_events=True,
                      label="arn:aws:states:<region>:<account>:activity:<name>")
