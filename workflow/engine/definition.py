"""ASL JSON -> frozen dataclasses, validated once at registration.

Every problem is reported with its location in the document, the way a reader would
look it up: `States.Train.Retry[0].BackoffRate: must be >= 1.0, got 0.5`. Nothing that
fails here can half-run later.

Supported: both query languages (JSONPath, and JSONata per machine or per state, with its
Arguments/Output/Items/Condition fields) and variables (`Assign`). Refused with a clear
message: ItemReader/ResultWriter/ItemBatcher (distributed Map over S3), and JSONPath-only
fields in a JSONata state.
"""
from __future__ import annotations

import json
from typing import Any, Callable

from workflow.engine.choice import OPERATORS, operator_of
from workflow.engine.errors import DefinitionError, ErrorName
from workflow.engine.intrinsics import Call, IntrinsicSyntaxError, PathArg, is_intrinsic, parse_intrinsic
from workflow.engine.jsonata import JsonataSyntaxError, check_syntax, expression_of
from workflow.engine.paths import PathError, compile_path
from workflow.engine.states import Catcher, QueryLanguage, Retrier, State, StateMachineDefinition
from workflow.engine.values import Json

JSONPATH_ONLY = ("InputPath", "OutputPath", "Parameters", "ResultSelector", "ResultPath", "ItemsPath", "SecondsPath",
                 "TimestampPath", "ErrorPath", "CausePath", "TimeoutSecondsPath", "HeartbeatSecondsPath",
                 "MaxConcurrencyPath", "ToleratedFailureCountPath", "ToleratedFailurePercentagePath")
JSONATA_ONLY = ("Arguments", "Output", "Items")


ResourceCheck = Callable[[str], str | None]


