"""What a state handler works with: `StateRun`, one entry into one state, and the flow it runs in.

An execution is a tree of *flows*: the top-level machine, each Parallel branch and each
Map iteration. A flow knows its scope (where it is in the machine, e.g. "/Fan#3"), the id
of its last event (what the next event's previousEventId points at), its variables and,
inside a Map, the current item.

Every handler receives a `StateRun`: the interpreter (events, sleeping, nested machines),
the state, its raw input, its flow and `$$.State`. Its methods are the input and output
processing the handlers share, for JSONPath states

    InputPath -> Parameters (or ItemSelector) -> the state's work -> ResultSelector ->
    ResultPath (into the *raw* state input) -> OutputPath; Assign over the result

and for JSONata states (Arguments, Output and Assign over `$states` and the variables).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, NamedTuple

from workflow.engine.errors import RuntimeFailure
from workflow.engine.intrinsics import evaluate_intrinsic, is_intrinsic, parse_intrinsic
from workflow.engine.jsonata import evaluate, evaluate_template, expression_of
from workflow.engine.paths import PathError, compile_path, set_at_path
from workflow.engine.states import Catcher, State
from workflow.engine.values import MISSING, Json, dumps

if TYPE_CHECKING:
    from workflow.engine.interpreter import Interpreter


def iso_time(epoch: float) -> str:
    """Step Functions' timestamp format in the context object: 2024-01-01T00:00:00.123Z."""
    moment = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"  # "...123+00:00" -> "...123Z"; faster than strftime


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


class StopSignal(threading.Event):
    """Set when the execution must stop (StopExecution here or, polled, in another process), with its error and cause."""

    def __init__(self) -> None:
        super().__init__()
        self.error: str | None = None
        self.cause: str | None = None

    def stop(self, error: str | None = None, cause: str | None = None) -> None:
        self.error, self.cause = error, cause
        self.set()


@dataclass
class Flow:
    """A thread of control: its scope key, last event id, variables and Map item."""

    scope: str
    last_event: int
    variables: dict[str, Json] = field(default_factory=dict)
    parent: "Flow | None" = None
    map_item: dict[str, Json] | None = None
    silent: bool = False  # distributed Map children: their events are not in the parent history
    aborted: threading.Event | None = None  # set when a sibling branch or iteration failed the fan-out

    def lookup(self, name: str) -> Json:
        flow: Flow | None = self
        while flow is not None:
            if name in flow.variables:
                return flow.variables[name]
            flow = flow.parent
        return MISSING

    def child(self, scope: str, map_item: dict[str, Json] | None = None, silent: bool = False,
              aborted: threading.Event | None = None) -> "Flow":
        return Flow(scope, self.last_event, {}, self, map_item if map_item is not None else self.map_item,
                    silent or self.silent, aborted)

    def is_aborted(self) -> bool:
        """Whether this flow or one it runs in was aborted because a sibling failed."""
        flow: Flow | None = self
        while flow is not None:
            if flow.aborted is not None and flow.aborted.is_set():
                return True
            flow = flow.parent
        return False


class Outcome(NamedTuple):
    """What a state handler returns: the state output, the next state (None: the flow ends) and Assign's values."""

    output: Json
    next_state: str | None
    assigned: dict[str, Json] | None


