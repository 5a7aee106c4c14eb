"""The Task state, in both query languages: its parameters, its timeouts, and the history of one invocation.

The resource itself is run by the integration registered for its ARN (integrations.py);
this module turns the state's fields into that call and records it as AWS does:

    Lambda function ARN   LambdaFunctionScheduled, LambdaFunctionStarted,
                          LambdaFunctionSucceeded | LambdaFunctionFailed | LambdaFunctionTimedOut
    activity ARN          ActivityScheduled, [ActivityStarted (a worker took it)],
                          ActivitySucceeded | ActivityFailed | ActivityTimedOut (activities.py records
                          the first two, as only it knows when a worker takes the task)
    anything else         TaskScheduled, TaskStarted, [TaskSubmitted (a .sync job started, or a
                          callback's resource answered)], TaskSucceeded | TaskFailed | TaskTimedOut

Three integration patterns (https://docs.aws.amazon.com/step-functions/latest/dg/connect-to-resource.html):
request-response (the resource's answer is the result); `.sync` (jobs.py: the job's final
description is the result); `.waitForTaskToken` (callbacks.py: every attempt gets a new
token, `$$.Task.Token`, registered before the resource is called; the result is the output
someone sends back with SendTaskSuccess).

TimeoutSeconds(Path) bounds every pattern (States.Timeout). HeartbeatSeconds(Path) is
recorded for every Task (`heartbeatInSeconds`, as AWS does) and enforced where a heartbeat
exists (States.HeartbeatTimeout): a callback's SendTaskHeartbeat, a `.sync` job's progress.
Retry and Catch around the invocation are in retry.py.
"""
from __future__ import annotations

import json

from workflow.engine.callbacks import TaskTokens, new_token, wait_for_answer
from workflow.engine.context import Outcome, StateRun
from workflow.engine.errors import ErrorName, RuntimeFailure, StatesError
from workflow.engine.integrations import Binding, TaskContext
from workflow.engine.jobs import is_sync
from workflow.engine.jsonata import evaluate_template
from workflow.engine.paths import PathError
from workflow.engine.retry import with_retry_and_catch
from workflow.engine.values import DATA_LIMIT_BYTES, Json, dumps, shown

TIMEOUTS = (ErrorName.TIMEOUT, ErrorName.HEARTBEAT_TIMEOUT)


# Task (JSONPath): Resource, InputPath, Parameters, TimeoutSeconds(Path), HeartbeatSeconds(Path), Retry, Catch,
# ResultSelector, ResultPath, OutputPath, Assign
def run_task(run: StateRun) -> Outcome:
    state = run.state
    binding = _binding(run)
    effective = run.select(state.input_path, run.input)
    timeout, heartbeat = state.timeout_seconds, state.heartbeat_seconds
    if state.timeout_seconds_path is not None:
        timeout = _positive_from_path(run, "TimeoutSecondsPath", state.timeout_seconds_path, effective)
    if state.heartbeat_seconds_path is not None:
        heartbeat = _positive_from_path(run, "HeartbeatSecondsPath", state.heartbeat_seconds_path, effective)

    def attempt() -> Json:
        token = _begin_attempt(run, binding)
        parameters = effective if state.parameters is None else run.template(state.parameters, effective)
        return invoke(run, binding, parameters, timeout, heartbeat, token)

    return with_retry_and_catch(run, attempt)


# Task (JSONata): Resource, Arguments, TimeoutSeconds, HeartbeatSeconds, Retry, Catch, Output, Assign
def run_jsonata_task(run: StateRun) -> Outcome:
    state = run.state
    binding = _binding(run)
    timeout = heartbeat = None
    if state.timeout_seconds is not None:
        timeout = _positive_from_jsonata(run, "TimeoutSeconds", state.timeout_seconds)
    if state.heartbeat_seconds is not None:
        heartbeat = _positive_from_jsonata(run, "HeartbeatSeconds", state.heartbeat_seconds)

    def attempt() -> Json:
        token = _begin_attempt(run, binding)
        arguments = run.input if state.arguments is None else evaluate_template(state.arguments, "Arguments", run.bindings())
        return invoke(run, binding, arguments, timeout, heartbeat, token)

    return with_retry_and_catch(run, attempt)


def _binding(run: StateRun) -> Binding:
    integrations = run.interpreter.integrations
    binding = integrations.resolve(run.state.resource)
    if binding is None:
        raise RuntimeFailure(integrations.check(run.state.resource))
    return binding


def _begin_attempt(run: StateRun, binding: Binding) -> str | None:
    """A callback Task's new token for this attempt ($$.Task.Token); None for other Tasks."""
    if not binding.callback:
        return None
    token = new_token()
    run.task_context = {"Token": token}
    return token


