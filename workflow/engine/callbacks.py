"""Task tokens: the callback pattern (`.waitForTaskToken`) and SendTaskSuccess/Failure/Heartbeat.

A callback Task (e.g. `arn:aws:states:::sqs:sendMessage.waitForTaskToken`) gets a fresh
token for every attempt, visible to its Parameters (Arguments) as `$$.Task.Token`; the
engine stores the token, calls the resource, records TaskSubmitted and then waits until
someone answers with the token:

    engine.send_task_success(token, '{"approved": true}')   # TaskSucceeded, output = that JSON
    engine.send_task_failure(token, "Rejected", "too slow")   # TaskFailed, error and cause
    engine.send_task_heartbeat(token)                         # resets HeartbeatSeconds; no event

Tokens live in the engine's SQLite store (table `task_tokens`), so the answer may come
from another process (the CLI, the console, a worker reading a queue): the waiting
execution polls its token row every `POLL_SECONDS`. Deadlines (TimeoutSeconds,
HeartbeatSeconds) are measured on the waiting engine's clock; the row only counts
heartbeats, so a sender on another clock cannot expire a task early.

A token belongs to one attempt of one redrive generation. When the attempt ends (answered,
timed out, stopped, or its engine process died) or a Retry or redrive starts a new attempt,
the old token answers `TaskTimedOut`; a well-formed token this store never issued answers
`TaskDoesNotExist`, and text that is not a token at all `InvalidToken`, as the
SendTask* APIs do (https://docs.aws.amazon.com/step-functions/latest/apireference/API_SendTaskSuccess.html).
"""
from __future__ import annotations

import json
import re
import secrets
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, Callable

from workflow.engine.clock import Clock
from workflow.engine.errors import (ErrorName, ExecutionStopped, InvalidOutput, InvalidToken, StatesError,
                                    TaskDoesNotExist, TaskTimedOut)
from workflow.engine.history import ExecutionStatus, HistoryStore
from workflow.engine.values import DATA_LIMIT_BYTES, Json

POLL_SECONDS = 0.05  # how often a waiting task looks at its token row (real time, whatever the clock)
MAX_TOKEN_LENGTH = 2048  # SendTask*'s taskToken length constraint
_TOKEN = re.compile(r"ddcicd1\.[A-Za-z0-9_-]{64}")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS task_tokens (
    token TEXT PRIMARY KEY,
    execution_arn TEXT NOT NULL,
    redrive INTEGER NOT NULL,
    state_name TEXT NOT NULL,
    resource TEXT NOT NULL,
    parameters TEXT NOT NULL,
    submitted REAL NOT NULL,
    timeout_at REAL,
    heartbeat_seconds REAL,
    heartbeat_deadline REAL,
    beats INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    output TEXT,
    error TEXT,
    cause TEXT
);
CREATE INDEX IF NOT EXISTS task_tokens_by_execution ON task_tokens (execution_arn, status);
"""
_COLUMNS = ("token, execution_arn, redrive, state_name, resource, parameters, submitted, timeout_at, heartbeat_seconds,"
            " heartbeat_deadline, beats, status, output, error, cause")


class TokenStatus(StrEnum):
    """Where a token's task is: waiting for an answer, answered, or closed without one."""

    WAITING = "WAITING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CLOSED = "CLOSED"  # timed out, stopped, or the attempt otherwise ended unanswered


def _datetime(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=timezone.utc)


@dataclass(frozen=True)
class WaitingTask:
    """A callback task waiting for its token now (what `Engine.waiting_tasks` lists)."""

    token: str
    execution_arn: str
    state_name: str
    resource: str
    parameters: str  # the effective Parameters (or Arguments) sent to the resource, as JSON text
    submitted: datetime
    timeout_at: datetime | None
    heartbeat_deadline: datetime | None


@dataclass(frozen=True)
class TokenRecord:
    """One row of `task_tokens`."""

    token: str
    execution_arn: str
    redrive: int
    state_name: str
    resource: str
    parameters: str
    submitted: float
    timeout_at: float | None
    heartbeat_seconds: float | None
    heartbeat_deadline: float | None
    beats: int
    status: TokenStatus
    output: str | None
    error: str | None
    cause: str | None

    def waiting_task(self) -> WaitingTask:
        return WaitingTask(self.token, self.execution_arn, self.state_name, self.resource, self.parameters,
                           _datetime(self.submitted), _datetime(self.timeout_at), _datetime(self.heartbeat_deadline))


