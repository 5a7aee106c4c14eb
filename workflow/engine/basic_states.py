"""Pass, Succeed, Fail, Choice and Wait: the states that do no outside work, in both query languages.

Each handler takes the `StateRun` of one entry into the state and returns its `Outcome`;
the comment above each names the ASL fields it reads. Input and output processing are
methods of StateRun (context.py).

A JSONPath state processes its input through InputPath, Parameters, ResultPath,
OutputPath and Assign. A JSONata state has none of these; it has `Output` (what the state
passes on; default: its input) and `Assign`, which may hold `{% %}` expressions over
`$states.input`, `$states.context` and the variables (`StateRun.bindings`).

Task is in task.py, Parallel and Map in fanout.py.
"""
from __future__ import annotations

from workflow.engine.choice import evaluate_rule, parse_timestamp
from workflow.engine.context import Outcome, StateRun
from workflow.engine.errors import ErrorName, RuntimeFailure, StatesError
from workflow.engine.jsonata import evaluate, evaluate_template, expression_of
from workflow.engine.paths import PathError
from workflow.engine.values import MISSING, Json, dumps, shown

MAX_WAIT_SECONDS = 2**31 - 1  # AWS refuses longer waits ("Wait state delay is too long.")


# ---------------------------------------------------------------------------- JSONPath


# Pass: InputPath, Result or Parameters, ResultPath, OutputPath, Assign
def run_pass(run: StateRun) -> Outcome:
    state = run.state
    effective = run.select(state.input_path, run.input)
    if state.has_result:
        result = state.result
    elif state.parameters is not None:
        result = run.template(state.parameters, effective)
    else:
        result = effective
    return run.finish(result)


# Succeed: InputPath, OutputPath
def run_succeed(run: StateRun) -> Outcome:
    effective = run.select(run.state.input_path, run.input)
    return Outcome(run.select(run.state.output_path, effective), None, None)


# Fail: Error or ErrorPath, Cause or CausePath (a path or an intrinsic call)
def run_fail(run: StateRun) -> Outcome:
    state = run.state
    error, cause = state.error, state.cause
    if state.error_path is not None:
        error = run.field_value("ErrorPath", state.error_path, run.input)
    if state.cause_path is not None:
        cause = run.field_value("CausePath", state.cause_path, run.input)
    raise StatesError(error if error is None or isinstance(error, str) else dumps(error),
                      cause if cause is None or isinstance(cause, str) else dumps(cause))


# Choice: InputPath, Choices[] (rules, each with Next and Assign), Default, OutputPath, Assign
def run_choice(run: StateRun) -> Outcome:
    state = run.state
    effective = run.select(state.input_path, run.input)

    def resolve(path_text: str) -> Json:
        try:
            return run.lookup(path_text, effective)
        except PathError as error:
            raise RuntimeFailure(f"Invalid path '{path_text}' : {error}") from error

    def try_resolve(path_text: str) -> Json:
        try:
            return run.lookup(path_text, effective)
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
            raise StatesError(ErrorName.NO_CHOICE_MATCHED, f"No Matches! Choice state '{state.name}' matched no rule"
                                                           f" and has no Default, for input {dumps(effective)}")
        chosen = state.default
    assigned = run.assignments(assign, effective)
    return Outcome(run.select(state.output_path, effective), chosen, assigned)


# Wait: InputPath, Seconds or SecondsPath or Timestamp or TimestampPath, OutputPath, Assign
def run_wait(run: StateRun) -> Outcome:
    state = run.state
    effective = run.select(state.input_path, run.input)
    now = run.interpreter.clock.now()
    if state.seconds is not None:
        delay = float(state.seconds)
    elif state.seconds_path is not None:
        delay = _seconds_from_path(run, state.seconds_path, effective)
    else:
        if state.timestamp is not None:
            text, label = state.timestamp, None
        else:
            label = state.timestamp_path
            try:
                text = run.lookup(label, effective)
            except PathError as error:
                raise RuntimeFailure(f"The TimestampPath parameter does not reference an input value: {label}") from error
        moment = parse_timestamp(text)
        if moment is None:
            raise RuntimeFailure("The TimestampPath parameter does not reference a valid ISO-8601 extended offset"
                                 f" date-time format string: {label} == {shown(text)}")
        delay = moment.timestamp() - now
    if delay > MAX_WAIT_SECONDS:
        raise RuntimeFailure("Wait state delay is too long.")
    if delay > 0:
        run.interpreter.sleep(delay)
    assigned = run.assignments(state.assign, effective)
    return Outcome(run.select(state.output_path, effective), state.next, assigned)


