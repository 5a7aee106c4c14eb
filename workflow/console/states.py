"""Per-state status, timing, input and output, folded from an execution's history.

Each event is attributed to a state by following `previousEventId` back to a
`*StateEntered` event, so concurrent Map iterations and Parallel branches do not mix up
their Task events. The latest visit wins: a redriven execution shows the retried state
as it ended the second time.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

FAILURES = ("Failed", "TimedOut", "Aborted")


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


def _details(event: dict[str, Any]) -> dict[str, Any]:
    return next((value for key, value in event.items() if key.endswith("EventDetails") and isinstance(value, dict)), {})


def _epoch(event: dict[str, Any]) -> float:
    moment = event["timestamp"]
    return moment if isinstance(moment, (int, float)) else moment.timestamp()


def state_runs(events: list[dict[str, Any]], execution_status: str = "RUNNING") -> dict[str, StateRun]:
    """State name -> StateRun, in the order the states were first entered."""
    runs: dict[str, StateRun] = {}
    owner: dict[int, str] = {}
    groups: list[str] = []  # Map and Parallel states entered and not yet exited, innermost last
    for event in events:
        kind, details = event["type"], _details(event)
        if kind.endswith("StateEntered"):
            name = details["name"]
            owner[event["id"]] = name
            run = runs.setdefault(name, StateRun(name))
            run.visits += 1
            run.active += 1
            run.status, run.entered, run.exited = "running", _epoch(event), None
            run.input, run.output, run.error, run.cause = details.get("input"), None, None, None
            if kind.startswith(("Map", "Parallel")):
                groups.append(name)
            continue
        if kind.endswith("StateExited") and details.get("name") in runs:
            name = details["name"]
            if name in groups:
                groups.remove(name)
        elif kind.startswith(("Map", "Parallel")) and groups:  # MapStateFailed etc.: the group, not its last child
            name = groups[-1]
        else:
            name = owner.get(event.get("previousEventId", 0))
        if kind.startswith("Execution"):
            if kind != "ExecutionStarted":  # ended or redriven: no visit is still open
                for run in runs.values():
                    run.active = 0
                groups.clear()
            continue
        if name is None:
            continue
        owner[event["id"]] = name
        run = runs[name]
        if kind.endswith("StateExited"):
            run.active = max(0, run.active - 1)
            run.exited = _epoch(event)
            run.seconds += run.exited - (run.entered or run.exited)
            run.output = details.get("output")
            if run.active == 0:
                run.status = "caught" if run.status == "failed" else "succeeded"
        elif kind.endswith(FAILURES) and not kind.startswith(("MapIteration", "MapRun", "ParallelBranch")):
            run.status = "failed"
            run.error, run.cause = details.get("error"), details.get("cause")
        elif kind in ("TaskScheduled", "TaskStarted") and run.status == "failed":
            run.status = "running"  # a Retrier is trying again
        if kind == "TaskScheduled":  # "lambda:invoke", "sagemaker:createTrainingJob.sync"
            run.resource = ":".join(part for part in (details.get("resourceType"), details.get("resource")) if part)
    if execution_status != "RUNNING":
        for run in runs.values():
            if run.status == "running":
                run.status = "aborted" if execution_status in ("ABORTED", "TIMED_OUT") else "failed"
                if run.entered is not None and run.exited is None:
                    run.seconds += max(0.0, _last_moment(events) - run.entered)
    return runs


def _last_moment(events: list[dict[str, Any]]) -> float:
    return _epoch(events[-1]) if events else 0.0


def state_runs_json(events: list[dict[str, Any]], execution_status: str) -> dict[str, dict[str, Any]]:
    return {name: asdict(run) for name, run in state_runs(events, execution_status).items()}
