"""The run loop: one handler per state type, input/output processing, Retry and Catch.

An execution is a tree of *flows*: the top-level machine, each Parallel branch and each
Map iteration. A flow walks its states from StartAt until a terminal state; every step is
written to the history store as it happens (AWS event names and detail fields), which is
also what redrive reads to resume.

Input and output processing of a JSONPath state, in AWS's order:
InputPath -> Parameters (or ItemSelector) -> the state's work -> ResultSelector ->
ResultPath (into the *raw* state input) -> OutputPath; Assign is evaluated against the
result and takes effect when the state exits.

Errors: `StatesError` from a state's work goes through Retry, then Catch. Failures of
the engine's own processing (a path that does not resolve, a bad SecondsPath value) are
`States.Runtime`: they fail the execution, skipping Retry and Catch, as on AWS, and the
cause names the state and the event id it was entered at.
"""
from __future__ import annotations

import json
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from workflow.engine.choice import MISSING, evaluate_rule, parse_timestamp
from workflow.engine.clock import Clock
from workflow.engine.definition import Catcher, Retrier, State, StateMachineDefinition
from workflow.engine.errors import ExecutionStopped, ExecutionTimedOut, StatesError
from workflow.engine.history import HistoryStore
from workflow.engine.integrations import IntegrationRegistry, TaskContext
from workflow.engine.intrinsics import evaluate_intrinsic, is_intrinsic, parse_intrinsic
from workflow.engine.paths import PathError, compile_path, dumps, set_at_path

Json = Any
DATA_LIMIT_BYTES = 256 * 1024  # the largest input/output/result Step Functions carries
MAX_WAIT_SECONDS = 2**31 - 1  # AWS refuses longer waits ("Wait state delay is too long.")
STOP_POLL_SECONDS = 0.25


class RuntimeFailure(Exception):
    """The engine's own processing failed (States.Runtime); the message gets the state prefix later."""


def iso_time(epoch: float) -> str:
    """Step Functions' timestamp format in the context object: 2024-01-01T00:00:00.123Z."""
    moment = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# ---------------------------------------------------------------------------- recording


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
                payload = json.dumps({details_key: details}) if details_key else None
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


