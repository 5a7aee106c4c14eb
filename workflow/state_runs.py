"""Per-state status, timing, input and output, folded from an execution's history.

The one fold of GetExecutionHistory events into what each state did: `ddcicd run`'s live
table and summary, the console's graph colours and the run report all read it, so a
state is "failed" or "caught", and takes so many seconds, in one place only.

    runs = state_runs(engine.get_execution_history(arn)["events"], description["status"])
    follow_execution(engine, arn, show=print_batch)     # new events as they are appended

Each event is attributed to a state by following `previousEventId` back to a
`*StateEntered` event, so concurrent Map iterations and Parallel branches do not mix up
their Task events. The latest visit wins: a redriven execution shows the retried state
as it ended the second time.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from workflow.engine import Engine

FAILURES = ("Failed", "TimedOut", "Aborted")
Event = dict[str, Any]


@dataclass
class StateRun:
    """What one state did in an execution (its last visit; `visits` counts them all)."""

    name: str
    status: str = "running"  # running | succeeded | failed | caught | aborted
    entered: float | None = None
    exited: float | None = None
    seconds: float = 0.0
    visits: int = 0
    active: int = 0
    input: str | None = None
    output: str | None = None
    error: str | None = None
    cause: str | None = None
    resource: str | None = None

    def seconds_at(self, now: float) -> float:
        """Time spent so far: the finished visits plus the open one, if the state is running."""
        if self.status == "running" and self.entered is not None and self.exited is None:
            return self.seconds + max(0.0, now - self.entered)
        return self.seconds


def _details(event: Event) -> dict[str, Any]:
    return next((value for key, value in event.items() if key.endswith("EventDetails") and isinstance(value, dict)), {})


def _epoch(event: Event) -> float:
    moment = event["timestamp"]
    return moment if isinstance(moment, (int, float)) else moment.timestamp()


@dataclass
class HistoryFold:
    """Folds events one at a time (a live view feeds it batches); `runs` is in first-entry order."""

    runs: dict[str, StateRun] = field(default_factory=dict)
    _owner: dict[int, str] = field(default_factory=dict)
    _groups: list[str] = field(default_factory=list)  # Map and Parallel states entered and not yet exited, innermost last
    _last_moment: float = 0.0

    def apply(self, event: Event) -> StateRun | None:
        """Folds one event; returns the state's run when this event ended it or failed it."""
        kind, details = event["type"], _details(event)
        self._last_moment = _epoch(event)
        if kind.endswith("StateEntered"):
            self._enter(event, details)
            return None
        if kind.endswith("StateExited") and details.get("name") in self.runs:
            name = details["name"]
            if name in self._groups:
                self._groups.remove(name)
        elif kind.startswith(("Map", "Parallel")) and self._groups:  # MapStateFailed etc.: the group, not its last child
            name = self._groups[-1]
        else:
            name = self._owner.get(event.get("previousEventId", 0))
        if kind.startswith("Execution"):
            if kind != "ExecutionStarted":  # ended or redriven: no visit is still open
                for run in self.runs.values():
                    run.active = 0
                self._groups.clear()
            return None
        if name is None:
            return None
        self._owner[event["id"]] = name
        return self._update(self.runs[name], kind, details, event)

    def _enter(self, event: Event, details: dict[str, Any]) -> None:
        name = details["name"]
        self._owner[event["id"]] = name
        run = self.runs.setdefault(name, StateRun(name))
        run.visits += 1
        run.active += 1
        run.status, run.entered, run.exited = "running", _epoch(event), None
        run.input, run.output, run.error, run.cause = details.get("input"), None, None, None
        if event["type"].startswith(("Map", "Parallel")):
            self._groups.append(name)

    @staticmethod
    def _update(run: StateRun, kind: str, details: dict[str, Any], event: Event) -> StateRun | None:
        finished = None
        if kind.endswith("StateExited"):
            run.active = max(0, run.active - 1)
            run.exited = _epoch(event)
            run.seconds += run.exited - (run.entered or run.exited)
            run.output = details.get("output")
            if run.active == 0:
                run.status = "caught" if run.status == "failed" else "succeeded"
                finished = run
        elif kind.endswith(FAILURES) and not kind.startswith(("MapIteration", "MapRun", "ParallelBranch")):
            run.status = "failed"
            run.error, run.cause = details.get("error"), details.get("cause")
            finished = run
        elif kind in ("TaskScheduled", "TaskStarted") and run.status == "failed":
            run.status = "running"  # a Retrier is trying again
        if kind == "TaskScheduled":  # "lambda:invoke", "sagemaker:createTrainingJob.sync"
            run.resource = ":".join(part for part in (details.get("resourceType"), details.get("resource")) if part)
        return finished

    def finish(self, execution_status: str) -> dict[str, StateRun]:
        """Once the execution has ended, a state still running was cut short: failed or aborted."""
        if execution_status != "RUNNING":
            for run in self.runs.values():
                if run.status == "running":
                    run.status = "aborted" if execution_status in ("ABORTED", "TIMED_OUT") else "failed"
                    if run.entered is not None and run.exited is None:
                        run.seconds += max(0.0, self._last_moment - run.entered)
        return self.runs


def state_runs(events: list[Event], execution_status: str = "RUNNING") -> dict[str, StateRun]:
    """State name -> StateRun, in the order the states were first entered."""
    fold = HistoryFold()
    for event in events:
        fold.apply(event)
    return fold.finish(execution_status)


def state_runs_json(events: list[Event], execution_status: str) -> dict[str, dict[str, Any]]:
    return {name: asdict(run) for name, run in state_runs(events, execution_status).items()}


def failed_state(runs: dict[str, StateRun]) -> str | None:
    """The state an ended execution stopped in: the last one that failed or was cut short."""
    stopped = [run.name for run in runs.values() if run.status in ("failed", "aborted")]
    return stopped[-1] if stopped else None


def parsed_outputs(runs: dict[str, StateRun]) -> dict[str, Any]:
    """State name -> the JSON output of its last exit (states that never exited are absent)."""
    outputs: dict[str, Any] = {}
    for name, run in runs.items():
        if run.output is not None:
            try:
                outputs[name] = json.loads(run.output)
            except ValueError:
                continue
    return outputs


def readable_cause(cause: str | None, limit: int = 2000) -> str:
    """A Lambda's cause is its error JSON and a .sync job's its Describe* response: the message in it."""
    text = cause or ""
    try:
        parsed = json.loads(text)
    except ValueError:
        return text[:limit]
    if isinstance(parsed, dict):
        for key in ("FailureReason", "errorMessage", "Cause", "cause"):
            if parsed.get(key):
                return str(parsed[key])[:limit]
    return text[:limit]


def follow_execution(engine: Engine, execution_arn: str, show: Callable[[list[Event]], None], after_id: int = 0,
                     poll_seconds: float = 0.2) -> dict[str, Any]:
    """Hands each batch of new events (after `after_id`) to `show` until the execution ends.

    Returns the final describe_execution. The status is read before the events: the engine
    writes an execution's last event before its status, so the batch read after a final
    status holds every event there is.
    """
    while True:
        description = engine.describe_execution(execution_arn)
        events = engine.get_execution_history(execution_arn, after_id=after_id)["events"]
        if events:
            after_id = events[-1]["id"]
        show(events)
        if description["status"] != "RUNNING":
            return description
        time.sleep(poll_seconds)
