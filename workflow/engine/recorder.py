"""The only writer of an execution's history: event ids, events, checkpoints and how it ended.

Everything that appends to `events` goes through a `Recorder`, so event ids are allocated
in one place: the state events of every flow (after ExecutionStarted, id 1, which is the
execution's row: HistoryStore.create_execution), ExecutionRedriven,
and the closing event (ExecutionSucceeded, ExecutionFailed, ExecutionTimedOut or
ExecutionAborted), which also sets the execution's status. Map and Parallel results are
checkpointed here too, and read back here when a redrive resumes them.

    store.create_execution(arn, name, machine_arn, ...)                  # the row, which is ExecutionStarted
    recorder = Recorder.started(store, record, clock)
    event_id = recorder.emit("PassStateEntered", previous, {"name": "P", ...})
    recorder.succeeded(event_id, output)                                 # ExecutionSucceeded, SUCCEEDED
"""
from __future__ import annotations

import threading
import time
from typing import Any

from workflow.engine.clock import Clock
from workflow.engine.errors import StatesError
from workflow.engine.history import ExecutionRecord, ExecutionStatus, HistoryStore
from workflow.engine.values import Json, ascii_dumps, dumps

_DETAILS_KEYS: dict[str, str] = {}


def details_key(event_type: str) -> str:
    """The `<name>EventDetails` key AWS gives an event type's details.

    >>> details_key("TaskScheduled"), details_key("MapStateEntered")
    ('taskScheduledEventDetails', 'stateEnteredEventDetails')
    """
    key = _DETAILS_KEYS.get(event_type)
    if key is None:
        name = event_type
        for suffix in ("StateEntered", "StateExited"):  # every state type shares these two
            if name.endswith(suffix):
                name = suffix
        key = _DETAILS_KEYS[event_type] = name[0].lower() + name[1:] + "EventDetails"
    return key


class Recorder:
    """Allocates event ids and appends events (and Map/Parallel checkpoints) to the store.

    Events are committed in small groups: at the latest `FLUSH_SECONDS` after they happen,
    and always before anything with an effect outside the engine (a Task invocation, a
    sleep, the end of the execution). A follower therefore sees events within a few
    milliseconds, and a crash can only lose the tail of a run of pure Pass/Choice steps,
    which redrive then simply repeats. Without a store (`store=None`) it only counts ids.
    """

    FLUSH_SECONDS = 0.05
    FLUSH_EVENTS = 500

    def __init__(self, store: HistoryStore | None, execution_arn: str, clock: Clock, last_id: int = 0, redrive: int = 0) -> None:
        self.store = store
        self.execution_arn = execution_arn
        self.clock = clock
        self.last_id = last_id  # the id of the latest event; the next one gets last_id + 1
        self.redrive = redrive  # the redrive generation stamped on each event
        self._lock = threading.Lock()
        self._events: list[tuple[Any, ...]] = []
        self._checkpoints: list[tuple[str, str, Json]] = []
        self._oldest = 0.0

    @classmethod
    def started(cls, store: HistoryStore, record: ExecutionRecord, clock: Clock) -> "Recorder":
        """The recorder of an execution the store has just created: its row is its ExecutionStarted, event 1."""
        return cls(store, record.arn, clock, last_id=1)

    @classmethod
    def resume(cls, store: HistoryStore, record: ExecutionRecord, clock: Clock) -> "Recorder":
        """The recorder of an execution that already has events, continuing after the last one."""
        return cls(store, record.arn, clock, store.last_event_id(record.arn), record.redrive_count)

    # ---------------------------------------------------------------- events
    def emit(self, event_type: str, previous: int, details: dict[str, Json] | None = None, scope: str = "",
             timestamp: float | None = None) -> int:
        """Appends an event (details None: the event has no details object); returns its id."""
        with self._lock:
            self.last_id += 1
            event_id = self.last_id
            if self.store is not None:
                payload = None if details is None else ascii_dumps({details_key(event_type): details})
                if not self._events:
                    self._oldest = time.monotonic()
                self._events.append((self.execution_arn, event_id, previous, event_type,
                                     self.clock.now() if timestamp is None else timestamp, payload,
                                     scope, self.redrive))
                if len(self._events) >= self.FLUSH_EVENTS or time.monotonic() - self._oldest >= self.FLUSH_SECONDS:
                    self._flush_locked()
        return event_id

    def flush(self) -> None:
        """Commits what is pending; called before every effect outside the engine."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self.store is not None and (self._events or self._checkpoints):
            self.store.append_batch(self._events, self._checkpoints)
        self._events, self._checkpoints = [], []

    # ---------------------------------------------------------------- checkpoints (Map/Parallel results, for redrive)
    def checkpoint(self, key: str, output: Json) -> None:
        """Keeps the output of a Map iteration or Parallel branch, e.g. key "/Fan#3"."""
        if self.store is not None:
            with self._lock:
                self._checkpoints.append((self.execution_arn, key, output))

    def checkpoints(self, prefix: str) -> dict[str, Json]:
        """The committed checkpoints whose key starts with `prefix`: what a redrive need not re-run."""
        if self.store is None:
            return {}
        return self.store.checkpoints(self.execution_arn, prefix)

    def clear_checkpoints(self, prefix: str) -> None:
        """Forgets the checkpoints under `prefix` (a fresh run of a Map/Parallel state)."""
        if self.store is not None:
            self.flush()
            self.store.clear_checkpoints(self.execution_arn, prefix)

    # ---------------------------------------------------------------- the end of the execution (or of one redrive)
    def redriven(self, redrive_count: int) -> int:
        """ExecutionRedriven, written before the redriven run starts; returns its id."""
        event_id = self.emit("ExecutionRedriven", 0, {"redriveCount": redrive_count})
        self.flush()
        return event_id

    def succeeded(self, previous: int, output: Json) -> None:
        text = dumps(output)  # DescribeExecution's output is the same text as the event's
        self.emit("ExecutionSucceeded", previous, {"output": text, "outputDetails": {"truncated": False}})
        self._close(ExecutionStatus.SUCCEEDED, output=text)

    def failed(self, previous: int, error: StatesError) -> None:
        self.emit("ExecutionFailed", previous, error.to_details())
        self._close(ExecutionStatus.FAILED, error=error.error, cause=error.cause or None)

    def timed_out(self, previous: int, error: str, cause: str) -> None:
        self.emit("ExecutionTimedOut", previous, {"error": error, "cause": cause})
        self._close(ExecutionStatus.TIMED_OUT, error=error, cause=cause)

    def aborted(self, previous: int, error: str | None, cause: str | None) -> None:
        details = {key: value for key, value in (("error", error), ("cause", cause)) if value is not None}
        self.emit("ExecutionAborted", previous, details)
        self._close(ExecutionStatus.ABORTED, error=error, cause=cause)

    def _close(self, status: ExecutionStatus, output: str | None = None, error: str | None = None, cause: str | None = None) -> None:
        """The closing event, pending events and checkpoints, and the execution's status: one transaction."""
        with self._lock:
            if self.store is not None:
                self.store.finish_execution(self.execution_arn, status, self.clock.now(), output=output, error=error, cause=cause,
                                            events=self._events, checkpoints=self._checkpoints)
            self._events, self._checkpoints = [], []