class Interpreter:
    """Runs one execution (or a redrive of it) against a parsed definition."""

    def __init__(self, info: ExecutionInfo, integrations: IntegrationRegistry, clock: Clock, recorder: Recorder,
                 store: HistoryStore | None = None, cancel: threading.Event | None = None,
                 stop_check: Callable[[], dict[str, Json] | None] | None = None, deadline: float | None = None) -> None:
        self.info = info
        self.deadline = deadline
        self.integrations = integrations
        self.clock = clock
        self.recorder = recorder
        self.store = store
        self.cancel = cancel or threading.Event()
        self.stop_check = stop_check
        self.stop_reason: dict[str, Json] | None = None
        self._last_stop_poll = 0.0
        self.resume_keys: set[str] = set()
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
    def emit(self, flow: Flow, event_type: str, details_key: str | None = None, details: dict[str, Json] | None = None,
             previous: int | None = None, advance: bool = True) -> int:
        """Records an event after the flow's last one; `advance=False` for AWS's side events
        (MapIterationSucceeded/Failed) that the next event does not point back to."""
        if flow.silent:
            return flow.last_event
        event_id = self.recorder.emit(event_type, flow.last_event if previous is None else previous, details_key, details, flow.scope)
        if advance:
            flow.last_event = event_id
        return event_id

    def check_stop(self) -> None:
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
                    self.stop_reason = reason
                    self.cancel.set()
                    raise ExecutionStopped(self.info.execution_arn)

    # ------------------------------------------------------------------ machines
    def run_machine(self, machine: StateMachineDefinition, state_input: Json, flow: Flow, start_at: str | None = None) -> Json:
        """Runs states from StartAt (or `start_at`) to a terminal state; returns the output."""
        name = start_at or machine.start_at
        data = state_input
        while True:
            self.check_stop()
            state = machine.states[name]
            data, next_name = self.run_state(state, data, flow)
            if next_name is None:
                return data
            name = next_name

    def run_state(self, state: State, raw_input: Json, flow: Flow) -> tuple[Json, str | None]:
        entered = self.emit(flow, f"{state.type}StateEntered", "stateEnteredEventDetails",
                            {"input": dumps(raw_input), "inputDetails": {"truncated": False}, "name": state.name})
        state_context: dict[str, Json] = {"Name": state.name, "EnteredTime": iso_time(self.clock.now())}
        if state.type == "Task":
            state_context["RetryCount"] = 0
        try:
            handler = getattr(self, f"_state_{state.type.lower()}")
            output, next_name, assigned = handler(state, raw_input, flow, state_context)
        except RuntimeFailure as failure:
            raise StatesError("States.Runtime", f"An error occurred while executing the state '{state.name}'"
                                                f" (entered at the event id #{entered}). {failure}") from failure
        if state.type != "Fail":
            output_text = dumps(output)
            if len(output_text) > DATA_LIMIT_BYTES and len(output_text.encode()) > DATA_LIMIT_BYTES:
                raise StatesError("States.DataLimitExceeded", f"The state/task '{state.name}' returned a result with a size"
                                                              " exceeding the maximum number of bytes service limit.")
            details: dict[str, Json] = {"name": state.name, "output": output_text, "outputDetails": {"truncated": False}}
            if assigned:
                details["assignedVariables"] = {key: dumps(value) for key, value in assigned.items()}
                details["assignedVariablesDetails"] = {"truncated": False}
            self.emit(flow, f"{state.type}StateExited", "stateExitedEventDetails", details)
        if assigned:
            flow.variables.update(assigned)
        return output, next_name

    # ------------------------------------------------------------------ path helpers
    def context_object(self, state_context: dict[str, Json], flow: Flow) -> dict[str, Json]:
        context = dict(self.context_base)
        context["State"] = state_context
        if flow.map_item is not None:
            context["Map"] = {"Item": flow.map_item}
        return context

    def lookup(self, path_text: str, data: Json, state_context: dict[str, Json], flow: Flow) -> Json:
        """Resolves a path; raises PathError (missing) with Jayway's message."""
        path = compile_path(path_text)
        if path.root == "$":
            root = data
        elif path.root == "$$":
            root = self.context_object(state_context, flow)
        else:
            root = flow.lookup(path.root)
            if root is MISSING:
                raise PathError(f"No variable named ${path.root} is defined")
        return path.find(root)

    def select(self, path_text: str | None, data: Json, state_context: dict[str, Json], flow: Flow) -> Json:
        """InputPath/OutputPath/ItemsPath: null selects {}; a missing path is States.Runtime."""
        if path_text is None:
            return {}
        if path_text == "$":
            return data
        try:
            return self.lookup(path_text, data, state_context, flow)
        except PathError as error:
            raise RuntimeFailure(f"Invalid path '{path_text}' : {error}") from error

    def field_value(self, field_name: str, expression: str, data: Json, state_context: dict[str, Json], flow: Flow) -> Json:
        """The value of a `.$` field (or ErrorPath/CausePath): a path or an intrinsic call."""

        def resolve(path_text: str) -> Json:
            try:
                return self.lookup(path_text, data, state_context, flow)
            except PathError as error:
                raise RuntimeFailure(f"The JSONPath '{path_text}' specified for the field '{field_name}' could not be"
                                     f" found in the input '{dumps(data)}'") from error

        if is_intrinsic(expression):
            return evaluate_intrinsic(parse_intrinsic(expression), resolve)
        return resolve(expression)

    def template(self, value: Json, data: Json, state_context: dict[str, Json], flow: Flow) -> Json:
        """Parameters / ResultSelector / ItemSelector / Assign: `key.$` fields are evaluated."""
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if key.endswith(".$"):
                    out[key[:-2]] = self.field_value(key, item, data, state_context, flow)
                else:
                    out[key] = self.template(item, data, state_context, flow)
            return out
        if isinstance(value, list):
            return [self.template(item, data, state_context, flow) for item in value]
        return value

    def apply_result_path(self, state: State | Catcher, raw_input: Json, result: Json) -> Json:
        if state.result_path is None:
            return raw_input
        try:
            return set_at_path(raw_input, state.result_path, result)
        except PathError as error:
            raise RuntimeFailure(f"Invalid path '{state.result_path}' : {error}") from error

    def assignments(self, assign: dict[str, Json] | None, data: Json, state_context: dict[str, Json], flow: Flow) -> dict[str, Json] | None:
        if assign is None:
            return None
        return self.template(assign, data, state_context, flow)

    def finish(self, state: State, raw_input: Json, result: Json, state_context: dict[str, Json], flow: Flow,
               next_name: str | None = None) -> tuple[Json, str | None, dict[str, Json] | None]:
        """ResultPath, OutputPath and Assign for states that produce a result."""
        assigned = self.assignments(state.assign, result, state_context, flow)
        combined = self.apply_result_path(state, raw_input, result)
        output = self.select(state.output_path, combined, state_context, flow)
        return output, (next_name if next_name is not None else (None if state.end else state.next)), assigned

    # ------------------------------------------------------------------ Pass: Result, Parameters
    def _state_pass(self, state: State, raw_input: Json, flow: Flow, state_context: dict[str, Json]) -> tuple[Json, str | None, Any]:
        effective = self.select(state.input_path, raw_input, state_context, flow)
        if state.has_result:
            result = state.result
        elif state.parameters is not None:
            result = self.template(state.parameters, effective, state_context, flow)
        else:
            result = effective
        return self.finish(state, raw_input, result, state_context, flow)

    # ------------------------------------------------------------------ Succeed
    def _state_succeed(self, state: State, raw_input: Json, flow: Flow, state_context: dict[str, Json]) -> tuple[Json, None, Any]:
        effective = self.select(state.input_path, raw_input, state_context, flow)
        return self.select(state.output_path, effective, state_context, flow), None, None

    # ------------------------------------------------------------------ Fail: Error/ErrorPath, Cause/CausePath
    def _state_fail(self, state: State, raw_input: Json, flow: Flow, state_context: dict[str, Json]) -> tuple[Json, None, Any]:
        error = state.error
        cause = state.cause
        if state.error_path is not None:
            error = self.field_value("ErrorPath", state.error_path, raw_input, state_context, flow)
        if state.cause_path is not None:
            cause = self.field_value("CausePath", state.cause_path, raw_input, state_context, flow)
        raise StatesError(error if error is None or isinstance(error, str) else dumps(error),
                          cause if cause is None or isinstance(cause, str) else dumps(cause))

    # ------------------------------------------------------------------ Choice: Choices[], Default
    def _state_choice(self, state: State, raw_input: Json, flow: Flow, state_context: dict[str, Json]) -> tuple[Json, str, Any]:
        effective = self.select(state.input_path, raw_input, state_context, flow)

        def resolve(path_text: str) -> Json:
            try:
                return self.lookup(path_text, effective, state_context, flow)
            except PathError as error:
                raise RuntimeFailure(f"Invalid path '{path_text}' : {error}") from error

        def try_resolve(path_text: str) -> Json:
            try:
                return self.lookup(path_text, effective, state_context, flow)
            except PathError:
                return MISSING

        chosen, assign = None, state.assign
        for rule in state.choices:
            try:
                matched = evaluate_rule(rule, resolve, try_resolve)
            except StatesError as error:
                raise RuntimeFailure(error.cause or error.error) from error
            if matched:
                chosen, assign = rule["Next"], rule.get("Assign")
                break
        if chosen is None:
            if state.default is None:
                raise StatesError("States.NoChoiceMatched", f"No Matches! Choice state '{state.name}' matched no rule"
                                                            f" and has no Default, for input {dumps(effective)}")
            chosen = state.default
        assigned = self.assignments(assign, effective, state_context, flow)
        return self.select(state.output_path, effective, state_context, flow), chosen, assigned

    # ------------------------------------------------------------------ Wait: Seconds(Path), Timestamp(Path)
    def _state_wait(self, state: State, raw_input: Json, flow: Flow, state_context: dict[str, Json]) -> tuple[Json, str | None, Any]:
        effective = self.select(state.input_path, raw_input, state_context, flow)
        now = self.clock.now()
        if state.seconds is not None:
            delay = float(state.seconds)
        elif state.seconds_path is not None:
            delay = self._seconds_from_path(state.seconds_path, effective, state_context, flow)
        else:
            if state.timestamp is not None:
                text, label = state.timestamp, None
            else:
                label = state.timestamp_path
                try:
                    text = self.lookup(label, effective, state_context, flow)
                except PathError as error:
                    raise RuntimeFailure(f"The TimestampPath parameter does not reference an input value: {label}") from error
            moment = parse_timestamp(text)
            if moment is None:
                shown = text if isinstance(text, str) else dumps(text)
                raise RuntimeFailure("The TimestampPath parameter does not reference a valid ISO-8601 extended offset"
                                     f" date-time format string: {label} == {shown}")
            delay = moment.timestamp() - now
        if delay > MAX_WAIT_SECONDS:
            raise RuntimeFailure("Wait state delay is too long.")
        if delay > 0:
            self.sleep(delay)
        assigned = self.assignments(state.assign, effective, state_context, flow)
        output = self.select(state.output_path, effective, state_context, flow)
        return output, (None if state.end else state.next), assigned

    def _seconds_from_path(self, path_text: str, data: Json, state_context: dict[str, Json], flow: Flow) -> float:
        try:
            value = self.lookup(path_text, data, state_context, flow)
        except PathError as error:
            raise RuntimeFailure(f"The SecondsPath parameter does not reference an input value: {path_text}") from error
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
            raise RuntimeFailure(f"The SecondsPath parameter cannot be parsed as a long value: {path_text} == {_shown(value)}")
        if value < 0:
            raise RuntimeFailure(f"The SecondsPath parameter references a negative value: {path_text} == {_shown(value)}")
        return float(value)

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

    # ------------------------------------------------------------------ Retry / Catch around Task, Parallel, Map
    def with_retry_and_catch(self, state: State, raw_input: Json, flow: Flow, state_context: dict[str, Json],
                             attempt: Callable[[], Json], on_failure: Callable[[], None] | None = None) -> tuple[Json, str | None, Any]:
        """Runs `attempt` with the state's Retry policy, then its Catch; `on_failure` marks the final failure."""
        counts = [0] * len(state.retry)
        while True:
            try:
                result = attempt()
                if state.result_selector is not None:
                    result = self.template(state.result_selector, result, state_context, flow)
                return self.finish(state, raw_input, result, state_context, flow)
            except StatesError as error:
                if error.error == "States.Runtime":
                    raise
                retrier_index = _matching(state.retry, error.error)
                if retrier_index is not None:
                    retrier = state.retry[retrier_index]
                    if counts[retrier_index] < retrier.max_attempts:
                        self.sleep(_retry_delay(retrier, counts[retrier_index]))
                        counts[retrier_index] += 1
                        if "RetryCount" in state_context:
                            state_context["RetryCount"] = sum(counts)
                        continue
                if on_failure is not None:
                    on_failure()
                catcher_index = _matching(state.catch, error.error)
                if catcher_index is None:
                    raise
                catcher = state.catch[catcher_index]
                error_output = error.to_output()
                assigned = self.assignments(catcher.assign, error_output, state_context, flow)
                output = self.apply_result_path(catcher, raw_input, error_output)
                return output, catcher.next, assigned

    # ------------------------------------------------------------------ Task: Resource, Parameters, TimeoutSeconds(Path)
    def _state_task(self, state: State, raw_input: Json, flow: Flow, state_context: dict[str, Json]) -> tuple[Json, str | None, Any]:
        effective = self.select(state.input_path, raw_input, state_context, flow)
        timeout = state.timeout_seconds
        if state.timeout_seconds_path is not None:
            timeout = self._positive_from_path("TimeoutSecondsPath", state.timeout_seconds_path, effective, state_context, flow)

        def attempt() -> Json:
            parameters = effective if state.parameters is None else self.template(state.parameters, effective, state_context, flow)
            return self.invoke_task(state, parameters, flow, timeout)

        return self.with_retry_and_catch(state, raw_input, flow, state_context, attempt)

    def _positive_from_path(self, field_name: str, path_text: str, data: Json, state_context: dict[str, Json], flow: Flow) -> float:
        try:
            value = self.lookup(path_text, data, state_context, flow)
        except PathError as error:
            raise RuntimeFailure(f"The {field_name} parameter does not reference an input value: {path_text}") from error
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise RuntimeFailure(f"The {field_name} parameter references an invalid value: {path_text} == {_shown(value)}")
        return float(value)

    def invoke_task(self, state: State, parameters: Json, flow: Flow, timeout: float | None) -> Json:
        binding = self.integrations.resolve(state.resource)
        if binding is None:
            raise RuntimeFailure(self.integrations.check(state.resource))
        resource_fields = {"resource": binding.resource_name, "resourceType": binding.resource_type}
        if binding.lambda_events:
            scheduled = {"input": dumps(parameters), "inputDetails": {"truncated": False}, "resource": state.resource}
            if timeout is not None:
                scheduled["timeoutInSeconds"] = int(timeout)
            self.emit(flow, "LambdaFunctionScheduled", "lambdaFunctionScheduledEventDetails", scheduled)
            self.emit(flow, "LambdaFunctionStarted")
        else:
            scheduled = {"parameters": dumps(parameters), "region": self.info.region, **resource_fields}
            if timeout is not None:
                scheduled["timeoutInSeconds"] = int(timeout)
            self.emit(flow, "TaskScheduled", "taskScheduledEventDetails", scheduled)
            self.emit(flow, "TaskStarted", "taskStartedEventDetails", dict(resource_fields))

        def submitted(response: Json) -> None:
            self.emit(flow, "TaskSubmitted", "taskSubmittedEventDetails",
                      {"output": dumps(response), "outputDetails": {"truncated": False}, **resource_fields})

        context = TaskContext(self.info.execution_arn, state.name, state.resource, self.clock, self.cancel,
                              None if timeout is None else self.clock.now() + timeout, self.info.region, self.info.account,
                              submitted, self.check_stop)
        self.recorder.flush()
        try:
            result = binding.integration.invoke(state.resource, parameters, context)
            if len(dumps(result).encode()) > DATA_LIMIT_BYTES:
                label = state.resource if binding.lambda_events else binding.resource_type
                raise StatesError("States.DataLimitExceeded", f"The state/task '{label}' returned a result with a size"
                                                              " exceeding the maximum number of bytes service limit.")
        except StatesError as error:
            if error.error == "States.Runtime":
                raise RuntimeFailure(error.cause or error.error) from error
            failure = error_details(error)
            timed_out = error.error == "States.Timeout"
            if binding.lambda_events:
                self.emit(flow, "LambdaFunctionTimedOut" if timed_out else "LambdaFunctionFailed",
                          "lambdaFunctionTimedOutEventDetails" if timed_out else "lambdaFunctionFailedEventDetails", failure)
            else:
                self.emit(flow, "TaskTimedOut" if timed_out else "TaskFailed",
                          "taskTimedOutEventDetails" if timed_out else "taskFailedEventDetails", {**failure, **resource_fields})
            raise
        if binding.lambda_events:
            self.emit(flow, "LambdaFunctionSucceeded", "lambdaFunctionSucceededEventDetails",
                      {"output": dumps(result), "outputDetails": {"truncated": False}})
        else:
            self.emit(flow, "TaskSucceeded", "taskSucceededEventDetails",
                      {"output": dumps(result), "outputDetails": {"truncated": False}, **resource_fields})
        return result

    # ------------------------------------------------------------------ Parallel: Branches[], Parameters
    def _state_parallel(self, state: State, raw_input: Json, flow: Flow, state_context: dict[str, Json]) -> tuple[Json, str | None, Any]:
        effective = self.select(state.input_path, raw_input, state_context, flow)
        key = f"{flow.scope}/{state.name}"
        resumed = key in self.resume_keys
        self.resume_keys.discard(key)
        if self.store is not None and not resumed and not flow.silent:
            self.recorder.flush()
            self.store.clear_checkpoints(self.info.execution_arn, key + "#")

        def attempt() -> Json:
            branch_input = effective if state.parameters is None else self.template(state.parameters, effective, state_context, flow)
            self.emit(flow, "ParallelStateStarted")
            done = self._checkpoints(key)

            def run_branch(index: int) -> Json:
                branch_key = f"{key}#{index}"
                if branch_key in done:
                    return done[branch_key]
                branch_flow = flow.child(branch_key)
                try:
                    output = self.run_machine(state.branches[index], branch_input, branch_flow)
                finally:
                    flow.last_event = max(flow.last_event, branch_flow.last_event)
                self._checkpoint(branch_key, output, flow)
                return output

            results = self._fan_out(run_branch, len(state.branches), None, _needs_threads(state.branches))
            self.emit(flow, "ParallelStateSucceeded")
            return results

        return self.with_retry_and_catch(state, raw_input, flow, state_context, attempt,
                                         lambda: self.emit(flow, "ParallelStateFailed"))

    # ------------------------------------------------------------------ Map: ItemsPath, ItemSelector, ItemProcessor, MaxConcurrency, ToleratedFailure*
    def _state_map(self, state: State, raw_input: Json, flow: Flow, state_context: dict[str, Json]) -> tuple[Json, str | None, Any]:
        effective = self.select(state.input_path, raw_input, state_context, flow)
        max_concurrency = state.max_concurrency
        if state.max_concurrency_path is not None:
            max_concurrency = self._number_from_path("MaxConcurrencyPath", state.max_concurrency_path, effective, state_context, flow, int)
        items = self.select(state.items_path, effective, state_context, flow)
        if not isinstance(items, list):
            raise RuntimeFailure(f"Map state input must be an array, got {dumps(items)} at ItemsPath '{state.items_path}'")
        distributed = state.processor_mode == "DISTRIBUTED"
        key = f"{flow.scope}/{state.name}"
        resumed = key in self.resume_keys
        self.resume_keys.discard(key)
        if self.store is not None and not resumed and not flow.silent:
            self.recorder.flush()
            self.store.clear_checkpoints(self.info.execution_arn, key + "#")

        def attempt() -> Json:
            self.emit(flow, "MapStateStarted", "mapStateStartedEventDetails", {"length": len(items)})
            tolerated_count = state.tolerated_failure_count
            if state.tolerated_failure_count_path is not None:
                tolerated_count = self._number_from_path("ToleratedFailureCountPath", state.tolerated_failure_count_path,
                                                         effective, state_context, flow, int)
            if tolerated_count is not None and tolerated_count < 0:
                raise RuntimeFailure("ToleratedFailureCount cannot be negative.")
            tolerated_percentage = state.tolerated_failure_percentage
            if state.tolerated_failure_percentage_path is not None:
                tolerated_percentage = self._number_from_path("ToleratedFailurePercentagePath", state.tolerated_failure_percentage_path,
                                                              effective, state_context, flow, float)
            if tolerated_percentage is not None and not 0 <= tolerated_percentage <= 100:
                raise RuntimeFailure("ToleratedFailurePercentage must be between 0 and 100.")
            if distributed:
                partition = self.info.execution_arn.split(":")[1]
                run_arn = (f"arn:{partition}:states:{self.info.region}:{self.info.account}:mapRun:"
                           f"{self.info.state_machine_name}/{state.raw.get('Label', state.name)}:{uuid.uuid4()}")
                self.emit(flow, "MapRunStarted", "mapRunStartedEventDetails", {"mapRunArn": run_arn})
            done = self._checkpoints(key)
            failures: list[StatesError] = []
            failure_lock = threading.Lock()
            latest = [flow.last_event]

            def run_item(index: int) -> Json:
                item_key = f"{key}#{index}"
                item = {"Index": index, "Value": items[index]}
                iteration_flow = flow.child(item_key, item, silent=distributed)
                if state.item_selector is not None:
                    item_input = self.template(state.item_selector, effective, state_context, iteration_flow)
                else:
                    item_input = items[index]
                if item_key in done:
                    return done[item_key]
                iteration = {"index": index, "name": state.name}
                iteration_flow.last_event = flow.last_event  # AWS chains iterations one after the other
                self.emit(iteration_flow, "MapIterationStarted", "mapIterationStartedEventDetails", iteration)
                try:
                    output = self.run_machine(state.processor, item_input, iteration_flow)
                except StatesError as error:
                    self.emit(iteration_flow, "MapIterationFailed", "mapIterationFailedEventDetails", iteration, advance=False)
                    flow.last_event = max(flow.last_event, iteration_flow.last_event)
                    with failure_lock:
                        failures.append(error)
                        if not _tolerated(len(failures), len(items), tolerated_count, tolerated_percentage):
                            raise
                    return error.to_output()
                except ExecutionStopped:
                    self.emit(iteration_flow, "MapIterationAborted", "mapIterationAbortedEventDetails", iteration, advance=False)
                    raise
                succeeded = self.emit(iteration_flow, "MapIterationSucceeded", "mapIterationSucceededEventDetails", iteration,
                                      advance=False)
                flow.last_event = max(flow.last_event, iteration_flow.last_event)
                latest[0] = max(latest[0], succeeded)
                self._checkpoint(item_key, output, flow)
                return output

            concurrency = max_concurrency or None
            try:
                results = self._fan_out(run_item, len(items), concurrency, _needs_threads([state.processor]))
            except StatesError as error:
                if distributed:
                    self.emit(flow, "MapRunFailed", "mapRunFailedEventDetails", error_details(error))
                if tolerated_count is not None or tolerated_percentage is not None:
                    raise StatesError("States.ExceedToleratedFailureThreshold",
                                      "The specified tolerance threshold was exceeded") from error
                raise
            if distributed:
                latest[0] = self.emit(flow, "MapRunSucceeded")
            last = max(latest[0], flow.last_event)
            self.emit(flow, "MapStateSucceeded", previous=last)
            flow.last_event = last  # MapStateExited points at the same event as MapStateSucceeded
            return results

        return self.with_retry_and_catch(state, raw_input, flow, state_context, attempt,
                                         lambda: self.emit(flow, "MapStateFailed"))

    def _number_from_path(self, field_name: str, path_text: str, data: Json, state_context: dict[str, Json], flow: Flow,
                          kind: type) -> Any:
        try:
            value = self.lookup(path_text, data, state_context, flow)
        except PathError as error:
            raise RuntimeFailure(f"The {field_name} field refers to a path that does not exist: {path_text}") from error
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str):
            try:
                number = kind(value)
            except ValueError:
                number = None
        if number is None or (kind is int and not float(number).is_integer()):
            label = "integer" if kind is int else "float"
            shown = value if isinstance(value, str) else dumps(value)
            raise RuntimeFailure(f'The {field_name} field refers to value "{shown}" which is not a valid {label}: {path_text}')
        return kind(number)

    def _fan_out(self, work: Callable[[int], Json], count: int, concurrency: int | None, threaded: bool) -> list[Json]:
        """Runs work(0..count-1); in threads when the work can block (Task/Wait) and concurrency allows."""
        if count == 0:
            return []
        if not threaded or concurrency == 1 or count == 1:
            return [work(index) for index in range(count)]
        workers = min(count, concurrency or count, 64)
        stop_siblings = threading.Event()

        def guarded(index: int) -> Json:
            if stop_siblings.is_set():
                raise ExecutionStopped("sibling failed")
            return work(index)

        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sfn-iteration") as pool:
            futures = [pool.submit(guarded, index) for index in range(count)]
            results: list[Json] = []
            first_error: BaseException | None = None
            for future in futures:
                try:
                    results.append(future.result())
                except BaseException as error:  # noqa: BLE001 - collected and re-raised below
                    if first_error is None:
                        first_error = error
                        stop_siblings.set()
                    results.append(None)
        if first_error is not None:
            if isinstance(first_error, ExecutionStopped) and not self.cancel.is_set():
                raise StatesError("States.Runtime", "iteration aborted")
            raise first_error
        return results

    def _checkpoints(self, key: str) -> dict[str, Json]:
        if self.store is None:
            return {}
        return self.store.checkpoints(self.info.execution_arn, key + "#")

    def _checkpoint(self, key: str, output: Json, flow: Flow) -> None:
        if not flow.silent and key.count("#") == 1:  # iterations/branches of top-level states only
            self.recorder.checkpoint(key, output)


