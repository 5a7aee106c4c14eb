"""The bookkeeping of a running execution: event recording, flows, and the names $$ shows.

An execution is a tree of *flows*: the top-level machine, each Parallel branch and each
Map iteration. A flow knows its scope (where it is in the machine, e.g. "/Fan#3"), the id
of its last event (what the next event's previousEventId points at), its variables and,
inside a Map, the current item.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from workflow.engine.choice import MISSING
from workflow.engine.clock import Clock
from workflow.engine.errors import StatesError
from workflow.engine.history import HistoryStore

Json = Any
_ENCODER = json.JSONEncoder()


class RuntimeFailure(Exception):
    """The engine's own processing failed (States.Runtime, States.QueryEvaluationError).

    It skips Retry and Catch; the state runner prefixes the message with the state's name.
    """

    def __init__(self, message: str, error: str = "States.Runtime", location: str | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.location = location  # the field whose evaluation failed, for EvaluationFailed events


def iso_time(epoch: float) -> str:
    """Step Functions' timestamp format in the context object: 2024-01-01T00:00:00.123Z."""
    moment = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Recorder:
    """Allocates event ids and appends events (and Map/Parallel checkpoints) to the store.

    Events are committed in small groups: at the latest `FLUSH_SECONDS` after they happen,
    and always before anything with an effect outside the engine (a Task invocation, a
    sleep, the end of the execution). A follower therefore sees events within a few
    milliseconds, and a crash can only lose the tail of a run of pure Pass/Choice steps,
    which redrive then simply repeats.
    """

    FLUSH_SECONDS = 0.05
    FLUSH_EVENTS = 500

    def __init__(self, store: HistoryStore | None, execution_arn: str, clock: Clock, first_id: int, redrive: int) -> None:
        self.store = store
        self.execution_arn = execution_arn
        self.clock = clock
        self.next_id = first_id
        self.redrive = redrive
        self.lock = threading.Lock()
        self._events: list[tuple[Any, ...]] = []
        self._checkpoints: list[tuple[str, str, Json]] = []
        self._oldest = 0.0

    def emit(self, event_type: str, previous: int, details_key: str | None = None,
             details: dict[str, Json] | None = None, scope: str = "") -> int:
        with self.lock:
            self.next_id += 1
            event_id = self.next_id
            if self.store is not None:
                payload = _ENCODER.encode({details_key: details}) if details_key else None
                if not self._events:
                    self._oldest = time.monotonic()
                self._events.append((self.execution_arn, event_id, previous, event_type, self.clock.now(), payload,
                                     scope, self.redrive))
                if len(self._events) >= self.FLUSH_EVENTS or time.monotonic() - self._oldest >= self.FLUSH_SECONDS:
                    self._flush_locked()
        return event_id

    def checkpoint(self, key: str, output: Json) -> None:
        if self.store is not None:
            with self.lock:
                self._checkpoints.append((self.execution_arn, key, output))

    def flush(self) -> None:
        with self.lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self.store is not None and (self._events or self._checkpoints):
            self.store.append_batch(self._events, self._checkpoints)
        self._events, self._checkpoints = [], []


@dataclass
class Flow:
    """A thread of control: its scope key, last event id, variables and Map item."""

    scope: str
    last_event: int
    variables: dict[str, Json] = field(default_factory=dict)
    parent: "Flow | None" = None
    map_item: dict[str, Json] | None = None
    silent: bool = False  # distributed Map children: their events are not in the parent history

    def lookup(self, name: str) -> Json:
        flow: Flow | None = self
        while flow is not None:
            if name in flow.variables:
                return flow.variables[name]
            flow = flow.parent
        return MISSING

    def child(self, scope: str, map_item: dict[str, Json] | None = None, silent: bool = False) -> "Flow":
        return Flow(scope, self.last_event, {}, self, map_item if map_item is not None else self.map_item, silent or self.silent)


@dataclass
class ExecutionInfo:
    """Names and times that the context object ($$) shows."""

    execution_arn: str
    execution_name: str
    state_machine_arn: str
    state_machine_name: str
    role_arn: str
    start_time: float
    input: Json
    redrive_count: int = 0
    express: bool = False
    region: str = "us-east-1"
    account: str = "000000000000"


# ---------------------------------------------------------------------------- interpreter


def error_details(error: StatesError) -> dict[str, str]:
    details = {}
    if error.error is not None:
        details["error"] = error.error
    if error.cause:
        details["cause"] = error.cause
    return details
