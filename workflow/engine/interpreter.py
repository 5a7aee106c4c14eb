"""The run loop: walk a flow's states, dispatch each to its handler, record what happened.

A flow (the top-level machine, a Parallel branch, a Map iteration; see context.py) walks
its states from StartAt until a terminal state; every step is written to the history (AWS
event names and detail fields) through the Recorder, which is also what redrive reads to
resume.

Where a state's behaviour lives: `HANDLERS` maps (QueryLanguage, Type) to the function
that runs it, and each handler takes a `StateRun` (context.py) and returns an `Outcome`:

    Pass, Succeed, Fail, Choice, Wait    basic_states.py
    Task                                 task.py      (integrations.py, jobs.py, messaging.py run the
                                                   resource; callbacks.py waits for task tokens)
    Parallel, Map                        fanout.py
    Retry and Catch (Task/Parallel/Map)  retry.py

A state's fields are read (and checked) by definition.py into states.State; so a new ASL
field goes there, and what it does goes in its state type's handler.

Failures of the engine's own processing (a path that does not resolve, a bad SecondsPath
value) are `RuntimeFailure`s: here they become States.Runtime (or
States.QueryEvaluationError) errors whose cause names the state and the event id it was
entered at; they fail the execution, skipping Retry and Catch, as on AWS.
"""
from __future__ import annotations

from typing import Callable

from workflow.engine import basic_states, fanout, task
from workflow.engine.clock import Clock
from workflow.engine.context import ExecutionInfo, Flow, Outcome, StateRun, StopSignal, iso_time
from workflow.engine.errors import (ErrorName, ExecutionStopped, ExecutionTimedOut, RuntimeFailure, SiblingFailed,
                                    StatesError)
from workflow.engine.integrations import IntegrationRegistry
from workflow.engine.recorder import Recorder
from workflow.engine.states import QueryLanguage, State, StateMachineDefinition
from workflow.engine.values import DATA_LIMIT_BYTES, Json, dumps

STOP_POLL_SECONDS = 0.25
JSONPATH, JSONATA = QueryLanguage.JSONPATH, QueryLanguage.JSONATA

Handler = Callable[[StateRun], Outcome]
HANDLERS: dict[tuple[QueryLanguage, str], Handler] = {
    (JSONPATH, "Pass"): basic_states.run_pass,
    (JSONPATH, "Succeed"): basic_states.run_succeed,
    (JSONPATH, "Fail"): basic_states.run_fail,
    (JSONPATH, "Choice"): basic_states.run_choice,
    (JSONPATH, "Wait"): basic_states.run_wait,
    (JSONPATH, "Task"): task.run_task,
    (JSONPATH, "Parallel"): fanout.run_parallel,
    (JSONPATH, "Map"): fanout.run_map,
    (JSONATA, "Pass"): basic_states.run_jsonata_pass,
    (JSONATA, "Succeed"): basic_states.run_jsonata_succeed,
    (JSONATA, "Fail"): basic_states.run_jsonata_fail,
    (JSONATA, "Choice"): basic_states.run_jsonata_choice,
    (JSONATA, "Wait"): basic_states.run_jsonata_wait,
    (JSONATA, "Task"): task.run_jsonata_task,
    (JSONATA, "Parallel"): fanout.run_parallel,
    (JSONATA, "Map"): fanout.run_map,
}