def _seconds_from_path(run: StateRun, path_text: str, data: Json) -> float:
    """SecondsPath: a non-negative whole number, else States.Runtime with AWS's text."""
    try:
        value = run.lookup(path_text, data)
    except PathError as error:
        raise RuntimeFailure(f"The SecondsPath parameter does not reference an input value: {path_text}") from error
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
        raise RuntimeFailure(f"The SecondsPath parameter cannot be parsed as a long value: {path_text} == {shown(value)}")
    if value < 0:
        raise RuntimeFailure(f"The SecondsPath parameter references a negative value: {path_text} == {shown(value)}")
    return float(value)


# ---------------------------------------------------------------------------- JSONata


# Pass: Output, Assign
def run_jsonata_pass(run: StateRun) -> Outcome:
    return run.jsonata_finish(run.state, run.bindings(), run.input, run.state.next)


# Succeed: Output
def run_jsonata_succeed(run: StateRun) -> Outcome:
    output, _, _ = run.jsonata_finish(run.state, run.bindings(), run.input, None)
    return Outcome(output, None, None)


# Fail: Error, Cause (strings or expressions)
def run_jsonata_fail(run: StateRun) -> Outcome:
    state = run.state
    bindings = run.bindings()
    error = evaluate(state.error, "Error", bindings) if state.error is not None else None
    cause = evaluate(state.cause, "Cause", bindings) if state.cause is not None else None
    raise StatesError(error, cause)


# Choice: Choices[] (Condition, Next, Output, Assign), Default, Output, Assign
def run_jsonata_choice(run: StateRun) -> Outcome:
    state = run.state
    bindings = run.bindings()
    for rule in state.choices:
        condition = rule["Condition"]
        matched = evaluate(condition, "Condition", bindings) if isinstance(condition, str) else condition
        if not isinstance(matched, bool):
            raise RuntimeFailure(f"The JSONata expression '{expression_of(condition)}' specified for the field"
                                 f" 'Condition' returned an unexpected result type. Expected 'boolean'.",
                                 ErrorName.QUERY_EVALUATION_ERROR)
        if matched:
            output = evaluate_template(rule["Output"], "Output", bindings) if "Output" in rule else MISSING
            if output is MISSING:
                output = evaluate_template(state.output, "Output", bindings) if state.has_output else run.input
            assign = rule.get("Assign", state.assign)
            assigned = evaluate_template(assign, "Assign", bindings) if assign is not None else None
            return Outcome(output, rule["Next"], assigned)
    if state.default is None:
        raise StatesError(ErrorName.NO_CHOICE_MATCHED, f"No Matches! Choice state '{state.name}' matched no rule and has no Default")
    return run.jsonata_finish(state, bindings, run.input, state.default)


# Wait: Seconds or Timestamp (values or expressions), Output, Assign
def run_jsonata_wait(run: StateRun) -> Outcome:
    state = run.state
    bindings = run.bindings()
    if state.seconds is not None:
        seconds = run.jsonata_number(state.seconds, "Seconds", bindings)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise RuntimeFailure(f"The Seconds field must be a non-negative integer, got {seconds!r}",
                                 ErrorName.QUERY_EVALUATION_ERROR)
        delay = float(seconds)
    else:
        text = evaluate(state.timestamp, "Timestamp", bindings)
        moment = parse_timestamp(text)
        if moment is None:
            raise RuntimeFailure("The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time format"
                                 f" string: {text}", ErrorName.QUERY_EVALUATION_ERROR, "Timestamp")
        delay = moment.timestamp() - run.interpreter.clock.now()
    if delay > 0:
        run.interpreter.sleep(delay)
    return run.jsonata_finish(state, bindings, run.input, state.next)
