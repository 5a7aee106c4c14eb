"""AWS's error replies: `{"__type": NAME, "message": TEXT}` with the HTTP status AWS gives NAME.

Every Step Functions error in the service model is a client error (400); the protocol-level
ones are AWS's common errors (UnknownOperationException, SerializationException,
MissingAuthenticationToken, InternalFailure). Engine exceptions whose class name is an AWS
error name (ExecutionDoesNotExist, TaskTimedOut, ...) are sent under that name.
"""
from __future__ import annotations

from workflow.engine.errors import DefinitionError, EngineError

# The Step Functions error shapes (botocore's service model), all answered with 400.
SERVICE_ERRORS = frozenset({
    "ActivityAlreadyExists", "ActivityDoesNotExist", "ActivityLimitExceeded", "ActivityWorkerLimitExceeded",
    "ConflictException", "ExecutionAlreadyExists", "ExecutionDoesNotExist", "ExecutionLimitExceeded",
    "ExecutionNotRedrivable", "InvalidArn", "InvalidDefinition", "InvalidExecutionInput", "InvalidName", "InvalidOutput",
    "InvalidToken", "MissingRequiredParameter", "ResourceNotFound", "StateMachineAlreadyExists", "StateMachineDeleting",
    "StateMachineDoesNotExist", "StateMachineTypeNotSupported", "TaskDoesNotExist", "TaskTimedOut", "TooManyTags",
    "ValidationException",
})
# AWS's common errors and their HTTP status.
COMMON_ERRORS = {
    "UnknownOperationException": 400,
    "SerializationException": 400,
    "MissingAuthenticationToken": 403,
    "InternalFailure": 500,
}


class ApiError(Exception):
    """An error reply: AWS's error name, its message and HTTP status."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else COMMON_ERRORS.get(code, 400)

    def body(self) -> dict[str, str]:
        return {"__type": self.code, "message": self.message}


def from_engine(error: EngineError) -> ApiError:
    """The reply for an engine exception: its own AWS name when it has one, else ValidationException."""
    if isinstance(error, DefinitionError):
        return ApiError("InvalidDefinition", f"Invalid State Machine Definition: '{error}'")
    name = type(error).__name__
    if name in SERVICE_ERRORS:
        return ApiError(name, str(error))
    return ApiError("ValidationException", str(error))


def validation(member: str, problem: str) -> ApiError:
    """AWS's wording for a request member that breaks its constraints."""
    return ApiError("ValidationException", f"1 validation error detected: Value at '{member}' failed to satisfy constraint: {problem}")