# ---------------------------------------------------------------------------- helpers


def _shown(value: Json) -> str:
    return value if isinstance(value, str) else dumps(value)


def _error_matches(names: tuple[str, ...], error: str | None) -> bool:
    if error is None:
        return False
    for name in names:
        if name == error:
            return True
        if name == "States.ALL" and error != "States.Runtime":
            return True
        if name == "States.TaskFailed" and error not in ("States.Timeout", "States.Runtime"):
            return True
    return False


def _matching(entries: tuple[Retrier, ...] | tuple[Catcher, ...], error: str | None) -> int | None:
    for index, entry in enumerate(entries):
        if _error_matches(entry.error_equals, error):
            return index
    return None


def _retry_delay(retrier: Retrier, attempt: int) -> float:
    delay = retrier.interval_seconds * (retrier.backoff_rate ** attempt)
    if retrier.max_delay_seconds is not None:
        delay = min(delay, retrier.max_delay_seconds)
    if retrier.jitter_strategy == "FULL":
        delay = random.uniform(0, delay)
    return delay


def _tolerated(failures: int, total: int, count: int | None, percentage: float | None) -> bool:
    if count is None and percentage is None:
        return False
    if count is not None and failures <= count:
        return True
    if percentage is not None and total and failures * 100.0 / total <= percentage:
        return True
    return False


def _needs_threads(machines: tuple[StateMachineDefinition, ...] | list[StateMachineDefinition]) -> bool:
    """Only work that can block (Task, Wait) gains from threads; Pass-only fan-outs run in order."""
    return any(state.type in ("Task", "Wait") for machine in machines for state in machine.iter_states())


def error_details(error: StatesError) -> dict[str, str]:
    details = {}
    if error.error is not None:
        details["error"] = error.error
    if error.cause:
        details["cause"] = error.cause
    return details


def loads_or_text(text: str | None) -> Json:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text
