"""One execution in the pipeline's terms: its states' runs read against the ASL it ran.

    record = read_run(engine, execution_arn)
    record.result("evaluation")          # {"Payload": {...}}: what the state writing $.evaluation returned
    record.gates()                       # [GateDecision("QualityGate", "passed", ...), ...]

`ddcicd run`'s summary and the run report both start here, and so does `outcome(record)`:
how the execution ended in the pipeline's terms (a fault to redrive, or a decision a
redrive will not change) with the commands that act on it. Nothing below names a state
of the pipeline: which state evaluates, which Choice is a gate, which state follows the
production endpoint going InService is read from the definition version the execution
ran (the engine keeps each version), so a renamed state or an older execution still
reads right. What the definition does promise is its data: each stage's result lands at
a fixed path of the state data (`$.training`, `$.evaluation`, `$.load_test`), which the
gates' Choice rules read too.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from workflow.state_runs import StateRun, failed_state, parsed_outputs, state_runs

if TYPE_CHECKING:
    from workflow.engine import Engine


@dataclass(frozen=True)
class Gate:
    """A Choice whose Default ends the execution as a failure: its rules say what passes."""

    name: str
    passed: tuple[str, ...]  # the states its rules lead to
    rejected: str  # its Default
    rules: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class GateDecision:
    gate: Gate
    decision: str  # passed | rejected | not reached


def _ends_in_failure(states: dict[str, Any], name: str | None, seen: set[str] | None = None) -> bool:
    """Following `Next` from `name` reaches a Fail state (through a Choice only when every
    branch of it does, like the decision path's CandidateRegistered)."""
    seen = set() if seen is None else seen
    while name is not None and name not in seen:
        seen.add(name)
        state = states.get(name) or {}
        if state.get("Type") == "Fail":
            return True
        if state.get("Type") == "Choice":
            branches = [rule.get("Next") for rule in state.get("Choices") or ()] + [state.get("Default")]
            return all(_ends_in_failure(states, branch, set(seen)) for branch in branches)
        name = state.get("Next")
    return False


def gates(definition: dict[str, Any]) -> list[Gate]:
    """The gates of a definition's top level, in definition order."""
    states = definition.get("States") or {}
    found = []
    for name, state in states.items():
        # a gate's Default fails the run and some rule does not (CandidateRegistered's both do: no gate)
        if state.get("Type") == "Choice" and _ends_in_failure(states, state.get("Default")) and not _ends_in_failure(states, name):
            rules = tuple(state.get("Choices") or ())
            found.append(Gate(name, tuple(rule["Next"] for rule in rules if "Next" in rule), state["Default"], rules))
    return found


def writers(definition: dict[str, Any], key: str) -> list[str]:
    """Top-level states whose ResultPath is `$.key`, in definition order."""
    return [name for name, state in (definition.get("States") or {}).items() if state.get("ResultPath") == f"$.{key}"]


def in_service_state(definition: dict[str, Any], endpoint_name: str) -> str | None:
    """The state entered once `endpoint_name` is InService: the target of the rule testing for
    InService (alone or in an And) in the Choice that follows the Task describing that endpoint,
    leaving out a rule that ends the run (an update that rolled back is InService too)."""
    states = definition.get("States") or {}
    for state in states.values():
        parameters = state.get("Parameters") or {}
        if state.get("Type") != "Task" or not str(state.get("Resource", "")).endswith(":describeEndpoint"):
            continue
        if parameters.get("EndpointName") != endpoint_name:
            continue
        for rule in (states.get(state.get("Next")) or {}).get("Choices") or ():
            conditions = rule.get("And") or [rule]
            if "Next" in rule and any(item.get("StringEquals") == "InService" for item in conditions) \
                    and not _ends_in_failure(states, rule["Next"]):
                return str(rule["Next"])
    return None


@dataclass
class RunRecord:
    """An execution's description, its per-state runs, its input and the ASL it ran."""

    description: dict[str, Any]
    runs: dict[str, StateRun]
    definition: dict[str, Any]
    execution_input: dict[str, Any]

    @cached_property
    def outputs(self) -> dict[str, Any]:
        return parsed_outputs(self.runs)

    def writer(self, key: str) -> str | None:
        """The state that writes `$.key` (the one that ran last, if several do)."""
        names = writers(self.definition, key)
        ran = [name for name in names if name in self.outputs]
        if ran:
            return max(ran, key=lambda name: self.runs[name].exited or 0.0)
        return names[0] if names else None

    def result(self, key: str) -> Any:
        """`$.key` as the state writing it output it; None when no such state exited."""
        name = self.writer(key)
        output = self.outputs.get(name) if name else None
        return output.get(key) if isinstance(output, dict) else None

    def payload(self, key: str) -> dict[str, Any] | None:
        """A Lambda state's result: `$.key.Payload`, when it is an object."""
        value = self.result(key)
        payload = value.get("Payload") if isinstance(value, dict) else None
        return payload if isinstance(payload, dict) else None

    def exited(self, name: str | None) -> bool:
        return name is not None and name in self.outputs

    def gates(self) -> list[GateDecision]:
        decisions = []
        for gate in gates(self.definition):
            if any(name in self.runs for name in gate.passed):
                decision = "passed"
            elif gate.rejected in self.runs:
                decision = "rejected"
            else:
                decision = "not reached"
            decisions.append(GateDecision(gate, decision))
        return decisions

    def failed_state(self) -> str | None:
        """Where the execution stopped, at the top level (a Map, not the iteration's Task inside it)."""
        top = self.definition.get("States") or {}
        stopped = [run.name for run in self.runs.values() if run.status in ("failed", "aborted") and run.name in top]
        return stopped[-1] if stopped else failed_state(self.runs)


def read_run(engine: Engine, execution_arn: str) -> RunRecord:
    """Everything about one execution that the summary and the report read, in one pass."""
    from workflow.local.reader import executed_definition

    description = engine.describe_execution(execution_arn)
    arn = description["executionArn"]
    runs = state_runs(engine.get_execution_history(arn)["events"], description["status"])
    execution_input = json.loads(description.get("input") or "{}")
    return RunRecord(description, runs, executed_definition(engine, arn),
                     execution_input if isinstance(execution_input, dict) else {})  # fmt: skip


# ---------------------------------------------------------------- how an execution ended

SUCCEEDED, RUNNING, FAULT, DECISION = "succeeded", "running", "fault", "decision"
# The execution input names of what a run makes for staging (workflow/naming.py): kept by a
# fault for a redrive, deleted by a decision (the endpoint) or by `ddcicd cleanup`.
STAGING_RESOURCES = (("endpoint", "StagingEndpointName"), ("endpoint config", "StagingEndpointConfigName"),
                     ("model", "ModelName"))  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    """How an execution ended, in the pipeline's terms.

    A *fault* (FAILED at a Task or Map, or ABORTED/TIMED_OUT wherever it was) left the run
    where it broke: a redrive resumes at `state`. A *decision* ended the run on purpose at
    a Fail state after cleaning up: a redrive ends the same way. The definition tells them
    apart (the type of the state the run stopped in), so no state name is written here.
    """

    kind: str  # succeeded | running | fault | decision
    status: str
    execution_name: str
    state: str | None = None
    error: str | None = None
    cause: str | None = None
    staging: tuple[tuple[str, str], ...] = ()  # (kind, name) of what a fault keeps, from the execution input
    model_artifact: str | None = None  # the trained model.tar.gz, when training finished

    @property
    def redrive_command(self) -> str:
        return f"ddcicd redrive {self.execution_name}"

    @property
    def cleanup_command(self) -> str:
        return f"ddcicd cleanup --execution {self.execution_name}"

    def lines(self, kept: list[str] | None = None) -> list[str]:
        """What a summary says about the ending; `kept` describes the resources that still exist
        (the caller asks its control plane: the local one or AWS), else the names are listed."""
        from workflow.state_runs import readable_cause

        if self.kind in (SUCCEEDED, RUNNING):
            return []
        where = f" in state {self.state}" if self.state else ""
        text = [f"{self.status}{where}: {self.error or '(no error name)'}: {readable_cause(self.cause, 400)}"]
        if self.kind == DECISION:
            text.append("a decision, not a fault: staging was cleaned up and production left as it was;"
                        f" `{self.redrive_command}` would end the same way. Start a new run to try again.")
            return text
        text.append(f"a fault: everything made so far is kept, and `{self.redrive_command}` resumes at {self.state or 'the failed state'}"
                    " once the cause is repaired.")  # fmt: skip
        listed = kept if kept is not None else [f"{kind} {name}" for kind, name in self.staging]
        if self.model_artifact:
            listed = [*listed, f"trained model {self.model_artifact}"]
        if listed:
            text.append("kept: " + "; ".join(listed))
        text.append(f"to abandon it instead: {self.cleanup_command} (deletes the staging resources; production is never touched)")
        return text


def outcome(record: RunRecord) -> Outcome:
    """Reads how `record`'s execution ended (see Outcome)."""
    description = record.description
    status, name = description["status"], description["name"]
    if status in ("SUCCEEDED", "RUNNING"):
        return Outcome(status.lower(), status, name)
    state = record.failed_state()
    state_type = ((record.definition.get("States") or {}).get(state) or {}).get("Type")
    run = record.runs.get(state) if state else None
    error = description.get("error") or (run.error if run else None)
    cause = description.get("cause") or (run.cause if run else None)
    if status == "FAILED" and state_type == "Fail":
        return Outcome(DECISION, status, name, state, error, cause)
    staging = tuple((kind, str(record.execution_input[key])) for kind, key in STAGING_RESOURCES if record.execution_input.get(key))
    training = record.result("training") or {}
    artifact = (training.get("ModelArtifacts") or {}).get("S3ModelArtifacts") if isinstance(training, dict) else None
    return Outcome(FAULT, status, name, state, error, cause, staging, artifact)
