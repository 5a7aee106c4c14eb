"""The parsed state machine: frozen dataclasses the interpreter walks.

Built and validated by workflow/engine/definition.py (`parse_definition`), which is the
only place that reads ASL JSON; everything here is already known to be well-formed.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from workflow.engine.values import MISSING, Json


class QueryLanguage(StrEnum):
    """A state's QueryLanguage: how its fields are evaluated (the machine's, unless the state sets its own)."""

    JSONPATH = "JSONPath"
    JSONATA = "JSONata"


@dataclass(frozen=True)
class Retrier:
    """One Retry entry; defaults are AWS's."""

    error_equals: tuple[str, ...]
    interval_seconds: float = 1
    max_attempts: int = 3
    backoff_rate: float = 2.0
    max_delay_seconds: float | None = None
    jitter_strategy: str = "NONE"


@dataclass(frozen=True)
class Catcher:
    """One Catch entry."""

    error_equals: tuple[str, ...]
    next: str
    result_path: str | None = "$"
    assign: dict[str, Json] | None = None
    output: Json = None
    has_output: bool = False


@dataclass(frozen=True)
class State:
    """One state. Fields that a state type does not use stay at their defaults.

    Path fields hold the path text; None means the document set them to null
    (InputPath null -> {}, ResultPath null -> discard the result, OutputPath null -> {}).
    """

    name: str
    type: str  # Pass, Task, Choice, Wait, Succeed, Fail, Parallel or Map
    query_language: QueryLanguage = QueryLanguage.JSONPATH
    next: str | None = None  # None exactly when the state ends its flow (End, Choice, Succeed, Fail)
    end: bool = False
    input_path: str | None = "$"
    output_path: str | None = "$"
    result_path: str | None = "$"
    parameters: Json = None
    result_selector: Json = None
    result: Json = MISSING
    retry: tuple[Retrier, ...] = ()
    catch: tuple[Catcher, ...] = ()
    assign: dict[str, Json] | None = None
    # JSONata states: Arguments (Task, Parallel), Output, Items (Map)
    arguments: Json = None
    output: Json = MISSING
    items: Json = MISSING
    # Task
    resource: str | None = None
    timeout_seconds: float | None = None
    timeout_seconds_path: str | None = None
    heartbeat_seconds: float | None = None
    heartbeat_seconds_path: str | None = None
    # Choice
    choices: tuple[dict[str, Json], ...] = ()
    default: str | None = None
    # Wait
    seconds: float | None = None
    seconds_path: str | None = None
    timestamp: str | None = None
    timestamp_path: str | None = None
    # Fail
    error: str | None = None
    error_path: str | None = None
    cause: str | None = None
    cause_path: str | None = None
    # Parallel / Map
    branches: tuple["StateMachineDefinition", ...] = ()
    processor: "StateMachineDefinition | None" = None
    processor_mode: str = "INLINE"
    items_path: str | None = "$"
    item_selector: Json = None
    max_concurrency: int | None = None
    max_concurrency_path: str | None = None
    tolerated_failure_count: int | None = None
    tolerated_failure_count_path: str | None = None
    tolerated_failure_percentage: float | None = None
    tolerated_failure_percentage_path: str | None = None
    label: str | None = None  # Map: names its Map Runs

    @property
    def has_result(self) -> bool:
        return self.result is not MISSING

    @property
    def has_output(self) -> bool:
        return self.output is not MISSING

    @property
    def has_items(self) -> bool:
        return self.items is not MISSING

    @property
    def jsonata(self) -> bool:
        return self.query_language is QueryLanguage.JSONATA

    @property
    def terminal(self) -> bool:
        return self.end or self.type in ("Succeed", "Fail")


@dataclass(frozen=True)
class StateMachineDefinition:
    """A parsed state machine (or a Parallel branch / Map processor, which have the same shape)."""

    start_at: str
    states: dict[str, State]
    timeout_seconds: float | None = None
    comment: str | None = None

    def iter_states(self) -> list[State]:
        """All states, including those nested in Parallel branches and Map processors."""
        found = []
        for state in self.states.values():
            found.append(state)
            for branch in state.branches:
                found.extend(branch.iter_states())
            if state.processor is not None:
                found.extend(state.processor.iter_states())
        return found
