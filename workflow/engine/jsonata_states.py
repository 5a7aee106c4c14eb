"""State handlers for states whose QueryLanguage is JSONata (a mixin of Interpreter).

A JSONata state has no InputPath/Parameters/ResultSelector/ResultPath/OutputPath; it has
`Arguments` (what a Task or Parallel receives, default: the state input), `Output` (what
the state passes on; default: the result for Task/Parallel/Map, else the input) and
`Assign`, all of which may hold `{% %}` expressions over `$states.input`,
`$states.result`, `$states.errorOutput`, `$states.context` and the variables.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workflow.engine.choice import parse_timestamp
from workflow.engine.errors import StatesError
from workflow.engine.flows import Flow, RuntimeFailure
from workflow.engine.jsonata import QUERY_EVALUATION_ERROR, evaluate, evaluate_template, expression_of
from workflow.engine.states import Catcher, State

if TYPE_CHECKING:
    from workflow.engine.interpreter import Interpreter

Json = Any
Step = tuple[Json, "str | None", "dict[str, Json] | None"]
_UNSET = object()


class JsonataStates:
    """Pass, Succeed, Fail, Choice, Wait and Task in JSONata, plus the helpers Map/Parallel share."""

    def bindings(self: "Interpreter", flow: Flow, state_context: dict[str, Json], raw_input: Json,
                 **states: Json) -> dict[str, Json]:
        """Variables (outer scopes first, inner ones win) and $states for one evaluation."""
        chain = []
        current: Flow | None = flow
        while current is not None:
            chain.append(current.variables)
            current = current.parent
        values: dict[str, Json] = {}
        for variables in reversed(chain):
            values.update(variables)
        values["states"] = {"input": raw_input, "context": self.context_object(state_context, flow), **states}
        return values

    def jsonata_finish(self: "Interpreter", state: State | Catcher, bindings: dict[str, Json], default_output: Json,
                       next_name: str | None) -> Step:
        """Output (or the default) and Assign, both evaluated before any variable changes."""
        output = evaluate_template(state.output, "Output", bindings) if state.has_output else default_output
        assigned = evaluate_template(state.assign, "Assign", bindings) if state.assign is not None else None
        return output, next_name, assigned

    def jsonata_number(self: "Interpreter", value: Json, field: str, bindings: dict[str, Json]) -> Json:
        """A numeric field that may be an expression (TimeoutSeconds, MaxConcurrency, ...)."""
        return evaluate(value, field, bindings) if expression_of(value) is not None else value

    # Pass: Output, Assign
    def _jsonata_pass(self: "Interpreter", state: State, raw_input: Json, flow: Flow, state_context: dict[str, Json]) -> Step:
        return self.jsonata_finish(state, self.bindings(flow, state_context, raw_input), raw_input,
                                   None if state.end else state.next)

    # Succeed: Output
    def _jsonata_succeed(self: "Interpreter", state: State, raw_input: Json, flow: Flow, state_context: dict[str, Json]) -> Step:
        output, _, _ = self.jsonata_finish(state, self.bindings(flow, state_context, raw_input), raw_input, None)
        return output, None, None

    # Fail: Error, Cause (strings or expressions)
    def _jsonata_fail(self: "Interpreter", state: State, raw_input: Json, flow: Flow, state_context: dict[str, Json]) -> Step:
        bindings = self.bindings(flow, state_context, raw_input)
        error = evaluate(state.error, "Error", bindings) if state.error is not None else None
        cause = evaluate(state.cause, "Cause", bindings) if state.cause is not None else None
        raise StatesError(error, cause)

    # Choice: Choices[].Condition, Default, Output, Assign
    def _jsonata_choice(self: "Interpreter", state: State, raw_input: Json, flow: Flow, state_context: dict[str, Json]) -> Step:
        bindings = self.bindings(flow, state_context, raw_input)
        for index, rule in enumerate(state.choices):
            condition = rule["Condition"]
            matched = evaluate(condition, "Condition", bindings) if isinstance(condition, str) else condition
            if not isinstance(matched, bool):
                raise RuntimeFailure(f"The JSONata expression '{expression_of(condition)}' specified for the field"
                                     f" 'Condition' returned an unexpected result type. Expected 'boolean'.",
                                     QUERY_EVALUATION_ERROR)
            if matched:
                output = evaluate_template(rule["Output"], "Output", bindings) if "Output" in rule else _UNSET
                if output is _UNSET:
                    output = evaluate_template(state.output, "Output", bindings) if state.has_output else raw_input
                assign = rule.get("Assign", state.assign)
                assigned = evaluate_template(assign, "Assign", bindings) if assign is not None else None
                return output, rule["Next"], assigned
        if state.default is None:
            raise StatesError("States.NoChoiceMatched", f"No Matches! Choice state '{state.name}' matched no rule and has no Default")
        return self.jsonata_finish(state, bindings, raw_input, state.default)

    # Wait: Seconds or Timestamp (values or expressions), Output, Assign
    def _jsonata_wait(self: "Interpreter", state: State, raw_input: Json, flow: Flow, state_context: dict[str, Json]) -> Step:
        bindings = self.bindings(flow, state_context, raw_input)
        if state.seconds is not None:
            seconds = self.jsonata_number(state.seconds, "Seconds", bindings)
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
                raise RuntimeFailure(f"The Seconds field must be a non-negative integer, got {seconds!r}", QUERY_EVALUATION_ERROR)
            delay = float(seconds)
        else:
            text = evaluate(state.timestamp, "Timestamp", bindings)
            moment = parse_timestamp(text)
            if moment is None:
                raise RuntimeFailure("The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time format"
                                     f" string: {text}", QUERY_EVALUATION_ERROR, "Timestamp")
            delay = moment.timestamp() - self.clock.now()
        if delay > 0:
            self.sleep(delay)
        return self.jsonata_finish(state, bindings, raw_input, None if state.end else state.next)

    # Task: Resource, Arguments, TimeoutSeconds, Retry, Catch, Output, Assign
    def _jsonata_task(self: "Interpreter", state: State, raw_input: Json, flow: Flow, state_context: dict[str, Json]) -> Step:
        timeout = None
        if state.timeout_seconds is not None:
            timeout = self.jsonata_number(state.timeout_seconds, "TimeoutSeconds", self.bindings(flow, state_context, raw_input))

        def attempt() -> Json:
            bindings = self.bindings(flow, state_context, raw_input)
            arguments = raw_input if state.arguments is None else evaluate_template(state.arguments, "Arguments", bindings)
            return self.invoke_task(state, arguments, flow, timeout)

        return self.with_retry_and_catch(state, raw_input, flow, state_context, attempt)