@dataclass(slots=True)
class StateRun:
    """One entry into one state: the explicit context every state handler receives."""

    interpreter: "Interpreter"
    state: State
    input: Json  # the raw state input
    flow: Flow
    state_context: dict[str, Json]  # $$.State: Name, EnteredTime (epoch seconds until $$ shows it) and a Task's RetryCount
    task_context: dict[str, Json] | None = None  # $$.Task: {"Token": ...} during an attempt of a callback Task

    def in_flow(self, flow: Flow) -> "StateRun":
        """The same state run, evaluated in another flow (a Map iteration's, for ItemSelector)."""
        return replace(self, flow=flow)

    def emit(self, event_type: str, details: dict[str, Json] | None = None, previous: int | None = None,
             advance: bool = True) -> int:
        """Records an event in this run's flow (see Interpreter.emit)."""
        return self.interpreter.emit(self.flow, event_type, details, previous, advance)

    # ------------------------------------------------------------------ JSONPath
    def context_object(self) -> dict[str, Json]:
        """$$: Execution, StateMachine, State (Task.Token in a callback Task, Map.Item inside a Map iteration)."""
        context = dict(self.interpreter.context_base)
        context["State"] = {**self.state_context, "EnteredTime": iso_time(self.state_context["EnteredTime"])}
        if self.task_context is not None:
            context["Task"] = self.task_context
        if self.flow.map_item is not None:
            context["Map"] = {"Item": self.flow.map_item}
        return context

    def lookup(self, path_text: str, data: Json) -> Json:
        """Resolves a path over `data` ($), $$ or a variable; raises PathError (missing) with Jayway's message."""
        path = compile_path(path_text)
        if path.root == "$":
            root = data
        elif path.root == "$$":
            root = self.context_object()
        else:
            root = self.flow.lookup(path.root)
            if root is MISSING:
                raise PathError(f"No variable named ${path.root} is defined")
        return path.find(root)

    def select(self, path_text: str | None, data: Json) -> Json:
        """InputPath/OutputPath/ItemsPath: null selects {}; a missing path is States.Runtime."""
        if path_text is None:
            return {}
        if path_text == "$":
            return data
        try:
            return self.lookup(path_text, data)
        except PathError as error:
            raise RuntimeFailure(f"Invalid path '{path_text}' : {error}") from error

    def field_value(self, field_name: str, expression: str, data: Json) -> Json:
        """The value of a `.$` field (or ErrorPath/CausePath): a path or an intrinsic call."""

        def resolve(path_text: str) -> Json:
            try:
                return self.lookup(path_text, data)
            except PathError as error:
                raise RuntimeFailure(f"The JSONPath '{path_text}' specified for the field '{field_name}' could not be"
                                     f" found in the input '{dumps(data)}'") from error

        if is_intrinsic(expression):
            return evaluate_intrinsic(parse_intrinsic(expression), resolve)
        return resolve(expression)

    def template(self, value: Json, data: Json) -> Json:
        """Parameters / ResultSelector / ItemSelector / Assign: `key.$` fields are evaluated."""
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if key.endswith(".$"):
                    out[key[:-2]] = self.field_value(key, item, data)
                else:
                    out[key] = self.template(item, data)
            return out
        if isinstance(value, list):
            return [self.template(item, data) for item in value]
        return value

    def apply_result_path(self, target: State | Catcher, result: Json) -> Json:
        """ResultPath of the state (or of the Catcher that caught its error): `result` placed into the raw input."""
        if target.result_path is None:
            return self.input
        try:
            return set_at_path(self.input, target.result_path, result)
        except PathError as error:
            raise RuntimeFailure(f"Invalid path '{target.result_path}' : {error}") from error

    def assignments(self, assign: dict[str, Json] | None, data: Json) -> dict[str, Json] | None:
        if assign is None:
            return None
        return self.template(assign, data)

    def finish(self, result: Json) -> Outcome:
        """ResultPath, OutputPath and Assign for a JSONPath state that produces a result."""
        state = self.state
        assigned = self.assignments(state.assign, result)
        combined = self.apply_result_path(state, result)
        return Outcome(self.select(state.output_path, combined), state.next, assigned)

    # ------------------------------------------------------------------ JSONata
    def bindings(self, **states: Json) -> dict[str, Json]:
        """Variables (outer scopes first, inner ones win) and $states (input, context, and `states`) for one evaluation."""
        chain = []
        current: Flow | None = self.flow
        while current is not None:
            chain.append(current.variables)
            current = current.parent
        values: dict[str, Json] = {}
        for variables in reversed(chain):
            values.update(variables)
        values["states"] = {"input": self.input, "context": self.context_object(), **states}
        return values

    def jsonata_finish(self, target: State | Catcher, bindings: dict[str, Json], default_output: Json,
                       next_state: str | None) -> Outcome:
        """Output (or the default) and Assign of the state or Catcher, both evaluated before any variable changes."""
        output = evaluate_template(target.output, "Output", bindings) if target.has_output else default_output
        assigned = evaluate_template(target.assign, "Assign", bindings) if target.assign is not None else None
        return Outcome(output, next_state, assigned)

    def jsonata_number(self, value: Json, field_name: str, bindings: dict[str, Json]) -> Json:
        """A numeric field that may be an expression (TimeoutSeconds, MaxConcurrency, ...)."""
        return evaluate(value, field_name, bindings) if expression_of(value) is not None else value