def new_token() -> str:
    """An opaque token; 48 random bytes, so one cannot be guessed from another."""
    return "ddcicd1." + secrets.token_urlsafe(48)


def _check_format(token: Any) -> str:
    if not isinstance(token, str) or not token:
        raise InvalidToken("Invalid Token: the task token must be a non-empty string")
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken(f"Invalid Token: a task token has at most {MAX_TOKEN_LENGTH} characters, got {len(token)}")
    if not _TOKEN.fullmatch(token):
        raise InvalidToken(f"Invalid Token: {_short(token)!r} is not a task token of this engine")
    return token


def _short(token: str) -> str:
    return token if len(token) <= 24 else token[:20] + "..."


_PREPARED: "weakref.WeakSet[HistoryStore]" = weakref.WeakSet()  # stores whose task_tokens table exists
_PREPARED_LOCK = threading.Lock()


class TaskTokens:
    """The `task_tokens` table of one engine store."""

    def __init__(self, store: HistoryStore) -> None:
        self.store = store
        with _PREPARED_LOCK:
            if store not in _PREPARED:
                with store.transaction() as connection:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            connection.execute(statement)
                _PREPARED.add(store)

    # ---------------------------------------------------------------- the waiting side (task.py)
    def register(self, token: str, execution_arn: str, redrive: int, state_name: str, resource: str, parameters: str,
                 now: float, timeout_at: float | None, heartbeat_seconds: float | None) -> None:
        """Stores a new WAITING token; done before the resource is called, which may answer at once."""
        deadline = None if heartbeat_seconds is None else now + heartbeat_seconds
        with self.store.transaction() as connection:
            connection.execute(
                "INSERT INTO task_tokens (token, execution_arn, redrive, state_name, resource, parameters, submitted,"
                " timeout_at, heartbeat_seconds, heartbeat_deadline, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (token, execution_arn, redrive, state_name, resource, parameters, now, timeout_at, heartbeat_seconds,
                 deadline, TokenStatus.WAITING))

    def record(self, token: str) -> TokenRecord | None:
        rows = self.store.query(f"SELECT {_COLUMNS} FROM task_tokens WHERE token = ?", (token,))
        return _decode(rows[0]) if rows else None

    def close(self, token: str) -> bool:
        """WAITING -> CLOSED; False when an answer got there first."""
        with self.store.transaction() as connection:
            cursor = connection.execute("UPDATE task_tokens SET status = ? WHERE token = ? AND status = ?",
                                        (TokenStatus.CLOSED, token, TokenStatus.WAITING))
            return cursor.rowcount == 1

    def set_heartbeat_deadline(self, token: str, deadline: float) -> None:
        with self.store.transaction() as connection:
            connection.execute("UPDATE task_tokens SET heartbeat_deadline = ? WHERE token = ?", (deadline, token))

    def waiting(self, execution_arn: str, redrive: int) -> list[TokenRecord]:
        rows = self.store.query(f"SELECT {_COLUMNS} FROM task_tokens WHERE execution_arn = ? AND redrive = ?"
                                " AND status = ? ORDER BY submitted, rowid", (execution_arn, redrive, TokenStatus.WAITING))
        return [_decode(row) for row in rows]

    # ---------------------------------------------------------------- the answering side (Engine.send_task_*)
    def answer(self, token: Any, status: TokenStatus | None, stopped: Callable[[str], bool], output: str | None = None,
               error: str | None = None, cause: str | None = None) -> None:
        """Records SendTaskSuccess (SUCCEEDED), SendTaskFailure (FAILED) or a heartbeat (None) for a waiting token.

        `stopped(execution_arn)` says whether a StopExecution for the execution is pending in
        this process. Raises InvalidToken, TaskDoesNotExist or TaskTimedOut.
        """
        token = _check_format(token)
        with self.store.transaction() as connection:
            row = connection.execute(f"SELECT {_COLUMNS} FROM task_tokens WHERE token = ?", (token,)).fetchone()
            if row is None:
                raise TaskDoesNotExist(f"Task Does Not Exist: no task of {self.store.path} was given the token {_short(token)!r}")
            record = _decode(row)
            problem, dead = self._why_closed(connection, record, stopped)
            if problem is not None:
                if dead and record.status == TokenStatus.WAITING:  # nobody will ever wait for it again
                    connection.execute("UPDATE task_tokens SET status = ? WHERE token = ?", (TokenStatus.CLOSED, token))
                raise TaskTimedOut(f"Task Timed Out: the task {record.state_name!r} of {record.execution_arn} given this"
                                   f" token {problem}")
            if status is None:
                connection.execute("UPDATE task_tokens SET beats = beats + 1 WHERE token = ?", (token,))
            else:
                connection.execute("UPDATE task_tokens SET status = ?, output = ?, error = ?, cause = ? WHERE token = ?",
                                   (status, output, error, cause, token))

    @staticmethod
    def _why_closed(connection: Any, record: TokenRecord, stopped: Callable[[str], bool]) -> tuple[str | None, bool]:
        """(None, False) while the token's task can still be answered, else (what ended it, whether no run
        waits for the token any more). A stopping run still waits: it closes the token itself as it stops."""
        if record.status != TokenStatus.WAITING:
            return {TokenStatus.SUCCEEDED: "already succeeded", TokenStatus.FAILED: "already failed"}.get(
                record.status, "is no longer waiting (it timed out, or its attempt or execution ended)"), False
        row = connection.execute("SELECT status, redrive_count, stop_requested FROM executions WHERE arn = ?",
                                 (record.execution_arn,)).fetchone()
        if row is None or row[0] != ExecutionStatus.RUNNING:
            return f"is no longer waiting: the execution is {row[0] if row else 'gone'}", True
        if row[1] != record.redrive:
            return "belongs to an earlier run: the execution was redriven and the task has a new token", True
        if row[2] or stopped(record.execution_arn):
            return "is no longer waiting: the execution is being stopped", False
        return None, False