def invoke(run: StateRun, binding: Binding, parameters: Json, timeout: float | None, heartbeat: float | None,
           token: str | None) -> Json:
    """Calls the state's resource with `parameters`, recording the invocation's events; returns its result."""
    state, interpreter = run.state, run.interpreter
    resource_fields = {"resource": binding.resource_name, "resourceType": binding.resource_type}
    parameters_text = dumps(parameters)
    parameters = json.loads(parameters_text)  # the integration gets its own copy, as over the wire
    if binding.lambda_events:
        scheduled = {"input": parameters_text, "inputDetails": {"truncated": False}, "resource": state.resource}
        if timeout is not None:
            scheduled["timeoutInSeconds"] = int(timeout)
        run.emit("LambdaFunctionScheduled", scheduled)
        run.emit("LambdaFunctionStarted")
    elif not binding.activity_events:
        scheduled = {"parameters": parameters_text, "region": interpreter.info.region, **resource_fields}
        if timeout is not None:
            scheduled["timeoutInSeconds"] = int(timeout)
        if heartbeat is not None:
            scheduled["heartbeatInSeconds"] = int(heartbeat)
        run.emit("TaskScheduled", scheduled)
        run.emit("TaskStarted", dict(resource_fields))

    def submitted(response: Json) -> None:
        run.emit("TaskSubmitted", {"output": dumps(response), "outputDetails": {"truncated": False}, **resource_fields})

    info, clock = interpreter.info, interpreter.clock
    deadline = None if timeout is None else clock.now() + timeout
    store = interpreter.recorder.store

    def check_stop() -> None:  # StopExecution, the machine's timeout, or a failed sibling branch/iteration
        interpreter.check_flow(run.flow)

    def record(event_type: str, details: dict[str, Json]) -> None:  # an event the integration knows the moment of
        run.emit(event_type, details)
        interpreter.recorder.flush()

    context = TaskContext(info.execution_arn, state.name, state.resource, clock, interpreter.cancel, deadline,
                          info.region, info.account, submitted, check_stop,
                          heartbeat if is_sync(state.resource) or binding.activity_events else None, store,
                          timeout, record)  # fmt: skip
    interpreter.recorder.flush()
    tokens = None
    if token is not None:
        if store is None:
            raise RuntimeFailure(f"the callback Task {state.name!r} needs the engine's store for its task token")
        tokens = TaskTokens(store)
        tokens.register(token, info.execution_arn, info.redrive_count, state.name, state.resource, parameters_text,
                        clock.now(), deadline, heartbeat)
    try:
        if tokens is not None and token is not None:
            submitted(binding.integration.invoke(binding.base_resource, parameters, context))
            interpreter.recorder.flush()
            result = wait_for_answer(tokens, token, clock, interpreter.cancel, check_stop, deadline, heartbeat)
        else:
            result = binding.integration.invoke(state.resource, parameters, context)
        if len(dumps(result).encode()) > DATA_LIMIT_BYTES:
            label = state.resource if binding.lambda_events else binding.resource_type
            raise StatesError(ErrorName.DATA_LIMIT_EXCEEDED, f"The state/task '{label}' returned a result with a size"
                                                             " exceeding the maximum number of bytes service limit.")
    except StatesError as error:
        if error.error == ErrorName.RUNTIME:
            raise RuntimeFailure(error.cause or error.error) from error
        failure = error.to_details()
        timed_out = error.error in TIMEOUTS
        if binding.lambda_events:
            run.emit("LambdaFunctionTimedOut" if timed_out else "LambdaFunctionFailed", failure)
        elif binding.activity_events:
            run.emit("ActivityTimedOut" if timed_out else "ActivityFailed", failure)
        else:
            run.emit("TaskTimedOut" if timed_out else "TaskFailed", {**failure, **resource_fields})
        raise
    finally:
        if tokens is not None and token is not None:
            tokens.close(token)  # a no-op once answered; else (the resource failed, a stop) the token dies with the attempt
    output = {"output": dumps(result), "outputDetails": {"truncated": False}}
    if binding.lambda_events:
        run.emit("LambdaFunctionSucceeded", output)
    elif binding.activity_events:
        run.emit("ActivitySucceeded", output)
    else:
        run.emit("TaskSucceeded", {**output, **resource_fields})
    return result


def _positive_from_path(run: StateRun, field_name: str, path_text: str, data: Json) -> float:
    """TimeoutSecondsPath, HeartbeatSecondsPath: a positive number, else States.Runtime."""
    try:
        value = run.lookup(path_text, data)
    except PathError as error:
        raise RuntimeFailure(f"The {field_name} parameter does not reference an input value: {path_text}") from error
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise RuntimeFailure(f"The {field_name} parameter references an invalid value: {path_text} == {shown(value)}")
    return float(value)


def _positive_from_jsonata(run: StateRun, field_name: str, value: Json) -> float:
    """TimeoutSeconds, HeartbeatSeconds of a JSONata Task (a number or an expression): positive, else
    States.QueryEvaluationError."""
    number = run.jsonata_number(value, field_name, run.bindings())
    if isinstance(number, bool) or not isinstance(number, (int, float)) or number <= 0:
        raise RuntimeFailure(f"The {field_name} field must be a positive number, but the expression returned"
                             f" {dumps(number)}", ErrorName.QUERY_EVALUATION_ERROR, field_name)
    return float(number)
