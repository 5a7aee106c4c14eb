"""Errors shared by the Lambda handlers.

A Lambda that raises reports the exception's class name as its `errorType`, and a Step
Functions Catch or Retry matches on exactly that name (`"ErrorEquals": ["InvalidEvent"]`).
The class names below are therefore part of the workflow's interface: rename one and the
state machine's Catch stops matching it.
"""
from __future__ import annotations


class LambdaError(Exception):
    """Root of every error our handlers raise on purpose."""


class InvalidEvent(LambdaError):
    """The event is malformed: a field is missing, of the wrong type or out of range.

    Raised before any network call, so retrying the same event cannot help.
    """


class ObjectNotFound(LambdaError):
    """An input URI (s3:// or its local mapping) names an object that does not exist."""

    def __init__(self, uri: str) -> None:
        super().__init__(f"no object at {uri}")
        self.uri = uri


class StorageError(LambdaError):
    """Reading or writing an object failed for a reason other than its absence."""


class InvalidData(LambdaError):
    """Input data exists but cannot be used: a bad manifest, corrupt or empty RecordIO."""


class TooManyFailedInvocations(LambdaError):
    """More endpoint invocations failed than the event's max_failure_share allows."""