def parse_definition(document: str | dict[str, Json], resource_check: ResourceCheck | None = None) -> StateMachineDefinition:
    """Parses and validates; `resource_check(arn)` returns an error text for unsupported resources."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError as error:
            raise DefinitionError("definition", f"is not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise DefinitionError("definition", f"must be a JSON object, got {type(document).__name__}")
    return _Parser(resource_check).machine(document, "")


class _Parser:
    def __init__(self, resource_check: ResourceCheck | None) -> None:
        self.resource_check = resource_check
        self.language = QueryLanguage.JSONPATH  # of the state being parsed

    # ---------------------------------------------------------------- machine / branch
    def machine(self, document: dict[str, Json], where: str, query_language: QueryLanguage = QueryLanguage.JSONPATH) -> StateMachineDefinition:
        query_language = self.query_language(document, where or "definition", query_language)
        start_at = document.get("StartAt")
        states = document.get("States")
        if not isinstance(states, dict) or not states:
            raise DefinitionError(f"{where}States" if where else "States", "must be a non-empty object of states")
        if not isinstance(start_at, str) or start_at not in states:
            raise DefinitionError(f"{where}StartAt", f"{start_at!r} is not one of the states ({', '.join(states)})")
        parsed = {name: self.state(name, body, f"{where}States.{name}", query_language) for name, body in states.items()}
        for state in parsed.values():
            for target, field_name in _transitions(state):
                if target not in parsed:
                    raise DefinitionError(f"{where}States.{state.name}.{field_name}",
                                          f"{target!r} is not a state in this scope ({', '.join(parsed)})")
        reachable = _reachable(start_at, parsed)
        for name in parsed:
            if name not in reachable:
                raise DefinitionError(f"{where}States.{name}", f"is not reachable from StartAt {start_at!r}")
        timeout = document.get("TimeoutSeconds")
        if timeout is not None and not _positive_int(timeout):
            raise DefinitionError(f"{where}TimeoutSeconds", f"must be a positive integer, got {timeout!r}")
        return StateMachineDefinition(start_at, parsed, timeout, document.get("Comment"))

    def query_language(self, body: dict[str, Json], where: str, inherited: QueryLanguage) -> QueryLanguage:
        language = body.get("QueryLanguage", inherited)
        if language not in tuple(QueryLanguage):
            raise DefinitionError(f"{where}.QueryLanguage", f"unknown query language {language!r} (JSONPath or JSONata)")
        if inherited == QueryLanguage.JSONATA and language == QueryLanguage.JSONPATH and where == "definition":
            raise DefinitionError(f"{where}.QueryLanguage", "a JSONPath state cannot be inside a JSONata machine")
        return QueryLanguage(language)

    # ---------------------------------------------------------------- one state
    def state(self, name: str, body: Any, where: str, inherited_language: str) -> State:
        if not isinstance(body, dict):
            raise DefinitionError(where, "must be an object")
        language = self.query_language(body, where, inherited_language)
        state_type = body.get("Type")
        if state_type not in STATE_TYPES:
            raise DefinitionError(f"{where}.Type", f"{state_type!r} is not a state type ({', '.join(STATE_TYPES)})")
        for unsupported in ("ItemReader", "ResultWriter", "ItemBatcher"):
            if unsupported in body:
                raise DefinitionError(f"{where}.{unsupported}", "is not supported by the local engine")
        for key in JSONPATH_ONLY if language == QueryLanguage.JSONATA else JSONATA_ONLY:
            if key in body:
                raise DefinitionError(f"{where}.{key}", f"is not allowed in a {language} state")
        fields: dict[str, Any] = {"name": name, "type": state_type, "query_language": language}
        self.language = language
        if language == QueryLanguage.JSONATA:
            for key, attribute in (("Arguments", "arguments"), ("Output", "output"), ("Items", "items")):
                if key in body:
                    fields[attribute] = self.jsonata_template(body[key], f"{where}.{key}")
        if state_type not in ("Choice", "Succeed", "Fail"):
            has_next, has_end = "Next" in body, body.get("End") is True
            if has_next == has_end:
                raise DefinitionError(where, "must have exactly one of Next or \"End\": true")
            fields["next"] = body.get("Next")
            fields["end"] = has_end
        elif "Next" in body or "End" in body:
            raise DefinitionError(where, f"a {state_type} state cannot have Next or End")
        if state_type != "Fail":
            for key, attribute in (("InputPath", "input_path"), ("OutputPath", "output_path")):
                if key in body:
                    fields[attribute] = self.path(body[key], f"{where}.{key}", nullable=True)
        if state_type in ("Pass", "Task", "Parallel", "Map"):
            if "ResultPath" in body:
                fields["result_path"] = self.path(body["ResultPath"], f"{where}.ResultPath", nullable=True, reference=True)
            if "Parameters" in body:
                fields["parameters"] = self.template(body["Parameters"], f"{where}.Parameters")
        if state_type in ("Task", "Parallel", "Map"):
            if "ResultSelector" in body:
                fields["result_selector"] = self.template(body["ResultSelector"], f"{where}.ResultSelector")
            fields["retry"] = tuple(self.retrier(item, f"{where}.Retry[{i}]") for i, item in enumerate(self.array(body, "Retry", where)))
            fields["catch"] = tuple(self.catcher(item, f"{where}.Catch[{i}]") for i, item in enumerate(self.array(body, "Catch", where)))
        if "Assign" in body:
            fields["assign"] = self.assign(body["Assign"], f"{where}.Assign")
        FIELD_READERS[state_type](self, body, where, fields)
        return State(**fields)

    def state_pass(self, body: dict[str, Json], where: str, fields: dict[str, Any]) -> None:
        if "Result" in body:
            fields["result"] = body["Result"]

    def state_succeed(self, body: dict[str, Json], where: str, fields: dict[str, Any]) -> None:
        return None

    def state_task(self, body: dict[str, Json], where: str, fields: dict[str, Any]) -> None:
        resource = body.get("Resource")
        if not isinstance(resource, str) or not resource:
            raise DefinitionError(f"{where}.Resource", "is required and must be an ARN string")
        if self.resource_check is not None:
            problem = self.resource_check(resource)
            if problem:
                raise DefinitionError(f"{where}.Resource", problem)
        fields["resource"] = resource
        for key, attribute in (("TimeoutSeconds", "timeout_seconds"), ("HeartbeatSeconds", "heartbeat_seconds")):
            if key in body and fields["query_language"] == QueryLanguage.JSONATA and expression_of(body[key]) is not None:
                fields[attribute] = self.jsonata_template(body[key], f"{where}.{key}")
            elif key in body:
                if not _positive_int(body[key]):
                    raise DefinitionError(f"{where}.{key}", f"must be a positive integer, got {body[key]!r}")
                fields[attribute] = body[key]
            if f"{key}Path" in body:
                fields[f"{attribute}_path"] = self.path(body[f"{key}Path"], f"{where}.{key}Path")
        if (isinstance(fields.get("heartbeat_seconds"), int) and isinstance(fields.get("timeout_seconds"), int)
                and fields["heartbeat_seconds"] >= fields["timeout_seconds"]):
            raise DefinitionError(f"{where}.HeartbeatSeconds", "must be smaller than TimeoutSeconds")

    def state_choice(self, body: dict[str, Json], where: str, fields: dict[str, Any]) -> None:
        choices = body.get("Choices")
        if not isinstance(choices, list) or not choices:
            raise DefinitionError(f"{where}.Choices", "must be a non-empty array of rules")
        for index, rule in enumerate(choices):
            location = f"{where}.Choices[{index}]"
            if not isinstance(rule, dict) or not isinstance(rule.get("Next"), str):
                raise DefinitionError(location, "must be an object with a Next state name")
            if "Assign" in rule:
                self.assign(rule["Assign"], f"{location}.Assign")
            if fields["query_language"] == QueryLanguage.JSONATA:
                if expression_of(rule.get("Condition")) is None and not isinstance(rule.get("Condition"), bool):
                    raise DefinitionError(f"{location}.Condition", "a JSONata Choice rule needs a Condition '{% ... %}'")
                self.jsonata_template(rule["Condition"], f"{location}.Condition")
                if "Output" in rule:
                    self.jsonata_template(rule["Output"], f"{location}.Output")
                continue
            self.rule(rule, location)
        fields["choices"] = tuple(choices)
        fields["default"] = body.get("Default")

    def rule(self, rule: Any, where: str) -> None:
        if not isinstance(rule, dict):
            raise DefinitionError(where, "must be an object")
        if "Condition" in rule:
            raise DefinitionError(f"{where}.Condition", "is JSONata, which the local engine does not support yet")
        for key in ("And", "Or"):
            if key in rule:
                if not isinstance(rule[key], list) or not rule[key]:
                    raise DefinitionError(f"{where}.{key}", "must be a non-empty array of rules")
                for index, sub in enumerate(rule[key]):
                    self.rule(sub, f"{where}.{key}[{index}]")
                return
        if "Not" in rule:
            self.rule(rule["Not"], f"{where}.Not")
            return
        operator = operator_of(rule)
        if operator is None:
            found = [key for key in rule if key in OPERATORS]
            raise DefinitionError(where, f"must have exactly one comparison operator, found {found or 'none'}")
        self.path(rule.get("Variable"), f"{where}.Variable")
        if operator.endswith("Path"):
            self.path(rule[operator], f"{where}.{operator}")

    def state_wait(self, body: dict[str, Json], where: str, fields: dict[str, Any]) -> None:
        given = [key for key in ("Seconds", "SecondsPath", "Timestamp", "TimestampPath") if key in body]
        if len(given) != 1:
            raise DefinitionError(where, f"a Wait state needs exactly one of Seconds, SecondsPath, Timestamp, TimestampPath; found {given}")
        key = given[0]
        if fields["query_language"] == QueryLanguage.JSONATA and expression_of(body[key]) is not None:
            fields["seconds" if key == "Seconds" else "timestamp"] = self.jsonata_template(body[key], f"{where}.{key}")
        elif key == "Seconds":
            if not isinstance(body[key], int) or isinstance(body[key], bool) or body[key] < 0:
                raise DefinitionError(f"{where}.Seconds", f"must be a non-negative integer, got {body[key]!r}")
            fields["seconds"] = body[key]
        elif key == "Timestamp":
            fields["timestamp"] = body[key]
        else:
            fields["seconds_path" if key == "SecondsPath" else "timestamp_path"] = self.path(body[key], f"{where}.{key}")

    def state_fail(self, body: dict[str, Json], where: str, fields: dict[str, Any]) -> None:
        for key, attribute in (("Error", "error"), ("Cause", "cause")):
            if key in body and f"{key}Path" in body:
                raise DefinitionError(where, f"cannot have both {key} and {key}Path")
            if key in body:
                fields[attribute] = body[key]
                if fields["query_language"] == QueryLanguage.JSONATA:
                    self.jsonata_template(body[key], f"{where}.{key}")
            if f"{key}Path" in body:
                value = body[f"{key}Path"]
                if is_intrinsic(value):
                    self.intrinsic(value, f"{where}.{key}Path")
                else:
                    self.path(value, f"{where}.{key}Path")
                fields[f"{attribute}_path"] = value

    def state_parallel(self, body: dict[str, Json], where: str, fields: dict[str, Any]) -> None:
        branches = body.get("Branches")
        if not isinstance(branches, list) or not branches:
            raise DefinitionError(f"{where}.Branches", "must be a non-empty array of state machines")
        fields["branches"] = tuple(self.machine(branch, f"{where}.Branches[{i}].", fields["query_language"])
                                   for i, branch in enumerate(branches))

    def state_map(self, body: dict[str, Json], where: str, fields: dict[str, Any]) -> None:
        key = "ItemProcessor" if "ItemProcessor" in body else "Iterator"
        processor = body.get(key)
        if not isinstance(processor, dict):
            raise DefinitionError(f"{where}.ItemProcessor", "is required (or the older Iterator)")
        mode = (processor.get("ProcessorConfig") or {}).get("Mode", "INLINE")
        if mode not in ("INLINE", "DISTRIBUTED"):
            raise DefinitionError(f"{where}.{key}.ProcessorConfig.Mode", f"must be INLINE or DISTRIBUTED, got {mode!r}")
        fields["processor"] = self.machine(processor, f"{where}.{key}.", fields["query_language"])
        fields["processor_mode"] = mode
        if "Label" in body:
            fields["label"] = body["Label"]
        if "ItemsPath" in body:
            fields["items_path"] = self.path(body["ItemsPath"], f"{where}.ItemsPath", nullable=True)
        if "ItemSelector" in body and "Parameters" in body:
            raise DefinitionError(where, "cannot have both ItemSelector and Parameters")
        if "ItemSelector" in body and fields["query_language"] == QueryLanguage.JSONATA:
            fields["item_selector"] = self.jsonata_template(body["ItemSelector"], f"{where}.ItemSelector")
        elif "ItemSelector" in body:
            fields["item_selector"] = self.template(body["ItemSelector"], f"{where}.ItemSelector")
        elif "Parameters" in body:
            fields["item_selector"] = fields.pop("parameters")
        fields.pop("parameters", None)
        for key_name, attribute, kind in (
            ("MaxConcurrency", "max_concurrency", int),
            ("ToleratedFailureCount", "tolerated_failure_count", int),
            ("ToleratedFailurePercentage", "tolerated_failure_percentage", float),
        ):
            if key_name in body and f"{key_name}Path" in body:
                raise DefinitionError(where, f"cannot have both {key_name} and {key_name}Path")
            if key_name in body and fields["query_language"] == QueryLanguage.JSONATA and expression_of(body[key_name]) is not None:
                fields[attribute] = self.jsonata_template(body[key_name], f"{where}.{key_name}")
            elif key_name in body:
                value = body[key_name]
                if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (kind is int and not float(value).is_integer()):
                    raise DefinitionError(f"{where}.{key_name}", f"must be a non-negative {kind.__name__}, got {value!r}")
                if key_name == "ToleratedFailurePercentage" and value > 100:
                    raise DefinitionError(f"{where}.{key_name}", f"must be between 0 and 100, got {value!r}")
                fields[attribute] = kind(value)
            if f"{key_name}Path" in body:
                fields[f"{attribute}_path"] = self.path(body[f"{key_name}Path"], f"{where}.{key_name}Path")

    # ---------------------------------------------------------------- pieces
    def array(self, body: dict[str, Json], key: str, where: str) -> list[Json]:
        value = body.get(key, [])
        if not isinstance(value, list):
            raise DefinitionError(f"{where}.{key}", "must be an array")
        return value

    def error_equals(self, item: dict[str, Json], where: str) -> tuple[str, ...]:
        names = item.get("ErrorEquals")
        if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
            raise DefinitionError(f"{where}.ErrorEquals", "must be a non-empty array of error names")
        if ErrorName.ALL in names and len(names) > 1:
            raise DefinitionError(f"{where}.ErrorEquals", f"{ErrorName.ALL} must appear alone")
        return tuple(names)

    def retrier(self, item: Any, where: str) -> Retrier:
        if not isinstance(item, dict):
            raise DefinitionError(where, "must be an object")
        values: dict[str, Any] = {"error_equals": self.error_equals(item, where)}
        if "IntervalSeconds" in item:
            if not _positive_int(item["IntervalSeconds"]):
                raise DefinitionError(f"{where}.IntervalSeconds", f"must be a positive integer, got {item['IntervalSeconds']!r}")
            values["interval_seconds"] = item["IntervalSeconds"]
        if "MaxAttempts" in item:
            attempts = item["MaxAttempts"]
            if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0:
                raise DefinitionError(f"{where}.MaxAttempts", f"must be a non-negative integer, got {attempts!r}")
            values["max_attempts"] = attempts
        if "BackoffRate" in item:
            rate = item["BackoffRate"]
            if not isinstance(rate, (int, float)) or isinstance(rate, bool) or rate < 1.0:
                raise DefinitionError(f"{where}.BackoffRate", f"must be a number >= 1.0, got {rate!r}")
            values["backoff_rate"] = float(rate)
        if "MaxDelaySeconds" in item:
            if not _positive_int(item["MaxDelaySeconds"]):
                raise DefinitionError(f"{where}.MaxDelaySeconds", f"must be a positive integer, got {item['MaxDelaySeconds']!r}")
            values["max_delay_seconds"] = item["MaxDelaySeconds"]
        if "JitterStrategy" in item:
            if item["JitterStrategy"] not in ("FULL", "NONE"):
                raise DefinitionError(f"{where}.JitterStrategy", f"must be FULL or NONE, got {item['JitterStrategy']!r}")
            values["jitter_strategy"] = item["JitterStrategy"]
        return Retrier(**values)

    def catcher(self, item: Any, where: str) -> Catcher:
        if not isinstance(item, dict) or not isinstance(item.get("Next"), str):
            raise DefinitionError(where, "must be an object with a Next state name")
        result_path = "$"
        if "ResultPath" in item:
            result_path = self.path(item["ResultPath"], f"{where}.ResultPath", nullable=True, reference=True)
        assign = self.assign(item["Assign"], f"{where}.Assign") if "Assign" in item else None
        output = self.jsonata_template(item["Output"], f"{where}.Output") if "Output" in item else None
        return Catcher(self.error_equals(item, where), item["Next"], result_path, assign, output, "Output" in item)

    def assign(self, value: Any, where: str) -> dict[str, Json]:
        if not isinstance(value, dict):
            raise DefinitionError(where, "must be an object of variable names to values")
        for name in value:
            bare = name[:-2] if name.endswith(".$") else name
            if not bare.isidentifier():
                raise DefinitionError(f"{where}.{name}", "is not a valid variable name")
        if self.language == QueryLanguage.JSONATA:
            return self.jsonata_template(value, where)
        return self.template(value, where)

    def path(self, value: Any, where: str, nullable: bool = False, reference: bool = False) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise DefinitionError(where, f"must be a path string, got {value!r}")
        try:
            compiled = compile_path(value)
        except PathError as error:
            raise DefinitionError(where, f"is not a valid JSONPath: {error}") from error
        if reference and (compiled.root != "$" or not compiled.definite):
            raise DefinitionError(where, f"{value!r} must be a reference path ($ followed by names and indexes)")
        return value

    def intrinsic(self, value: str, where: str) -> None:
        try:
            call = parse_intrinsic(value)
        except IntrinsicSyntaxError as error:
            raise DefinitionError(where, str(error)) from error
        self.intrinsic_paths(call, where)

    def intrinsic_paths(self, call: Call, where: str) -> None:
        for arg in call.args:
            if isinstance(arg, Call):
                self.intrinsic_paths(arg, where)
            elif isinstance(arg, PathArg):
                self.path(arg.path, where)

    def jsonata_template(self, value: Json, where: str) -> Json:
        """Checks the `{% %}` expressions inside a JSONata field."""
        try:
            check_syntax(value)
        except JsonataSyntaxError as error:
            raise DefinitionError(where, str(error)) from error
        return value

    def template(self, value: Json, where: str) -> Json:
        """Checks a payload template (Parameters, ResultSelector, ItemSelector, Assign)."""
        if isinstance(value, dict):
            for key, item in value.items():
                location = f"{where}.{key}"
                if key.endswith(".$"):
                    if not isinstance(item, str):
                        raise DefinitionError(location, f"a '.$' field must hold a path or intrinsic function, got {item!r}")
                    if is_intrinsic(item):
                        self.intrinsic(item, location)
                    else:
                        self.path(item, location)
                else:
                    self.template(item, location)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.template(item, f"{where}[{index}]")
        return value


# Type -> the reader of the fields only that state type has (in the order error messages list them).
FIELD_READERS: dict[str, Callable[[_Parser, dict[str, Json], str, dict[str, Any]], None]] = {
    "Pass": _Parser.state_pass,
    "Task": _Parser.state_task,
    "Choice": _Parser.state_choice,
    "Wait": _Parser.state_wait,
    "Succeed": _Parser.state_succeed,
    "Fail": _Parser.state_fail,
    "Parallel": _Parser.state_parallel,
    "Map": _Parser.state_map,
}
STATE_TYPES = tuple(FIELD_READERS)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _transitions(state: State) -> list[tuple[str, str]]:
    found = []
    if state.next is not None:
        found.append((state.next, "Next"))
    if state.default is not None:
        found.append((state.default, "Default"))
    for index, rule in enumerate(state.choices):
        found.append((rule["Next"], f"Choices[{index}].Next"))
    for index, catcher in enumerate(state.catch):
        found.append((catcher.next, f"Catch[{index}].Next"))
    return found


def _reachable(start_at: str, states: dict[str, State]) -> set[str]:
    seen = {start_at}
    pending = [start_at]
    while pending:
        for target, _ in _transitions(states[pending.pop()]):
            if target not in seen and target in states:
                seen.add(target)
                pending.append(target)
    return seen