def checked_output(output: Any) -> str:
    """SendTaskSuccess's output: JSON text within the payload limit, else InvalidOutput."""
    if not isinstance(output, str):
        raise InvalidOutput(f"Invalid Output: the output must be JSON text, got {type(output).__name__}")
    try:
        json.loads(output)
    except ValueError as error:
        raise InvalidOutput(f"Invalid Output: the output is not valid JSON ({error})") from error
    if len(output.encode()) > DATA_LIMIT_BYTES:
        raise InvalidOutput(f"Invalid Output: the output has {len(output.encode())} bytes; at most {DATA_LIMIT_BYTES}")
    return output


def _decode(row: tuple[Any, ...]) -> TokenRecord:
    values = list(row)
    values[11] = TokenStatus(values[11])
    return TokenRecord(*values)


# ------------------------------------------------------------------------ waiting for the answer


def wait_for_answer(tokens: TaskTokens, token: str, clock: Clock, cancel: threading.Event, check_stop: Callable[[], None],
                    deadline: float | None, heartbeat_seconds: float | None, poll_seconds: float = POLL_SECONDS) -> Json:
    """Waits until the token is answered; returns the output (parsed) or raises the answer's StatesError.

    Raises StatesError(States.Timeout) past `deadline` (TimeoutSeconds), StatesError(States.HeartbeatTimeout)
    when no heartbeat came within `heartbeat_seconds`, and what `check_stop` raises (StopExecution,
    the machine's TimeoutSeconds). However it ends unanswered, the token is closed.
    """
    record = tokens.record(token)
    assert record is not None, "the token is registered before the task waits"
    beats = record.beats
    heartbeat_deadline = record.heartbeat_deadline
    answered = False
    try:
        while True:
            check_stop()
            record = tokens.record(token)
            if record is None or record.status == TokenStatus.CLOSED:  # closed for a run that is over (see answer)
                raise ExecutionStopped(f"the task token of {record.execution_arn if record else 'a task'} was closed")
            if record.status == TokenStatus.SUCCEEDED:
                answered = True
                return json.loads(record.output or "null")
            if record.status == TokenStatus.FAILED:
                answered = True
                raise StatesError(record.error, record.cause)
            now = clock.now()
            if heartbeat_seconds is not None and record.beats != beats:
                beats, heartbeat_deadline = record.beats, now + heartbeat_seconds
                tokens.set_heartbeat_deadline(token, heartbeat_deadline)
            elif heartbeat_deadline is None:  # the heartbeat clock may start later (an activity's: when a worker takes it)
                heartbeat_deadline = record.heartbeat_deadline
            for limit, error in ((deadline, ErrorName.TIMEOUT), (heartbeat_deadline, ErrorName.HEARTBEAT_TIMEOUT)):
                if limit is not None and now >= limit and tokens.close(token):
                    raise StatesError(error, "")
            pause = poll_seconds
            if not clock.virtual:
                limits = [limit - now for limit in (deadline, heartbeat_deadline) if limit is not None]
                pause = max(0.001, min([poll_seconds, *limits]))
            cancel.wait(pause)
    finally:
        if not answered:
            tokens.close(token)
