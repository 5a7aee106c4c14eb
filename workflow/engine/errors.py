"""The engine's exceptions, split by when they happen, and the ASL error names they carry.

`DefinitionError` is raised while a state machine is registered (nothing has run yet);
`StatesError` is raised while an execution runs and carries the ASL error name and cause
that Retry and Catch match on; `RuntimeFailure` is the engine's own processing failing
inside a state (a path that does not resolve), which skips Retry and Catch; `EngineError`
is the root, and on its own means API misuse (unknown execution, wrong status for a
redrive, ...).
"""
from __future__ import annotations

from enum import StrEnum

from workflow.engine.values import Json


class ErrorName(StrEnum):
    """AWS's predefined error names (States.*), as they appear on the wire.

    A member is its text: `ErrorName.TASK_FAILED == "States.TaskFailed"`.
    """

    ALL = "States.ALL"
    HEARTBEAT_TIMEOUT = "States.HeartbeatTimeout"
    TIMEOUT = "States.Timeout"
    TASK_FAILED = "States.TaskFailed"
    PERMISSIONS = "States.Permissions"
    RESULT_PATH_MATCH_FAILURE = "States.ResultPathMatchFailure"
    PARAMETER_PATH_FAILURE = "States.ParameterPathFailure"
    BRANCH_FAILED = "States.BranchFailed"
    NO_CHOICE_MATCHED = "States.NoChoiceMatched"
    INTRINSIC_FAILURE = "States.IntrinsicFailure"
    EXCEED_TOLERATED_FAILURE_THRESHOLD = "States.ExceedToleratedFailureThreshold"
    ITEM_READER_FAILED = "States.ItemReaderFailed"
    RESULT_WRITER_FAILED = "States.ResultWriterFailed"
    RUNTIME = "States.Runtime"
    DATA_LIMIT_EXCEEDED = "States.DataLimitExceeded"
    QUERY_EVALUATION_ERROR = "States.QueryEvaluationError"


# Errors of the engine's own processing: no Retry matches them, no Catch catches them.
UNCATCHABLE = (ErrorName.RUNTIME, ErrorName.QUERY_EVALUATION_ERROR)


class EngineError(Exception):
    """Root of everything the engine raises on purpose."""


class DefinitionError(EngineError):
    """A state machine definition is invalid; `location` names the field, e.g. States.Train.Retry[0].BackoffRate."""

    def __init__(self, location: str, message: str) -> None:
        super().__init__(f"{location}: {message}")
        self.location = location
        self.message = message


class ExecutionDoesNotExist(EngineError):
    """No execution with that ARN (or name) in the store."""


class ExecutionAlreadyExists(EngineError):
    """StartExecution with a name that an execution of that state machine already has."""


class StateMachineDoesNotExist(EngineError):
    """No state machine with that ARN (or name) in the store."""


class ExecutionNotRedrivable(EngineError):
    """Redrive asked for an execution that is not FAILED, ABORTED or TIMED_OUT."""


class TaskDoesNotExist(EngineError):
    """SendTask*: the token is well-formed but no task of this store was ever given it."""


class InvalidToken(EngineError):
    """SendTask*: the text is not a task token (empty, too long, or not this engine's format)."""


class TaskTimedOut(EngineError):
    """SendTask*: the token's task is no longer waiting (completed, timed out, retried, stopped or redriven)."""


class InvalidOutput(EngineError):
    """SendTaskSuccess: the output is not JSON text (or is larger than Step Functions accepts)."""


class StatesError(EngineError):
    """A run-time failure with its ASL error name (matched by Retry/Catch) and cause text.

    `state_type` is the type of the innermost state the error failed (set by the run loop
    as the error leaves that state; a Parallel branch ending in a failed Task records
    TaskStateAborted).
    """

    def __init__(self, error: str | None, cause: str | None = None, state_type: str | None = None) -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error: Json = str(error) if isinstance(error, str) else error  # an ErrorName becomes its plain text
        self.cause = cause
        self.state_type = state_type

    def to_output(self) -> dict[str, str]:
        """The error object a Catch passes on: {"Error", "Cause"} (Cause only when known)."""
        output = {"Error": self.error}
        if self.cause is not None:
            output["Cause"] = self.cause
        return output

    def to_details(self) -> dict[str, str]:
        """The `error`/`cause` fields of a *Failed history event (each only when known)."""
        details = {}
        if self.error is not None:
            details["error"] = self.error
        if self.cause:
            details["cause"] = self.cause
        return details


class RuntimeFailure(EngineError):
    """The engine's own processing failed (States.Runtime, States.QueryEvaluationError).

    It skips Retry and Catch; the run loop turns it into a StatesError whose cause names
    the state and the event id it was entered at.
    """

    def __init__(self, message: str, error: ErrorName = ErrorName.RUNTIME, location: str | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.location = location  # the field whose evaluation failed, for EvaluationFailed events


class ExecutionStopped(EngineError):
    """Raised inside a running execution when StopExecution was called (ends as ABORTED)."""


class ExecutionTimedOut(ExecutionStopped):
    """The state machine's TimeoutSeconds elapsed (ends as TIMED_OUT)."""


class SiblingFailed(ExecutionStopped):
    """Raised inside a Parallel branch or Map iteration whose sibling failed the state: it stops where it is."""
