"""The run loop: one handler per state type, input/output processing, Retry and Catch.

A flow (the top-level machine, a Parallel branch, a Map iteration; see flows.py) walks its
states from StartAt until a terminal state; every step is written to the history store as
it happens (AWS event names and detail fields), which is also what redrive reads to resume.
Parallel and Map live in fanout.py.

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
from typing import Any, Callable

from workflow.engine.choice import MISSING, evaluate_rule, parse_timestamp
from workflow.engine.clock import Clock
from workflow.engine.errors import ExecutionStopped, ExecutionTimedOut, StatesError
from workflow.engine.fanout import FanOutStates
from workflow.engine.jsonata_states import JsonataStates
from workflow.engine.flows import ExecutionInfo, Flow, Recorder, RuntimeFailure, error_details, iso_time
from workflow.engine.history import HistoryStore
from workflow.engine.integrations import IntegrationRegistry, TaskContext
from workflow.engine.intrinsics import evaluate_intrinsic, is_intrinsic, parse_intrinsic
from workflow.engine.paths import PathError, compile_path, dumps, set_at_path
from workflow.engine.states import Catcher, Retrier, State, StateMachineDefinition

Json = Any
DATA_LIMIT_BYTES = 256 * 1024  # the largest input/output/result Step Functions carries
MAX_WAIT_SECONDS = 2**31 - 1  # AWS refuses longer waits ("Wait state delay is too long.")
STOP_POLL_SECONDS = 0.25


class Interpreter(FanOutStates, JsonataStates):
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
            prefix = "_jsonata_" if state.jsonata and state.type not in ("Map", "Parallel") else "_state_"
            handler = getattr(self, f"{prefix}{state.type.lower()}")
            output, next_name, assigned = handler(state, raw_input, flow, state_context)
        except RuntimeFailure as failure:
            error = StatesError(failure.error, f"An error occurred while executing the state '{state.name}'"
                                               f" (entered at the event id #{entered}). {failure}")
            if failure.location is not None:
                self.emit(flow, "EvaluationFailed", "evaluationFailedEventDetails",
                          {"cause": error.cause, "error": error.error, "location": failure.location, "state": state.name})
                if state.type in ("Map", "Parallel"):
                    self.emit(flow, f"{state.type}StateFailed")
            error.state_type = state.type  # type: ignore[attr-defined]
            raise error from failure
        except StatesError as error:
            if not hasattr(error, "state_type"):
                error.state_type = state.type  # type: ignore[attr-defined]
            raise
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
                if state.jsonata:
                    bindings = self.bindings(flow, state_context, raw_input, result=result)
                    return self.jsonata_finish(state, bindings, result, None if state.end else state.next)
                if state.result_selector is not None:
                    result = self.template(state.result_selector, result, state_context, flow)
                return self.finish(state, raw_input, result, state_context, flow)
            except StatesError as error:
                if error.error in ("States.Runtime", "States.QueryEvaluationError"):  # not retriable, not catchable
                    if on_failure is not None:
                        on_failure()
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
                if state.jsonata:
                    bindings = self.bindings(flow, state_context, raw_input, errorOutput=error_output)
                    return self.jsonata_finish(catcher, bindings, error_output, catcher.next)
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
        parameters_text = dumps(parameters)
        parameters = json.loads(parameters_text)  # the integration gets its own copy, as over the wire
        if binding.lambda_events:
            scheduled = {"input": parameters_text, "inputDetails": {"truncated": False}, "resource": state.resource}
            if timeout is not None:
                scheduled["timeoutInSeconds"] = int(timeout)
            self.emit(flow, "LambdaFunctionScheduled", "lambdaFunctionScheduledEventDetails", scheduled)
            self.emit(flow, "LambdaFunctionStarted")
        else:
            scheduled = {"parameters": parameters_text, "region": self.info.region, **resource_fields}
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
