"""The Task state, in both query languages: its parameters, its timeout, and the history of one invocation.

The resource itself is run by the integration registered for its ARN (integrations.py);
this module turns the state's fields into that call and records it as AWS does:

    Lambda function ARN   LambdaFunctionScheduled, LambdaFunctionStarted,
                          LambdaFunctionSucceeded | LambdaFunctionFailed | LambdaFunctionTimedOut
    anything else         TaskScheduled, TaskStarted, [TaskSubmitted (a .sync job started)],
                          TaskSucceeded | TaskFailed | TaskTimedOut

Retry and Catch around the invocation are in retry.py. Task-state behaviour that is not
the resource's (timeouts, heartbeats, task tokens) belongs here.
"""
from __future__ import annotations

import json

from workflow.engine.context import Outcome, StateRun
from workflow.engine.errors import ErrorName, RuntimeFailure, StatesError
from workflow.engine.jsonata import evaluate_template
from workflow.engine.integrations import TaskContext
from workflow.engine.paths import PathError
from workflow.engine.retry import with_retry_and_catch
from workflow.engine.values import DATA_LIMIT_BYTES, Json, dumps, shown


# Task (JSONPath): Resource, InputPath, Parameters, TimeoutSeconds(Path), Retry, Catch,
# ResultSelector, ResultPath, OutputPath, Assign
def run_task(run: StateRun) -> Outcome:
    state = run.state
    effective = run.select(state.input_path, run.input)
    timeout = state.timeout_seconds
    if state.timeout_seconds_path is not None:
        timeout = _positive_from_path(run, "TimeoutSecondsPath", state.timeout_seconds_path, effective)

    def attempt() -> Json:
        parameters = effective if state.parameters is None else run.template(state.parameters, effective)
        return invoke(run, parameters, timeout)

    return with_retry_and_catch(run, attempt)


# Task (JSONata): Resource, Arguments, TimeoutSeconds, Retry, Catch, Output, Assign
def run_jsonata_task(run: StateRun) -> Outcome:
    state = run.state
    timeout = None
    if state.timeout_seconds is not None:
        timeout = run.jsonata_number(state.timeout_seconds, "TimeoutSeconds", run.bindings())

    def attempt() -> Json:
        arguments = run.input if state.arguments is None else evaluate_template(state.arguments, "Arguments", run.bindings())
        return invoke(run, arguments, timeout)

    return with_retry_and_catch(run, attempt)


def invoke(run: StateRun, parameters: Json, timeout: float | None) -> Json:
    """Calls the state's resource with `parameters`, recording the invocation's events; returns its result."""
    state, interpreter = run.state, run.interpreter
    binding = interpreter.integrations.resolve(state.resource)
    if binding is None:
        raise RuntimeFailure(interpreter.integrations.check(state.resource))
    resource_fields = {"resource": binding.resource_name, "resourceType": binding.resource_type}
    parameters_text = dumps(parameters)
    parameters = json.loads(parameters_text)  # the integration gets its own copy, as over the wire
    if binding.lambda_events:
        scheduled = {"input": parameters_text, "inputDetails": {"truncated": False}, "resource": state.resource}
        if timeout is not None:
            scheduled["timeoutInSeconds"] = int(timeout)
        run.emit("LambdaFunctionScheduled", scheduled)
        run.emit("LambdaFunctionStarted")
    else:
        scheduled = {"parameters": parameters_text, "region": interpreter.info.region, **resource_fields}
        if timeout is not None:
            scheduled["timeoutInSeconds"] = int(timeout)
        run.emit("TaskScheduled", scheduled)
        run.emit("TaskStarted", dict(resource_fields))

    def submitted(response: Json) -> None:
        run.emit("TaskSubmitted", {"output": dumps(response), "outputDetails": {"truncated": False}, **resource_fields})

    info = interpreter.info
    context = TaskContext(info.execution_arn, state.name, state.resource, interpreter.clock, interpreter.cancel,
                          None if timeout is None else interpreter.clock.now() + timeout, info.region, info.account,
                          submitted, interpreter.check_stop)
    interpreter.recorder.flush()
    try:
        result = binding.integration.invoke(state.resource, parameters, context)
        if len(dumps(result).encode()) > DATA_LIMIT_BYTES:
            label = state.resource if binding.lambda_events else binding.resource_type
            raise StatesError(ErrorName.DATA_LIMIT_EXCEEDED, f"The state/task '{label}' returned a result with a size"
                                                             " exceeding the maximum number of bytes service limit.")
    except StatesError as error:
        if error.error == ErrorName.RUNTIME:
            raise RuntimeFailure(error.cause or error.error) from error
        failure = error.to_details()
        timed_out = error.error == ErrorName.TIMEOUT
        if binding.lambda_events:
            run.emit("LambdaFunctionTimedOut" if timed_out else "LambdaFunctionFailed", failure)
        else:
            run.emit("TaskTimedOut" if timed_out else "TaskFailed", {**failure, **resource_fields})
        raise
    output = {"output": dumps(result), "outputDetails": {"truncated": False}}
    if binding.lambda_events:
        run.emit("LambdaFunctionSucceeded", output)
    else:
        run.emit("TaskSucceeded", {**output, **resource_fields})
    return result


def _positive_from_path(run: StateRun, field_name: str, path_text: str, data: Json) -> float:
    """TimeoutSecondsPath (and later HeartbeatSecondsPath): a positive number, else States.Runtime."""
    try:
        value = run.lookup(path_text, data)
    except PathError as error:
        raise RuntimeFailure(f"The {field_name} parameter does not reference an input value: {path_text}") from error
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise RuntimeFailure(f"The {field_name} parameter references an invalid value: {path_text} == {shown(value)}")
    return float(value)