class Interpreter:
    """Runs one execution (or a redrive of it) against a parsed definition."""

    def __init__(self, info: ExecutionInfo, integrations: IntegrationRegistry, clock: Clock, recorder: Recorder,
                 cancel: StopSignal | None = None, stop_check: Callable[[], dict[str, Json] | None] | None = None,
                 deadline: float | None = None) -> None:
        self.info = info
        self.deadline = deadline
        self.integrations = integrations
        self.clock = clock
        self.recorder = recorder
        self.cancel = cancel or StopSignal()
        self.stop_check = stop_check  # asks the store whether another process called StopExecution
        # the first look at the store is a poll interval in (a stop from another process is noticed within one interval)
        self._last_stop_poll = 0.0 if clock.virtual else clock.now()
        self.resume_keys: set[str] = set()  # Map/Parallel states a redrive resumes (their checkpoints count)
        self.context_base = {
            "Execution": {
                "Id": info.execution_arn, "Input": info.input, "StartTime": iso_time(info.start_time),
                "Name": info.execution_name, "RoleArn": info.role_arn, "RedriveCount": info.redrive_count,
            },
            "StateMachine": {"Id": info.state_machine_arn, "Name": info.state_machine_name},
        }
        if info.express:  # EXPRESS executions cannot be redriven: no RedriveCount
            del self.context_base["Execution"]["RedriveCount"]

    # ------------------------------------------------------------------ events
    def emit(self, flow: Flow, event_type: str, details: dict[str, Json] | None = None, previous: int | None = None,
             advance: bool = True) -> int:
        """Records an event after the flow's last one; `advance=False` for AWS's side events
        (MapIterationSucceeded/Failed) that the next event does not point back to."""
        if flow.silent:
            return flow.last_event
        event_id = self.recorder.emit(event_type, flow.last_event if previous is None else previous, details, flow.scope)
        if advance:
            flow.last_event = event_id
        return event_id

    # ------------------------------------------------------------------ stopping and sleeping
    def check_stop(self) -> None:
        """Raises ExecutionTimedOut past the machine's TimeoutSeconds, ExecutionStopped after StopExecution."""
        if self.deadline is not None and self.clock.now() >= self.deadline:
            raise ExecutionTimedOut(self.info.execution_arn)
        if self.cancel.is_set():
            raise ExecutionStopped(self.info.execution_arn)
        if self.stop_check is not None:
            now = self.clock.now() if not self.clock.virtual else 0.0
            if self.clock.virtual or now - self._last_stop_poll >= STOP_POLL_SECONDS:
                self._last_stop_poll = now
                reason = self.stop_check()
                if reason is not None:
                    self.cancel.stop(reason.get("error"), reason.get("cause"))
                    raise ExecutionStopped(self.info.execution_arn)

    def check_flow(self, flow: Flow) -> None:
        """check_stop, and ExecutionStopped once a sibling branch or iteration failed the flow's fan-out."""
        self.check_stop()
        if flow.is_aborted():
            raise SiblingFailed(f"{self.info.execution_arn}: a sibling of {flow.scope} failed")

    def sleep(self, seconds: float) -> None:
        """Sleeps in slices so that StopExecution from another process is noticed."""
        self.recorder.flush()
        if self.deadline is not None and self.clock.now() + seconds > self.deadline:
            seconds = max(0.0, self.deadline - self.clock.now()) + 1e-6
        remaining = seconds
        while remaining > 0:
            self.check_stop()
            step = remaining if self.clock.virtual else min(remaining, 1.0)
            if not self.clock.sleep(step, self.cancel):
                raise ExecutionStopped(self.info.execution_arn)
            remaining -= step
        self.check_stop()

    # ------------------------------------------------------------------ machines and states
    def run_machine(self, machine: StateMachineDefinition, state_input: Json, flow: Flow, start_at: str | None = None) -> Json:
        """Runs states from StartAt (or `start_at`) to a terminal state; returns the output."""
        name = start_at or machine.start_at
        data = state_input
        while True:
            self.check_flow(flow)
            state = machine.states[name]
            data, next_name = self.run_state(state, data, flow)
            if next_name is None:
                return data
            name = next_name

    def run_state(self, state: State, raw_input: Json, flow: Flow) -> tuple[Json, str | None]:
        """StateEntered, the handler for the state's (QueryLanguage, Type), StateExited; returns (output, next state)."""
        before = flow.last_event
        entered = self.emit(flow, f"{state.type}StateEntered",
                            {"input": dumps(raw_input), "inputDetails": {"truncated": False}, "name": state.name})
        state_context: dict[str, Json] = {"Name": state.name, "EnteredTime": self.clock.now()}  # epoch: context_object formats it
        if state.type == "Task":
            state_context["RetryCount"] = 0
        try:
            output, next_name, assigned = HANDLERS[(state.query_language, state.type)](
                StateRun(self, state, raw_input, flow, state_context))
        except RuntimeFailure as failure:
            error = StatesError(failure.error, f"An error occurred while executing the state '{state.name}'"
                                               f" (entered at the event id #{entered}). {failure}", state.type)
            if failure.location is not None or failure.error == ErrorName.QUERY_EVALUATION_ERROR:
                details = {"cause": error.cause, "error": error.error, "state": state.name}
                if failure.location is not None:
                    details["location"] = failure.location
                # As AWS recorded it (conformance corpus): a Wait's EvaluationFailed follows its StateEntered,
                # any other state's links to the event before its StateEntered
                self.emit(flow, "EvaluationFailed", details, previous=entered if state.type == "Wait" else before)
                if state.type in ("Map", "Parallel"):
                    self.emit(flow, f"{state.type}StateFailed")
            raise error from failure
        except StatesError as error:
            if error.state_type is None:
                error.state_type = state.type
            raise
        if state.type != "Fail":
            output_text = dumps(output)
            if len(output_text) > DATA_LIMIT_BYTES and len(output_text.encode()) > DATA_LIMIT_BYTES:
                raise StatesError(ErrorName.DATA_LIMIT_EXCEEDED, f"The state/task '{state.name}' returned a result with a"
                                                                 " size exceeding the maximum number of bytes service limit.")
            details: dict[str, Json] = {"name": state.name, "output": output_text, "outputDetails": {"truncated": False}}
            if assigned:
                details["assignedVariables"] = {key: dumps(value) for key, value in assigned.items()}
                details["assignedVariablesDetails"] = {"truncated": False}
            self.emit(flow, f"{state.type}StateExited", details)
        if assigned:
            flow.variables.update(assigned)
        return output, next_name
